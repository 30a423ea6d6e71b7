"""Does weather augmentation make the demo model robust to weather it never saw?

Two demo-size models (`roadscene.demo`: same seed, same steps, same fresh synthetic scenes),
one trained without and one with `data.augment` (every transform at probability `--p` and
strength `--strength`), both evaluated on the clean test split and on the same test scenes
rendered under each test condition (`roadscene.data.synth.conditions`: drawn by the renderer,
not by the augmentation library). Prints the per-condition table and the bar:

- shifted score = mean over the shifted conditions of mean(sidewalk accuracy, road accuracy,
  close-object recall): with augmentation >= baseline + 0.05, or >= 0.90 where the baseline is
  below 0.90;
- clean accuracy = mean(sidewalk accuracy, road accuracy) on the clean test: drops by <= 0.02;
- step time (goal: augmentation adds <= 15 %): full training steps of the demo model without
  and with augmentation, alternating step by step in this process (so other jobs' load hits
  both alike), median of each; also the two runs' mean step times and the augmentation of one
  batch timed alone against the baseline's mean step.

    .venv/bin/python bench/augment.py --out runs/bench-augment [--steps 910] [--threads 2]

Rerunning with the same --out continues a stopped comparison (`roadscene demo --resume`): only
what is missing is trained or predicted, and the table is printed again.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from roadscene.data.augment import AugmentedExamples, Augmenter, weather_preset
from roadscene.data.synth import RenderedScenes, SceneDistribution
from roadscene.data.synth.conditions import CONDITIONS
from roadscene.demo.config import DEMO_PROMPT, DemoConfig
from roadscene.demo.run import run_demo

FIGURES = ("sidewalk accuracy", "road accuracy", "close-object recall (micro)")
# shown beside the scored figures: what the bar does not count but a reader should see
SHOWN = (*FIGURES, "close-object precision (micro)", "far-object recall (micro)")


def _score(metrics: dict[str, Any]) -> float:
    return statistics.fmean(metrics[name] or 0.0 for name in FIGURES)


def _augment_seconds_per_batch(config: DemoConfig, batches: int = 10) -> float:
    """Median time to augment one training batch of freshly rendered scenes (rendering
    excluded: it happens in both runs)."""
    distribution = SceneDistribution.builtin().with_object_rate(config.object_rate)
    scenes = RenderedScenes(distribution, length=batches * config.batch_size, prompt=DEMO_PROMPT)
    examples = [scenes[i] for i in range(len(scenes))]
    augmented = AugmentedExamples(examples, Augmenter(config.augment, config.seed), "bvpi")
    augmented[0]  # warm-up: import and pipeline construction
    times = []
    for batch in range(batches):
        start = time.perf_counter()
        for index in range(batch * config.batch_size, (batch + 1) * config.batch_size):
            augmented[index]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _interleaved_step_times(config: DemoConfig, model_dir: Path, rounds: int) -> dict[str, float]:
    """Median time of one full training step (render 32 scenes, augment or not, encode, collate,
    forward, backward, AdamW) without and with augmentation, the two modes alternating step by
    step in this process so that other jobs' load hits both alike."""
    import torch

    from roadscene.models import get_family
    from roadscene.train.collator import EncodedDataset, TrainingCollator

    torch.set_num_threads(config.threads)
    family = get_family(config.family)
    loaded = family.load(str(model_dir), dtype=torch.float32)
    model, processor = loaded.model, loaded.processor
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    distribution = SceneDistribution.builtin().with_object_rate(config.object_rate)
    length = 2 * (rounds + 1) * config.batch_size
    scenes = RenderedScenes(distribution, length=length, prompt=DEMO_PROMPT, seed=config.seed)
    datasets = {
        "baseline": EncodedDataset(scenes, family, processor),
        "augmented": EncodedDataset(
            AugmentedExamples(scenes, Augmenter(config.augment, config.seed), "bvpi"),
            family,
            processor,
        ),
    }
    collator = TrainingCollator(family, processor)
    times: dict[str, list[float]] = {name: [] for name in datasets}
    for step in range(2 * (rounds + 1)):
        name = ("baseline", "augmented")[step % 2]
        start = time.perf_counter()
        first = step * config.batch_size
        batch = collator([datasets[name][i] for i in range(first, first + config.batch_size)])
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step >= 2:  # the first step of each mode warms up (imports, pipeline construction)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-augment"))
    parser.add_argument("--steps", type=int, default=910, help="training steps of each model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--p", type=float, default=0.15, help="probability of every transform")
    parser.add_argument("--strength", type=float, default=0.7, help="strength of every transform")
    parser.add_argument("--n-test", type=int, default=300)
    parser.add_argument(
        "--interleaved-steps", type=int, default=20, help="timed steps of each mode, alternating"
    )
    parser.add_argument("--conditions", default=",".join(c for c in CONDITIONS if c != "clean"))
    args = parser.parse_args()
    conditions = [c for c in args.conditions.split(",") if c]
    common = {
        "seed": args.seed,
        "steps": args.steps,
        "minutes": 600.0,  # the step count decides; no wall-clock cap
        "threads": args.threads,
        "n_test": args.n_test,
        "conditions": conditions,
        "caption_metrics": False,
        "gallery_size": 0,
        # a stopped or finished comparison continues: trained models and predictions are kept
        "resume": True,
    }
    runs = {
        "baseline": DemoConfig(out=args.out / "baseline", **common),
        "augmented": DemoConfig(
            out=args.out / "augmented", augment=weather_preset(args.p, args.strength), **common
        ),
    }
    started = time.perf_counter()
    results = {}
    for name, config in runs.items():
        print(f"== {name}")
        run_demo(config, log=print)
        results[name] = json.loads((config.out / "demo_summary.json").read_text())
    augment_batch_s = _augment_seconds_per_batch(runs["augmented"])
    interleaved = _interleaved_step_times(
        runs["augmented"], runs["baseline"].out / "model-init", args.interleaved_steps
    )

    base, aug = results["baseline"], results["augmented"]
    table = []
    for condition in ["clean", *conditions]:
        b, a = base["conditions"][condition], aug["conditions"][condition]
        table.append(
            {
                "condition": condition,
                **{f"baseline {k}": b[k] for k in SHOWN},
                **{f"augmented {k}": a[k] for k in SHOWN},
                "baseline score": round(_score(b), 4),
                "augmented score": round(_score(a), 4),
            }
        )
    shifted_base = statistics.fmean(_score(base["conditions"][c]) for c in conditions)
    shifted_aug = statistics.fmean(_score(aug["conditions"][c]) for c in conditions)

    def clean_accuracy(result: dict[str, Any]) -> float:
        clean = result["conditions"]["clean"]
        return statistics.fmean([clean["sidewalk accuracy"], clean["road accuracy"]])

    step_base = base["train_seconds_per_step"]
    step_aug = aug["train_seconds_per_step"]
    report = {
        "settings": {**vars(args), "out": str(args.out)},
        "table": table,
        "shifted_score": {"baseline": shifted_base, "augmented": shifted_aug},
        "shifted_gain": shifted_aug - shifted_base,
        "clean_accuracy": {"baseline": clean_accuracy(base), "augmented": clean_accuracy(aug)},
        "seconds_per_step": {"baseline": step_base, "augmented": step_aug},
        "step_time_ratio": step_aug / step_base,
        "interleaved_seconds_per_step": interleaved,
        "interleaved_step_time_ratio": interleaved["augmented"] / interleaved["baseline"],
        "augment_seconds_per_batch": augment_batch_s,
        "augment_share_of_baseline_step": augment_batch_s / step_base,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    report["bar"] = {
        "shifted": shifted_aug >= shifted_base + 0.05
        or (shifted_base < 0.90 and shifted_aug >= 0.90),
        "clean": report["clean_accuracy"]["augmented"]
        >= report["clean_accuracy"]["baseline"] - 0.02,
        "step_time": report["interleaved_step_time_ratio"] <= 1.15,
    }
    (args.out / "bench_augment.json").write_text(json.dumps(report, indent=2) + "\n")

    header = (
        "| condition | "
        + " | ".join(f"{k} (base / aug)" for k in SHOWN)
        + " | score (base / aug) |"
    )
    print(header)
    print("|" + " --- |" * (len(SHOWN) + 2))
    for row in table:
        cells = [f"{row[f'baseline {k}']:.3f} / {row[f'augmented {k}']:.3f}" for k in SHOWN]
        score = f"{row['baseline score']:.3f} / {row['augmented score']:.3f}"
        print(f"| {row['condition']} | " + " | ".join(cells) + f" | {score} |")
    print(
        f"shifted score {shifted_base:.3f} -> {shifted_aug:.3f} (gain {report['shifted_gain']:+.3f}); "
        f"clean accuracy {report['clean_accuracy']['baseline']:.3f} -> "
        f"{report['clean_accuracy']['augmented']:.3f}"
    )
    print(
        f"step time {step_base:.3f} s -> {step_aug:.3f} s (ratio {report['step_time_ratio']:.3f}); "
        f"augmenting one batch {augment_batch_s * 1000:.1f} ms = "
        f"{report['augment_share_of_baseline_step']:.1%} of a baseline step"
    )
    print(
        f"interleaved steps: {interleaved['baseline']:.3f} s -> {interleaved['augmented']:.3f} s "
        f"(ratio {report['interleaved_step_time_ratio']:.3f}, goal <= 1.15)"
    )
    print(f"bar: {report['bar']}; wall {report['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
