"""Prediction throughput: `predict_file` with batch 8 vs a one-image-at-a-time loop (batch 1),
same process, same model, same data, same generation settings.

    .venv/bin/python bench/predict_batch.py [--items 32] [--max-new-tokens 48]

Model: a random-init SmolVLM of the demo's size (vision 128x3, text 192x3, 96 px, 16 image
tokens) with its tokenizer trained on the real SENSATION responses; greedy decoding with a fixed
length cap (a random model rarely stops early, so both runs generate the same number of tokens).
Images: 96x96 solid-colour stand-ins. Goal: batch 8 / batch 1 >= 3x items/s.
Default one torch thread: on a shared 2-core box two OpenMP threads spin against
other jobs. Absolute times depend on machine load; the ratio is what we record.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from PIL import Image

from roadscene.io import read_records
from roadscene.models import get_family
from roadscene.paths import sensation_dir
from roadscene.predict import ModelCard, Predictor, PredictSettings, predict_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: steadier on a shared box)"
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)

    source = read_records(sensation_dir() / "reference" / "bvpi_sft_test.jsonl")[: args.items]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "images").mkdir()
        with open(tmp / "data.jsonl", "w", encoding="utf-8") as handle:
            for index, (_, row) in enumerate(source):
                colour = (index * 37 % 256, index * 91 % 256, index * 53 % 256)
                Image.new("RGB", (96, 96), colour).save(tmp / "images" / f"{index}.png")
                handle.write(json.dumps({"image": f"images/{index}.png", "prompt": row["prompt"],
                                         "response": row["response"]}) + "\n")  # fmt: skip
        texts = [row[key] for _, row in source for key in ("prompt", "response")]
        model_dir = get_family("smolvlm").build_tiny(
            tmp / "model", corpus=texts, sizes={"vision_hidden_size": 128, "vision_layers": 3,
            "text_hidden_size": 192, "text_layers": 3, "vocab_size": 2000},
        )  # fmt: skip
        predictor = Predictor.load(ModelCard.read(model_dir))
        # Free decoding: the comparison is of batching, not of the grammar (bench/structured.py).
        free = {"structured": False}
        # warm-up (first-call allocations, kernel selection)
        predict_file(tmp / "data.jsonl", tmp / "warm.jsonl", predictor,
                     PredictSettings(limit=2, batch_size=2, max_new_tokens=4, **free),
                     progress=False)  # fmt: skip
        speeds = {}
        for batch_size in (1, args.batch_size, 1, args.batch_size):
            out = tmp / f"b{batch_size}.jsonl"
            out.unlink(missing_ok=True)
            settings = PredictSettings(
                batch_size=batch_size, max_new_tokens=args.max_new_tokens, **free
            )
            summary = predict_file(tmp / "data.jsonl", out, predictor, settings,
                                   progress=False)  # fmt: skip
            speeds[batch_size] = max(speeds.get(batch_size, 0.0), summary.items_per_second)
            print(f"batch {batch_size}: {summary.items_per_second:.2f} items/s")
        ratio = speeds[args.batch_size] / speeds[1]
        print(f"best: batch {args.batch_size} {speeds[args.batch_size]:.2f} items/s, "
              f"batch 1 {speeds[1]:.2f} items/s")  # fmt: skip
        print(f"ratio batch {args.batch_size} / one-at-a-time: {ratio:.2f}x (goal >= 3x)")


if __name__ == "__main__":
    main()
