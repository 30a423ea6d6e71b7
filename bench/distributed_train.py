"""The multi-process training recipes against each other, for a machine with several GPUs.

Runs `roadscene train` for a few steps under each launcher and backend of configs/accelerate:
torchrun (DDP, the reference), `accelerate launch` with ddp.yaml, fsdp.yaml (FSDP2, GPUs only:
on CPU processes accelerate and the Trainer fall back to DDP without a word), and
deepspeed-zero2/3.yaml (when DeepSpeed is installed); then resumes the FSDP run's middle
checkpoint on half the processes. Prints and writes, per run: the loss of every step, its
largest difference from the torchrun run, the wall time and what the last checkpoint holds.

    python bench/distributed_train.py --processes 4 --out dist.json      # tiny SmolVLM, full FT
    python bench/distributed_train.py --processes 8 --model MODEL_DIR \
        --recipe configs/smolvlm2-2.2b-bvpi-lora.yaml --data DATA_DIR --set finetune.method=full

With no --model / --data it builds the tiny SmolVLM and 200 synthetic scenes in a temporary
folder (no network). Same global batch in every run, so the losses should agree to float noise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ACCELERATE_CONFIGS = REPO / "configs" / "accelerate"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def checkpoints(out: Path) -> list[Path]:
    return sorted(out.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))


def step_losses(out: Path) -> dict[int, float]:
    if not checkpoints(out):
        return {}
    state = json.loads((checkpoints(out)[-1] / "trainer_state.json").read_text())
    return {entry["step"]: entry["loss"] for entry in state["log_history"] if "loss" in entry}


def run(name: str, launcher: list[str], train_args: list[str], out: Path, log_dir: Path) -> dict:
    command = [
        *launcher,
        "-m",
        "roadscene",
        "train",
        *train_args,
        "--set",
        f"train.output_dir={out}",
    ]
    start = time.perf_counter()
    with open(log_dir / f"{name}.log", "w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    seconds = time.perf_counter() - start
    saved = checkpoints(out)
    result = {
        "command": " ".join(command),
        "returncode": done.returncode,
        "seconds": round(seconds, 1),
        "losses": step_losses(out),
        "checkpoint_files": sorted(p.name for p in saved[-1].iterdir()) if saved else [],
    }
    print(f"{name:>16}: rc {done.returncode}, {seconds:6.1f} s, losses {result['losses']}",
          file=sys.stderr, flush=True)  # fmt: skip
    return result


def tiny_inputs(folder: Path) -> tuple[Path, Path]:
    """The tiny SmolVLM and 200 synthetic scenes (what the tests train on, a little bigger)."""
    data, model = folder / "synth", folder / "tiny-smolvlm"
    roadscene = [sys.executable, "-m", "roadscene"]
    subprocess.run([*roadscene, "data", "synth", "--n", "200", "--out", str(data)], check=True)
    subprocess.run([*roadscene, "model", "tiny", "--family", "smolvlm", "--out", str(model),
                    "--corpus", str(data / "bvpi_sft_train.jsonl")], check=True)  # fmt: skip
    return model, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2, help="Processes (GPUs) per run.")
    parser.add_argument("--steps", type=int, default=8, help="Optimizer steps (even).")
    parser.add_argument("--batch-size", type=int, default=2, help="Per-process batch.")
    parser.add_argument("--recipe", type=Path, default=REPO / "configs" / "tiny-smolvlm.yaml")
    parser.add_argument("--model", type=Path, help="Model folder (default: the tiny SmolVLM).")
    parser.add_argument("--data", type=Path, help="Data folder (default: synthetic scenes).")
    parser.add_argument("--set", action="append", default=[], help="More recipe overrides.")
    parser.add_argument("--work", type=Path, help="Folder for the runs (default: temporary).")
    parser.add_argument("--out", type=Path, help="Write the results here as JSON.")
    args = parser.parse_args()

    import torch

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    work = args.work or Path(tempfile.mkdtemp(prefix="roadscene-dist-"))
    work.mkdir(parents=True, exist_ok=True)
    model, data = (args.model, args.data) if args.model and args.data else tiny_inputs(work)
    half = args.steps // 2
    overrides = [f"model.name_or_path={model}", f"data.data_dir={data}",
                 f"train.max_steps={args.steps}", f"train.eval_steps={half}",
                 f"train.batch_size={args.batch_size}", "train.logging_steps=1",
                 "data.eval_split=null", "generation_eval.enabled=false", *args.set]  # fmt: skip
    train_args = [str(args.recipe)] + [arg for value in overrides for arg in ("--set", value)]
    n = str(args.processes)
    accelerate = [sys.executable, "-m", "accelerate.commands.launch"]
    runs: dict[str, list[str]] = {
        "torchrun": [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            n,
            "--master_port",
            str(free_port()),
        ],  # fmt: skip
        "accelerate-ddp": [
            *accelerate,
            "--config_file",
            str(ACCELERATE_CONFIGS / "ddp.yaml"),
            "--num_processes",
            n,
            "--main_process_port",
            str(free_port()),
        ],  # fmt: skip
    }
    notes = {}
    gpus = torch.cuda.device_count()
    if gpus >= args.processes:
        runs["accelerate-fsdp"] = [*accelerate, "--config_file",
                                   str(ACCELERATE_CONFIGS / "fsdp.yaml"), "--num_processes", n,
                                   "--main_process_port", str(free_port())]  # fmt: skip
    else:
        notes["accelerate-fsdp"] = f"skipped: FSDP needs {args.processes} GPUs, {gpus} visible"
    try:
        import deepspeed  # noqa: F401

        for stage in ("zero2", "zero3"):
            runs[f"deepspeed-{stage}"] = [*accelerate, "--config_file",
                                          str(ACCELERATE_CONFIGS / f"deepspeed-{stage}.yaml"),
                                          "--num_processes", n,
                                          "--main_process_port", str(free_port())]  # fmt: skip
    except ImportError:
        notes["deepspeed"] = "skipped: DeepSpeed not installed"

    results = {}
    for name, launcher in runs.items():
        results[name] = run(name, launcher, train_args, work / name, work)
    if "accelerate-fsdp" in results and args.processes >= 2:
        # the FSDP run's middle checkpoint, resumed on half the processes (twice the batch)
        resumed = work / "fsdp-resumed"
        shutil.rmtree(resumed, ignore_errors=True)
        resumed.mkdir()
        shutil.copytree(
            work / "accelerate-fsdp" / f"checkpoint-{half}", resumed / f"checkpoint-{half}"
        )
        launcher = [*accelerate, "--config_file", str(ACCELERATE_CONFIGS / "fsdp.yaml"),
                    "--num_processes", str(args.processes // 2),
                    "--main_process_port", str(free_port())]  # fmt: skip
        more = ["--set", f"train.batch_size={args.batch_size * 2}", "--resume"]
        results["fsdp-resumed-half"] = run("fsdp-resumed-half", launcher, train_args + more,
                                           resumed, work)  # fmt: skip

    reference = results["torchrun"]["losses"]
    for result in results.values():
        shared = [step for step in result["losses"] if step in reference]
        result["max_abs_loss_diff_vs_torchrun"] = (
            max(abs(result["losses"][s] - reference[s]) for s in shared) if shared else None
        )
    document = {
        "machine": {
            "gpus": gpus,
            "gpu": torch.cuda.get_device_name(0) if gpus else None,
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
        },  # fmt: skip
        "settings": {
            "processes": args.processes,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "recipe": str(args.recipe),
            "overrides": overrides,
        },  # fmt: skip
        "runs": results,
        "notes": notes,
    }
    for name, result in results.items():
        print(f"{name:>18}: max |loss - torchrun| {result['max_abs_loss_diff_vs_torchrun']}, "
              f"{result['seconds']} s", file=sys.stderr)  # fmt: skip
    text = json.dumps(document, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
