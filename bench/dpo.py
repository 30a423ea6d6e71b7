"""Preference tuning on the model's own mistakes vs equal-compute SFT, demo-size SmolVLM, CPU.

    python bench/dpo.py [--out runs/bench-dpo] [--sft-steps 240] [--extra-steps 100]

1. data: synthetic scenes written like `roadscene data synth` (the demo's prompt and answers).
2. SFT: the demo's model and recipe from scratch (`roadscene demo`: 16 image tokens, vision
   128x3, text 192x3, full fine-tuning on freshly rendered scenes), for a short budget.
3. pairs: `roadscene.predict.pairs.build_pairs` with that model on the train split and on the
   val split: sampled answers, the wrong ones rejected, the truth chosen.
4. DPO: `stage: dpo` from the SFT model on the train pairs, `--extra-steps` steps, full
   fine-tuning (the reference: a frozen copy of the SFT model), beta 0.1, plus the SFT loss of
   the chosen answer (`--sft-weight`; 0: the plain DPO loss).
5. SFT+: the SFT model trained `--extra-steps` more steps with SFT, the same recipe and data
   source as step 2, as many sequences per step as DPO's policy (equal-compute baseline).
6. held out: preference accuracy on the val pairs (summed log-probability of the chosen answer
   above the rejected one) for SFT, DPO and SFT+; strict field accuracy and close-object
   precision / recall on the test split (greedy, answer grammar), as `roadscene evaluate`.

Bar: DPO's held-out preference accuracy >= min(SFT's + 0.2, 0.9); its field accuracy no more
than 0.02 below SFT's. Every stage is skipped when its output exists (rerun to continue).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from roadscene.demo.config import DEMO_PROMPT, DemoConfig
from roadscene.io import write_json

RESULT = "dpo_bench.json"


def stage(name: str, done: bool) -> bool:
    print(f"== {name}" + (" (done before, kept)" if done else ""), flush=True)
    return not done


def train_config(args, out: Path, start: Path, steps: int, **sections) -> dict:
    """The demo's training recipe (`roadscene.demo.run`), with `sections` on top."""
    train = {
        "output_dir": str(out), "max_steps": steps, "batch_size": args.batch_size,
        "grad_accum": 1, "learning_rate": 1e-3, "weight_decay": 0.05, "adam_beta2": 0.98,
        "warmup_steps": min(60, steps // 5), "lr_scheduler": "cosine", "max_grad_norm": 1.0,
        "seed": args.seed, "logging_steps": 10, "eval_steps": steps, "save_total_limit": 1,
        "num_threads": args.threads,
    }  # fmt: skip
    train.update(sections.pop("train", {}))
    return {
        "model": {"family": "smolvlm", "name_or_path": str(start)},
        "finetune": {"method": "full"},
        "data": {"task": "bvpi", "data_dir": str(args.out / "data"), "eval_split": None},
        "train": train,
        "generation_eval": {"enabled": False},
        **sections,
    }


def run(args) -> dict:
    import torch

    from roadscene.data.synth import (
        RenderedScenes,
        SceneDistribution,
        sample_scenes,
        structured_target,
        write_synth_dataset,
    )
    from roadscene.demo.report import headline
    from roadscene.metrics.safety import evaluate_safety
    from roadscene.models import get_family
    from roadscene.predict import ModelCard, Predictor, PredictSettings, predict_file
    from roadscene.predict.pairs import PairSettings, build_pairs
    from roadscene.train.config import TrainConfig
    from roadscene.train.runner import run_training

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    out: Path = args.out
    family = get_family("smolvlm")
    seconds: dict[str, float] = {}
    distribution = SceneDistribution.builtin()
    rendered_distribution = distribution.with_object_rate(0.8)  # as the demo trains

    data = out / "data"
    n = args.n_train + args.n_val + args.n_test
    if stage("data", (data / "bvpi_sft_test.jsonl").is_file()):
        write_synth_dataset(
            data, n, seed=args.seed, distribution=distribution, val_fraction=args.n_val / n,
            test_fraction=args.n_test / n, prompt=DEMO_PROMPT, context=False,
        )  # fmt: skip

    init = out / "model-init"
    if stage("model", (init / "config.json").is_file()):
        corpus = [DEMO_PROMPT] + [
            structured_target(s) for s in sample_scenes(rendered_distribution, 4000, args.seed + 10_000)
        ]  # fmt: skip
        sizes = DemoConfig().model_sizes()
        family.build_tiny(init, corpus=corpus, seed=args.seed, sizes=sizes)

    def train(name: str, config: dict, examples=None) -> Path:
        model_dir = out / name / "model"
        if stage(name, (model_dir / "training_summary.json").is_file()):
            start = time.perf_counter()
            run_training(TrainConfig.model_validate(config), train_examples=examples)
            seconds[name] = round(time.perf_counter() - start, 1)
        return model_dir

    def rendered(steps: int, stream: int) -> RenderedScenes:
        return RenderedScenes(
            rendered_distribution, length=steps * args.batch_size, prompt=DEMO_PROMPT,
            seed=args.seed, stream=stream,
        )  # fmt: skip

    sft = train("sft", train_config(args, out / "sft", init, args.sft_steps),
                rendered(args.sft_steps, stream=7))  # fmt: skip

    pairs = {}
    for split in ("train", "val"):
        pairs[split] = out / "pairs" / f"{split}.jsonl"
        if stage(f"pairs {split}", (out / "pairs" / f"{split}.report.json").is_file()):
            build_pairs(
                data / f"bvpi_sft_{split}.jsonl", pairs[split], ModelCard.read(sft),
                PairSettings(samples=args.samples, temperature=args.temperature,
                             batch_size=64, max_new_tokens=96, seed=args.seed),
            )  # fmt: skip

    # DPO: the pairs' batch holds batch_size / 2 pairs = batch_size sequences for the policy.
    dpo = train(
        "dpo",
        train_config(
            args, out / "dpo", sft, args.extra_steps,
            train={"batch_size": args.batch_size // 2, "learning_rate": args.dpo_lr,
                   "warmup_steps": 10, "lr_scheduler": "constant_with_warmup",
                   "weight_decay": 0.0},
            stage="dpo",
            dpo={
                "beta": args.beta,
                "train_file": str(pairs["train"]),
                # RPO: DPO plus the SFT loss of the chosen answer, weighted
                **(
                    {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, args.sft_weight]}
                    if args.sft_weight
                    else {}
                ),
            },
        ),
    )  # fmt: skip
    sft_more = train(
        "sft-more",
        train_config(
            args, out / "sft-more", sft, args.extra_steps,
            train={"learning_rate": args.sft_more_lr, "warmup_steps": 10,
                   "lr_scheduler": "constant_with_warmup"},
        ),
        rendered(args.extra_steps, stream=8),
    )  # fmt: skip

    results: dict[str, dict] = {}
    for name, model_dir in (("SFT", sft), ("SFT + DPO", dpo), ("SFT + more SFT", sft_more)):
        predictor = Predictor.load(ModelCard.read(model_dir), device="cpu")
        preference = _preference(predictor, pairs["val"], data)
        predictions = out / f"test-{model_dir.parent.name}.jsonl"
        predict_file(
            data / "bvpi_sft_test.jsonl", predictions, predictor,
            PredictSettings(batch_size=100, max_new_tokens=96), progress=False,
        )  # fmt: skip
        safety = evaluate_safety(
            predictions, captions_csv=data / "captions.csv",
            annotations_csv=data / "annotations.csv", split="test", mode="strict",
        )  # fmt: skip
        metrics = headline(safety.report, None)
        fields = [metrics[f"{k} accuracy"] for k in ("sidewalk", "road", "relation")]
        results[name] = {
            **preference,
            "field accuracy": sum(fields) / 3,
            **{k: v for k, v in metrics.items() if "close" in k or "accuracy" in k},
        }
    report = json.loads((out / "pairs" / "train.report.json").read_text())
    val_report = json.loads((out / "pairs" / "val.report.json").read_text())
    return {
        "args": {k: str(v) for k, v in vars(args).items()},
        "results": results,
        "pairs": {"train": _counts(report), "val": _counts(val_report)},
        "seconds": seconds,
        "torch_threads": args.threads,
    }


def _counts(report: dict) -> dict:
    return {
        k: report[k] for k in ("rows", "rows_with_pairs", "pairs", "samples", "pairs_by_mistake")
    }


def _preference(predictor, pair_file: Path, data: Path) -> dict:
    from roadscene.data.pairs import load_pairs
    from roadscene.predict.pairs import MISTAKES
    from roadscene.train.preference import PreferenceCollator, pair_logprobs, preference_scores

    pairs = load_pairs(pair_file, data)
    collator = PreferenceCollator(predictor.family, predictor.processor, pairs)
    chosen, rejected = pair_logprobs(predictor.model, collator, batch_size=32)
    scores = preference_scores(chosen, rejected)
    by_kind = {}
    for kind in MISTAKES:  # a pair counts under each kind of mistake it has
        rows = [i for i, pair in enumerate(pairs) if kind in pair.meta.get("mistakes", [])]
        if rows:
            by_kind[kind] = preference_scores(chosen[rows], rejected[rows])["preference_accuracy"]
    return {**scores, "preference_accuracy_by_mistake": by_kind}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-dpo"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-train", type=int, default=600)
    parser.add_argument("--n-val", type=int, default=200)
    parser.add_argument("--n-test", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sft-steps", type=int, default=240)
    parser.add_argument("--extra-steps", type=int, default=100)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--dpo-lr", type=float, default=2e-4)
    parser.add_argument(
        "--sft-weight", type=float, default=1.0, help="weight of an SFT term on the chosen answer"
    )
    parser.add_argument("--sft-more-lr", type=float, default=1e-4)
    args = parser.parse_args()
    result = run(args)
    write_json(args.out / RESULT, result)
    sft = result["results"]["SFT"]
    columns = ("preference_accuracy", "field accuracy", "close-object precision (micro)",
               "close-object recall (micro)")  # fmt: skip
    print("\n| model | " + " | ".join(columns) + " |")
    print("| --- |" + " --- |" * len(columns))
    for name, values in result["results"].items():
        print(f"| {name} | " + " | ".join(f"{values[c]:.3f}" for c in columns) + " |")
    dpo = result["results"]["SFT + DPO"]
    target = min(sft["preference_accuracy"] + 0.2, 0.9)
    print(f"\npreference accuracy: DPO {dpo['preference_accuracy']:.3f} vs bar {target:.3f} -> "
          f"{'met' if dpo['preference_accuracy'] >= target else 'MISSED'}")  # fmt: skip
    drop = sft["field accuracy"] - dpo["field accuracy"]
    print(f"field accuracy: DPO {dpo['field accuracy']:.3f} vs SFT {sft['field accuracy']:.3f} "
          f"(drop {drop:+.3f}, bar <= 0.02) -> {'met' if drop <= 0.02 else 'MISSED'}")  # fmt: skip
    print(json.dumps(result["pairs"], indent=1))


if __name__ == "__main__":
    main()
