"""`roadscene predict --engine ray` on one machine: 2 workers vs 1 worker, and what Ray costs.

    PYTHONPATH=src python bench/ray_predict.py [--items 200] [--repeats 3] [--out ray.json]

Same process, same model, same 200 images, one torch thread per worker. Runs: a local
`predict_file` (the baseline), then on a private Ray instance (2 CPUs) with 1 and with 2
workers: the whole file, and a file of one batch (which is almost all start-up: worker processes
starting, importing torch, loading the model). Reported: items/s of each, the ratio 2 workers /
1 worker over the whole run and with each run's one-batch time taken off (the answering alone),
and Ray's start-up (`ray.init`, the one-batch runs against a local one). Every output file is
checked to be the local one's bytes.

Model: a random-init SmolVLM of the demo's size (vision 128x3, text 192x3, 96 px, 16 image
tokens), grammar-constrained greedy answers as `predict` gives by default. Needs Ray
(`pip install 'roadscene[distributed]'`). The load average of the machine is recorded with the
results: on a shared box, the other jobs decide how much a second worker can gain.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from PIL import Image

from roadscene.models import get_family
from roadscene.predict import ModelCard, PredictSettings, predict_file
from roadscene.predict.distributed import RaySettings, predict_file_ray

ANSWER = "Sidewalk: left. Road: right. RoadVsSidewalk: right_of. Nearby: no important close objects visible."  # fmt: skip
DEMO_SIZES = {"vision_hidden_size": 128, "vision_layers": 3, "text_hidden_size": 192,
              "text_layers": 3, "vocab_size": 600}  # fmt: skip


def write_data(folder: Path, items: int) -> Path:
    (folder / "images").mkdir(parents=True)
    data = folder / "bvpi_sft_test.jsonl"
    with open(data, "w", encoding="utf-8") as handle:
        for index in range(items):
            colour = (index * 37 % 256, index * 91 % 256, index * 53 % 256)
            Image.new("RGB", (96, 96), colour).save(folder / "images" / f"{index}.png")
            row = {"image": f"images/{index}.png", "prompt": "Describe the scene.", "response": ANSWER}  # fmt: skip
            handle.write(json.dumps(row) + "\n")
    return data


def timed(run) -> float:  # noqa: ANN001
    start = time.perf_counter()
    run()
    return round(time.perf_counter() - start, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=192, help="predict's default.")
    parser.add_argument("--repeats", type=int, default=3, help="Runs of each (best is kept).")
    parser.add_argument("--out", type=Path, help="Write the results here as JSON.")
    args = parser.parse_args()

    import ray
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    ray_temp = tempfile.mkdtemp(prefix="rb", dir="/tmp")  # short: Unix socket path limit
    try:
        data = write_data(work / "data", args.items)
        one_batch = write_data(work / "one_batch", args.batch_size)
        model = get_family("smolvlm").build_tiny(work / "model", seed=0, sizes=DEMO_SIZES)
        card = ModelCard.read(model)
        settings = PredictSettings(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
        local_out = work / "local.jsonl"

        def local(file: Path, out: Path) -> float:
            return timed(lambda: predict_file(file, out, card, settings, progress=False))

        def on_ray(file: Path, out: Path, workers: int) -> float:
            ray_settings = RaySettings(num_workers=workers)
            return timed(lambda: predict_file_ray(file, out, card, settings, ray_settings,
                                                  progress=False))  # fmt: skip

        local_runs = []
        results: dict[str, object] = {"local": local_runs}
        start = time.perf_counter()
        source = str(Path(__file__).resolve().parents[1] / "src")
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 _temp_dir=ray_temp,
                 runtime_env={"env_vars": {"PYTHONPATH": source, "OMP_NUM_THREADS": "1"}})  # fmt: skip
        results["ray_init_s"] = round(time.perf_counter() - start, 2)
        runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
        # interleaved, best of --repeats: the box's other jobs come and go
        for repeat in range(args.repeats):
            local_runs.append({
                "one_batch_s": local(one_batch, work / f"local_b_{repeat}.jsonl"),
                "seconds": local(data, local_out if repeat == 0 else work / f"l{repeat}.jsonl"),
            })  # fmt: skip
            for workers in (1, 2):
                out = work / f"ray{workers}_{repeat}.jsonl"
                run = {
                    "one_batch_s": on_ray(one_batch, work / f"b{workers}_{repeat}.jsonl", workers),
                    "seconds": on_ray(data, out, workers),
                }
                run["items_per_s"] = round(args.items / run["seconds"], 3)
                assert out.read_bytes() == local_out.read_bytes(), "Ray output differs"
                runs[workers].append(run)
        results["ray_1_worker"], results["ray_2_workers"] = runs[1], runs[2]
        start = time.perf_counter()
        ray.shutdown()
        results["ray_shutdown_s"] = round(time.perf_counter() - start, 2)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(ray_temp, ignore_errors=True)

    one, two = (min(runs[k], key=lambda r: r["seconds"]) for k in (1, 2))
    local_s = min(run["seconds"] for run in local_runs)
    local_one_batch_s = min(run["one_batch_s"] for run in local_runs)
    summary = {
        "local_items_per_s": round(args.items / local_s, 3),
        "ratio_2_workers_over_1": round(one["seconds"] / two["seconds"], 2),
        # the answering alone: each run less its one-batch (start-up) run
        "ratio_2_workers_over_1_after_startup": round(
            (one["seconds"] - one["one_batch_s"]) / (two["seconds"] - two["one_batch_s"]), 2
        ),
        "ray_startup_s": {
            "ray_init": results["ray_init_s"],
            "one_batch_1_worker_over_local": round(one["one_batch_s"] - local_one_batch_s, 2),
            "one_batch_2_workers_over_local": round(two["one_batch_s"] - local_one_batch_s, 2),
        },
        "ray_1_worker_over_local_s": round(one["seconds"] - local_s, 2),
        "same_bytes_as_local": True,
    }
    document = {
        "settings": {
            "items": args.items,
            "batch_size": args.batch_size,
            "max_new_tokens": args.max_new_tokens,
            "threads_per_worker": 1,
            "model": "smolvlm demo size",
            "ray": ray.__version__,
        },  # fmt: skip
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },  # fmt: skip
        "results": results,
        "summary": summary,
    }
    text = json.dumps(document, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
