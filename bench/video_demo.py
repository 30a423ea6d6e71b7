"""The clip demo (`roadscene demo --video`) against its last-frame control, and what a clip
training step costs beside the still-image demo's.

1. Two demo runs with the same seed, data and steps: the clip model (`--video`, `clip_frames`
   frames per clip) and the control (`--video --frames-seen last`). Prints motion accuracy, the
   majority-class rate, the control's ceiling (majority + 0.15), the field and object figures
   and the seconds per stage of each, and the bar:
   clip motion >= 0.85, clip sidewalk and road >= 0.90, control motion <= majority + 0.15.
2. Step time: full training steps (render, encode, collate, forward, backward, AdamW) of the
   still-image demo model and of the clip model, alternating step by step in this process (so
   other jobs' load hits both alike), median of each, and their ratio: with the still-image
   step measured on the reference machines (0.51 s quiet, 0.87 s slower; docs/performance.md),
   what a clip step costs there.

    .venv/bin/python bench/video_demo.py --out runs/bench-video [--steps 400] [--threads 2]

Rerunning with the same --out continues a stopped comparison (`roadscene demo --resume`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from roadscene.data.clips import ClipSettings
from roadscene.data.synth import RenderedClips, RenderedScenes, SceneDistribution
from roadscene.demo.config import DEMO_PROMPT, VIDEO_DEFAULT_STEPS, DemoConfig
from roadscene.demo.run import run_demo
from roadscene.schema import MOVING_CLASSES

SHOWN = (
    "motion accuracy",
    "motion majority-class rate",
    "motion balanced accuracy",
    "sidewalk accuracy",
    "road accuracy",
    "relation accuracy",
    "close-object recall (micro)",
    "close-object precision (micro)",
    "far-object recall (micro)",
    "complete answers",
)
#: still-image demo step times of the reference machines (docs/performance.md)
REFERENCE_IMAGE_STEP_S = {"quiet": 0.51, "slower": 0.87}


def interleaved_step_times(clip: DemoConfig, image_model: Path, clip_model: Path, rounds: int):
    """Median seconds of one full training step of the still-image demo model and of the clip
    model, alternating step by step."""
    import torch

    from roadscene.models import get_family
    from roadscene.train.collator import EncodedDataset, TrainingCollator

    torch.set_num_threads(clip.threads)
    family = get_family(clip.family)
    length = (rounds + 1) * clip.batch_size
    still = SceneDistribution.builtin().with_object_rate(clip.object_rate)
    moving = SceneDistribution.builtin().with_object_rate(clip.moving_rate, MOVING_CLASSES)
    streams = {
        "image": (image_model, RenderedScenes(still, length=length, prompt=DEMO_PROMPT)),
        "clip": (
            clip_model,
            RenderedClips(
                moving.with_object_rate(clip.object_rate),
                length=length,
                prompt=DEMO_PROMPT,
                settings=ClipSettings(frames=clip.clip_frames),
            ),
        ),
    }
    runs: dict[str, Any] = {}
    for name, (folder, examples) in streams.items():
        loaded = family.load(str(folder), dtype=torch.float32)
        loaded.model.train()
        runs[name] = (
            loaded.model,
            torch.optim.AdamW(loaded.model.parameters(), lr=1e-4),
            EncodedDataset(examples, family, loaded.processor),
            TrainingCollator(family, loaded.processor),
        )
    times: dict[str, list[float]] = {name: [] for name in runs}
    for step in range(rounds + 1):
        for name, (model, optimizer, dataset, collator) in runs.items():
            start = time.perf_counter()
            first = step * clip.batch_size
            batch = collator([dataset[i] for i in range(first, first + clip.batch_size)])
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if step:  # the first step of each warms up
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-video"))
    parser.add_argument("--steps", type=int, default=VIDEO_DEFAULT_STEPS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clip-frames", type=int, default=4)
    parser.add_argument("--interleaved-steps", type=int, default=10)
    args = parser.parse_args()
    common = {
        "video": True,
        "seed": args.seed,
        "steps": args.steps,
        "minutes": 600.0,  # the step count decides; no wall-clock cap
        "threads": args.threads,
        "clip_frames": args.clip_frames,
        "caption_metrics": False,
        "resume": True,
    }
    runs = {
        "clip": DemoConfig(out=args.out / "clip", **common),
        "last frame": DemoConfig(out=args.out / "last", frames_seen="last", **common),
    }
    started = time.perf_counter()
    results = {}
    for name, config in runs.items():
        print(f"== {name}")
        run_demo(config, log=print)
        results[name] = json.loads((config.out / "demo_summary.json").read_text())
    image_config = DemoConfig(out=args.out / "image", steps=1, n_test=1, n_train=1, n_val=1)
    image_model = args.out / "image-model"
    if not (image_model / "config.json").is_file():
        from roadscene.models import get_family

        get_family(image_config.family).build_tiny(
            image_model, seed=args.seed, sizes=image_config.model_sizes()
        )
    steps = interleaved_step_times(
        runs["clip"], image_model, runs["clip"].out / "model-init", args.interleaved_steps
    )
    ratio = steps["clip"] / steps["image"]
    clip, control = results["clip"]["metrics"], results["last frame"]["metrics"]
    majority = control["motion majority-class rate"]
    report = {
        "settings": {**vars(args), "out": str(args.out)},
        "metrics": {name: results[name]["metrics"] for name in results},
        "seconds": {name: results[name]["seconds"] for name in results},
        "train_seconds_per_step": {
            name: results[name]["train_seconds_per_step"] for name in results
        },
        "interleaved_seconds_per_step": steps,
        "clip_to_image_step_ratio": ratio,
        "predicted_clip_step_s": {k: v * ratio for k, v in REFERENCE_IMAGE_STEP_S.items()},
        "bar": {
            "clip motion >= 0.85": (clip["motion accuracy"] or 0) >= 0.85,
            "clip sidewalk >= 0.90": (clip["sidewalk accuracy"] or 0) >= 0.90,
            "clip road >= 0.90": (clip["road accuracy"] or 0) >= 0.90,
            "control motion <= majority + 0.15": majority is not None
            and (control["motion accuracy"] or 0) <= majority + 0.15,
        },
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    (args.out / "bench_video.json").write_text(json.dumps(report, indent=2) + "\n")
    print("| figure | clip model | last-frame control |")
    print("| --- | --- | --- |")
    for name in SHOWN:
        cells = [results[run]["metrics"].get(name) for run in results]
        print(f"| {name} | " + " | ".join("n/a" if v is None else f"{v:.3f}" for v in cells) + " |")
    for name, summary in results.items():
        print(f"{name}: seconds {summary['seconds']}, {summary['train_seconds_per_step']} s/step")
    print(
        f"interleaved steps: image {steps['image']:.3f} s, clip {steps['clip']:.3f} s "
        f"(ratio {ratio:.2f}); on the reference machines a clip step would take "
        + ", ".join(f"{k} {v:.2f} s" for k, v in report["predicted_clip_step_s"].items())
    )
    print(f"bar: {report['bar']}; wall {report['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
