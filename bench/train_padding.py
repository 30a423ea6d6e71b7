"""Training throughput: dynamic padding (each batch to its longest example) vs padding every batch
to 384 tokens (the published recipe), same process, same data, same model.

    .venv/bin/python bench/train_padding.py [--rows 64] [--steps 12] [--batch-size 8]

Data: the real SENSATION `bvpi_sft_train.jsonl` prompts and responses (so sequence lengths are
the real ones; the images are not available, so each row gets a solid-colour 96x96 stand-in),
tokenizer trained on those texts. Model: a random-init SmolVLM of the demo's size (vision 128x3,
text 192x3, 16 image tokens). Both runs go through `roadscene.train.runner.run_training` (HF
Trainer), full fine-tuning, no evaluation. Goal: dynamic / padded >= 1.5x samples/s.
Default one torch thread: on a shared 2-core box two OpenMP threads spin against
other jobs. Absolute times depend on machine load; the ratio is what we record.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from PIL import Image

from roadscene.io import read_records
from roadscene.models import get_family
from roadscene.paths import sensation_dir
from roadscene.train.config import load_config
from roadscene.train.runner import run_training


def make_data(folder: Path, rows: int) -> list[str]:
    source = read_records(sensation_dir() / "reference" / "bvpi_sft_train.jsonl")[:rows]
    (folder / "images").mkdir(parents=True)
    texts = []
    with open(folder / "bvpi_sft_train.jsonl", "w", encoding="utf-8") as handle:
        for index, (_, row) in enumerate(source):
            colour = (index * 37 % 256, index * 91 % 256, index * 53 % 256)
            Image.new("RGB", (96, 96), colour).save(folder / "images" / f"{index}.png")
            handle.write(json.dumps({"image": f"images/{index}.png", "prompt": row["prompt"],
                                     "response": row["response"]}) + "\n")  # fmt: skip
            texts += [row["prompt"], row["response"]]
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: steadier on a shared box)"
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        texts = make_data(tmp / "data", args.rows)
        model_dir = get_family("smolvlm").build_tiny(
            tmp / "model", corpus=texts, sizes={"vision_hidden_size": 128, "vision_layers": 3,
            "text_hidden_size": 192, "text_layers": 3, "vocab_size": 2000},
        )  # fmt: skip
        family = get_family("smolvlm")
        processor = family.load(model_dir).processor
        from roadscene.data.examples import to_example
        from roadscene.data.records import load_records

        records = load_records("bvpi", tmp / "data" / "bvpi_sft_train.jsonl", tmp / "data")
        lengths = [len(family.encode(processor, to_example(r))["input_ids"]) for r in records]
        print(f"sequence length: mean {statistics.mean(lengths):.0f}, max {max(lengths)} tokens")
        if max(lengths) > 384:
            raise SystemExit("an example is longer than 384 tokens; the comparison needs <= 384")

        speeds: dict[str, list[float]] = {"longest": [], "max_length": []}
        for repeat in range(args.repeats):
            for padding in ("longest", "max_length"):
                config = load_config(None, [
                    "finetune.method=full", f"model.name_or_path={model_dir}",
                    f"data.data_dir={tmp / 'data'}", "data.eval_split=null",
                    "data.cache_encoded=true", "generation_eval.enabled=false",
                    f"train.output_dir={tmp / f'run-{padding}-{repeat}'}",
                    f"train.max_steps={args.steps}", f"train.batch_size={args.batch_size}",
                    "train.grad_accum=1", f"train.eval_steps={args.steps}",
                    f"train.padding={padding}", "train.pad_to_length=384",
                    "train.learning_rate=1e-4", "train.logging_steps=1000",
                    f"train.num_threads={args.threads}",
                ])  # fmt: skip
                result = run_training(config)
                speeds[padding].append(result.metrics["train_samples_per_second"])
        best = {k: max(v) for k, v in speeds.items()}
        print(f"dynamic padding:  {best['longest']:.2f} samples/s (runs: {speeds['longest']})")
        print(
            f"pad to 384:       {best['max_length']:.2f} samples/s (runs: {speeds['max_length']})"
        )
        print(
            f"ratio dynamic / pad-384: {best['longest'] / best['max_length']:.2f}x (goal >= 1.5x)"
        )


if __name__ == "__main__":
    main()
