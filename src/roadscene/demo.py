"""`roadscene demo`: the whole system on a laptop CPU, offline, from nothing.

1. **data**: synthetic street scenes (`roadscene.data.synth`) written like `roadscene data build`
   output: train / val / test images, annotations.csv, bvpi_sft_*.jsonl, captions_*.json.
2. **model**: a small SmolVLM-architecture model from scratch (`family.build_tiny`), its BPE
   tokenizer trained on answers of the training distribution.
3. **train**: `roadscene.train.run_training` (HF Trainer, full fine-tuning) on freshly rendered
   scenes every step (:class:`~roadscene.data.synth_dataset.RenderedSceneDataset`), objects
   oversampled; a fixed number of steps (reproducible), capped by a wall-clock budget.
4. **predict**: `roadscene.predict.predict_file` on the held-out synthetic test split.
5. **evaluate**: strict + compat safety metrics and caption metrics (`roadscene.metrics`),
   report folders (`roadscene.report`), `gallery.html`, the demo's `report.md` and a summary
   table in the terminal.

Every stage uses the project's public machinery; nothing here is a private copy of it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from roadscene.errors import InputError

DEMO_PROMPT = "Describe the scene for a blind pedestrian."
# The default training budget and its step count. 910 steps of batch 32 met the bar (1.000 /
# 1.000 / 0.981 / 0.981, seed 0); on the 2-core CPU dev box one step took 0.52-0.55 s with two
# threads when the machine was nearly quiet, so 910 steps fit 8.5 minutes with a little margin.
# `--minutes M` scales the step count (fixed steps keep a run reproducible); the wall clock caps
# training at M minutes on slower machines.
DEFAULT_MINUTES = 8.5
DEFAULT_STEPS = 910
SUMMARY_FILE = "demo_summary.json"

# The bar of issue 5, checked on the synthetic test split.
BAR: dict[str, float] = {
    "sidewalk accuracy": 0.90,
    "road accuracy": 0.90,
    "close-object recall (micro)": 0.80,
    "close-object precision (micro)": 0.80,
}


class DemoModelSizes(BaseModel):
    """Sizes of the from-scratch SmolVLM-architecture model (demo-notes.md recipe)."""

    model_config = ConfigDict(extra="forbid")

    image_size: int = Field(96, description="Image side in pixels (one tile).")
    patch_size: int = Field(12, description="Vision patch size: (96/12)^2/2^2 = 16 image tokens.")
    scale_factor: int = Field(2, description="Pixel-shuffle factor of the connector.")
    vision_hidden_size: int = Field(128, description="Vision encoder width.")
    vision_layers: int = Field(3, description="Vision encoder layers.")
    text_hidden_size: int = Field(192, description="Language model width.")
    text_layers: int = Field(3, description="Language model layers.")
    num_attention_heads: int = Field(4, description="Attention heads (vision and text).")
    vocab_size: int = Field(600, description="BPE vocabulary size (upper bound).")


# The Flamingo demo model: the same 96 px scenes (8 x 8 patches of 12 px) into a small CLIP
# tower and perceiver; its language model stays frozen as in the Flamingo recipe, so it is kept
# narrow (what learns is the perceiver and the gated cross-attention).
FLAMINGO_DEMO_SIZES: dict[str, int] = {
    "image_size": 96,
    "patch_size": 12,
    "vision_hidden_size": 64,
    "vision_layers": 2,
    "text_hidden_size": 128,
    "text_layers": 2,
    "num_latents": 16,
}


class DemoConfig(BaseModel):
    """Everything the demo does, with defaults that meet the issue-5 bar on a 2-core CPU."""

    model_config = ConfigDict(extra="forbid")

    out: Path = Field(Path("runs/demo"), description="Output folder.")
    family: Literal["smolvlm", "flamingo"] = Field(
        "smolvlm", description="Model family (flamingo: FLAMINGO_DEMO_SIZES, 96 px)."
    )
    seed: int = Field(0, description="Seed of data, initialisation and training.")
    minutes: float = Field(
        DEFAULT_MINUTES,
        gt=0,
        description="Training budget in minutes: sets the step count and caps time.",
    )
    steps: int | None = Field(
        None, ge=1, description="Optimiser steps (default: 910 x minutes / 8.5)."
    )
    batch_size: int = Field(32, ge=1, description="Training batch size.")
    learning_rate: float = Field(1e-3, gt=0, description="Peak learning rate (AdamW).")
    warmup_steps: int = Field(60, ge=0, description="Linear warm-up steps, then cosine decay.")
    object_rate: float = Field(
        0.8,
        gt=0,
        lt=1,
        description="Training images with at least one close object (test keeps the SENSATION "
        "rate, about 0.44).",
    )
    n_train: int = Field(400, ge=1, description="Train images written to disk (baseline, files).")
    n_val: int = Field(50, ge=1, description="Val images written to disk.")
    n_test: int = Field(300, ge=1, description="Held-out test images (the bar is measured here).")
    threads: int = Field(2, ge=1, description="torch CPU threads (fixed for reproducibility).")
    predict_batch_size: int = Field(100, ge=1, description="Generation batch size.")
    max_new_tokens: int = Field(96, ge=8, description="Generation length limit.")
    gallery_size: int = Field(12, ge=0, description="Test images shown in gallery.html.")
    caption_metrics: bool = Field(True, description="Run the caption metrics (needs Java).")
    resume: bool = Field(
        False,
        description="Continue a stopped demo in `out` with the same settings: keep its data and "
        "model, resume training from the newest checkpoint, predict only the missing lines.",
    )
    sizes: DemoModelSizes = Field(default_factory=DemoModelSizes)

    def train_steps(self) -> int:
        return (
            self.steps
            if self.steps is not None
            else max(1, round(DEFAULT_STEPS * self.minutes / DEFAULT_MINUTES))
        )


@dataclass
class DemoResult:
    """What the demo measured and where it wrote it."""

    out: Path
    metrics: dict[str, float | None]
    seconds: dict[str, float]
    steps_done: int
    steps_planned: int
    stopped_by_budget: bool
    files: dict[str, Path] = field(default_factory=dict)

    def passes_bar(self) -> bool:
        return all((self.metrics.get(name) or 0.0) >= low for name, low in BAR.items())


class _Stage:
    """Times one stage and announces it."""

    def __init__(self, log: Callable[[str], None], seconds: dict[str, float], name: str) -> None:
        self.log, self.seconds, self.name = log, seconds, name

    def __enter__(self) -> _Stage:
        self.start = time.perf_counter()
        self.log(f"[bold]{self.name}[/bold]")
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds[self.name] = round(time.perf_counter() - self.start, 1)


def _budget_callback(budget_s: float, log: Callable[[str], None]) -> Any:
    """A Trainer callback: stop when the wall-clock budget is spent; log progress lines."""
    from transformers import TrainerCallback

    class TrainingBudget(TrainerCallback):
        def __init__(self) -> None:
            self.start = 0.0
            self.stopped = False

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if time.perf_counter() - self.start > budget_s and state.global_step < state.max_steps:
                self.stopped = True
                control.should_training_stop = True
                log(
                    f"[yellow]time budget of {budget_s / 60:.1f} min spent at step "
                    f"{state.global_step}/{state.max_steps}: stopping (this machine is slower "
                    "than the reference; numbers are not reproducible run to run)[/yellow]"
                )

    return TrainingBudget()


def _headline(safety: dict[str, Any], captions: dict[str, Any] | None) -> dict[str, float | None]:
    strict = safety["strict"]
    fields = strict["fields"]
    near = strict["objects"]["near"]["micro"]
    far = strict["objects"]["far"]["micro"]
    metrics: dict[str, float | None] = {
        "sidewalk accuracy": fields["sidewalk_pos"]["accuracy"]["rate"],
        "road accuracy": fields["road_pos"]["accuracy"]["rate"],
        "relation accuracy": fields["road_vs_sidewalk"]["accuracy"]["rate"],
        "close-object recall (micro)": near["recall"],
        "close-object precision (micro)": near["precision"],
        "close-object position accuracy": near["position_accuracy"]["rate"],
        "close-object count accuracy": near["count_accuracy"]["rate"],
        "far-object recall (micro)": far["recall"],
        "far-object precision (micro)": far["precision"],
        "complete answers": strict["complete_answers"]["rate"],
    }
    if captions is not None:
        for name in ("CIDEr", "BLEU-4", "METEOR", "ROUGE-L"):
            metrics[name] = captions["metrics"].get(name)
    return metrics


def _rich_print(message: str) -> None:
    from rich import print as rich_print

    rich_print(message)


def run_demo(config: DemoConfig, log: Callable[[str], None] = _rich_print) -> DemoResult:
    """Run the whole demo into `config.out` (see the module docstring); returns the numbers."""
    import torch

    from roadscene.data.synth import SceneDistribution, structured_target, write_synth_dataset
    from roadscene.data.synth_dataset import RenderedSceneDataset
    from roadscene.io import write_json
    from roadscene.metrics.captions import evaluate_captions
    from roadscene.metrics.safety import evaluate_safety
    from roadscene.metrics.truth import truth_from_scenes
    from roadscene.models import get_family
    from roadscene.predict.runner import predict_file
    from roadscene.report import write_report_dir
    from roadscene.train.config import TrainConfig
    from roadscene.train.runner import run_training

    out = Path(config.out)
    _check_out_dir(config, out)
    torch.set_num_threads(config.threads)
    # Deterministic kernels where PyTorch has them (on CPU nearly all are; warn otherwise).
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    family = get_family(config.family)
    steps = config.train_steps()
    test_distribution = SceneDistribution.builtin()
    train_distribution = test_distribution.with_object_rate(config.object_rate)

    # 1. data ------------------------------------------------------------------------------
    data_dir = out / "data"
    n = config.n_train + config.n_val + config.n_test
    with _Stage(log, seconds, "1/5 data: rendering synthetic scenes"):
        synth = write_synth_dataset(
            data_dir,
            n,
            seed=config.seed,
            distribution=test_distribution,
            val_fraction=config.n_val / n,
            test_fraction=config.n_test / n,
            prompt=DEMO_PROMPT,
            context=False,
            source="built-in SENSATION-like distribution",
        )
        log(f"  {n} images in {data_dir} ({synth.counts})")

    # 2. model ------------------------------------------------------------------------------
    init_dir = out / "model-init"
    with _Stage(log, seconds, "2/5 model: tokenizer + random-init model"):
        if config.resume and (init_dir / "config.json").is_file():
            log(f"  kept {init_dir} (--resume)")
        corpus_rng_seed = config.seed + 10_000
        from roadscene.data.synth import sample_scenes

        corpus = [DEMO_PROMPT] + [
            structured_target(s) for s in sample_scenes(train_distribution, 4000, corpus_rng_seed)
        ]
        sizes = config.sizes.model_dump() if config.family == "smolvlm" else FLAMINGO_DEMO_SIZES
        if not (config.resume and (init_dir / "config.json").is_file()):
            family.build_tiny(init_dir, corpus=corpus, seed=config.seed, **sizes)
            log(f"  {config.family} from scratch in {init_dir}")

    # 3. train ------------------------------------------------------------------------------
    train_dir = out / "train"
    budget = _budget_callback(config.minutes * 60.0, log)
    train_config = TrainConfig.model_validate(
        {
            "model": {"family": config.family, "name_or_path": str(init_dir)},
            # SmolVLM: every weight trains (from scratch); Flamingo decides its trainable set
            # itself and rejects a finetune section.
            **({"finetune": {"method": "full"}} if config.family == "smolvlm" else {}),
            "data": {"task": "bvpi", "data_dir": str(data_dir), "eval_split": None},
            "train": {
                "output_dir": str(train_dir),
                "max_steps": steps,
                "batch_size": config.batch_size,
                "grad_accum": 1,
                "learning_rate": config.learning_rate,
                "weight_decay": 0.05,
                "adam_beta2": 0.98,
                "warmup_steps": min(config.warmup_steps, max(steps // 5, 0)),
                "lr_scheduler": "cosine",
                "max_grad_norm": 1.0,
                "seed": config.seed,
                "logging_steps": max(1, min(50, steps // 10)),
                "eval_steps": max(1, min(200, steps)),
                "save_total_limit": 1,
                "num_threads": config.threads,
            },
            "generation_eval": {"enabled": False},
        }
    )

    def rendered(family_: Any, processor: Any) -> RenderedSceneDataset:
        return RenderedSceneDataset(
            family_,
            processor,
            train_distribution,
            length=steps * config.batch_size,
            prompt=DEMO_PROMPT,
            seed=config.seed,
        )

    with _Stage(log, seconds, f"3/5 train: {steps} steps of {config.batch_size} fresh images"):
        summary_file = train_dir / "model" / "training_summary.json"
        if config.resume and summary_file.is_file():
            log(f"  kept the trained model in {summary_file.parent} (--resume)")
        else:
            has_checkpoint = any(train_dir.glob("checkpoint-*"))
            run_training(
                train_config,
                resume=config.resume and has_checkpoint,
                extra_callbacks=[budget],
                train_dataset_factory=rendered,
            )
        steps_done = json.loads(summary_file.read_text())["global_step"]
        log(f"  {steps_done} steps, model in {summary_file.parent}")

    # 4. predict ----------------------------------------------------------------------------
    predictions = out / "predictions_test.jsonl"
    with _Stage(log, seconds, f"4/5 predict: {config.n_test} held-out test images"):
        result = predict_file(
            summary_file.parent,
            data_dir / "bvpi_sft_test.jsonl",
            predictions,
            image_root=data_dir,
            batch_size=config.predict_batch_size,
            max_new_tokens=config.max_new_tokens,
        )
        log(f"  {result.written} answers, {result.items_per_second:.1f} items/s -> {predictions}")

    # 5. evaluate ---------------------------------------------------------------------------
    report_dir = out / "report"
    test_truth = {scene.image: scene for scene in synth.scenes["test"]}
    with _Stage(log, seconds, "5/5 evaluate: strict safety, captions, report, gallery"):
        safety = evaluate_safety(
            predictions,
            truth_from_scenes(test_truth, split="synthetic test"),
            mode="both",
            baseline_scenes=synth.scenes["train"],
        )
        write_report_dir(safety, report_dir / "safety")
        captions_report = None
        captions_note = ""
        if config.caption_metrics:
            try:
                captions = evaluate_captions(predictions)
            except InputError as err:  # e.g. no Java: the rest of the demo still stands
                captions_note = f"caption metrics unavailable: {err}"
                log(f"  [yellow]{captions_note}[/yellow]")
            else:
                write_report_dir(captions, report_dir / "captions")
                captions_report = captions.report
        gallery = _write_demo_gallery(config, data_dir, predictions, test_truth, report_dir)

    metrics = _headline(safety.report, captions_report)
    seconds["total"] = round(time.perf_counter() - started, 1)
    demo = DemoResult(
        out=out,
        metrics=metrics,
        seconds=seconds,
        steps_done=steps_done,
        steps_planned=steps,
        stopped_by_budget=budget.stopped,
        files={
            "report": report_dir / "report.md",
            "gallery": gallery,
            "safety": report_dir / "safety" / "report.md",
            "predictions": predictions,
        },
    )
    if captions_report is not None:
        demo.files["captions"] = report_dir / "captions" / "report.md"
    summary = {
        "config": config.model_dump(mode="json"),
        "steps_planned": steps,
        "steps_done": steps_done,
        "stopped_by_budget": budget.stopped,
        "metrics": metrics,
        "bar": BAR,
        "passes_bar": demo.passes_bar(),
        "seconds": seconds,
        "threads": config.threads,
        "torch": torch.__version__,
        "captions_note": captions_note or None,
    }
    write_json(out / SUMMARY_FILE, summary)
    _write_demo_markdown(demo, config, summary, report_dir / "report.md")
    return demo


CONFIG_FILE = "demo_config.json"
_RUN_DEFINING = {
    "family", "seed", "steps", "batch_size", "learning_rate", "warmup_steps", "object_rate",
    "n_train", "n_val", "n_test", "threads", "max_new_tokens", "sizes",
}  # fmt: skip


def _check_out_dir(config: DemoConfig, out: Path) -> None:
    """A fresh run needs an unused folder; `resume` needs the same settings as the stopped run.
    The settings are recorded in `demo_config.json` before anything else is written."""
    from roadscene.io import write_json

    saved_file = out / CONFIG_FILE
    used = saved_file.exists() or (out / "train").exists() or (out / SUMMARY_FILE).exists()
    if used and not config.resume:
        raise InputError(
            "demo output folder is not empty; pass --resume to continue it, or choose another "
            "--out",
            path=out,
        )
    # What decides the data, the model, its training and its answers (not reporting options).
    current = config.model_dump(mode="json", include=_RUN_DEFINING)
    current["steps"] = config.train_steps()
    if config.resume and saved_file.is_file():
        saved = json.loads(saved_file.read_text(encoding="utf-8"))
        changed = sorted(k for k in current.keys() | saved.keys() if current.get(k) != saved.get(k))
        if changed:
            raise InputError(
                f"--resume with other settings than the stopped run ({', '.join(changed)} "
                "differ); use the same options or another --out",
                path=saved_file,
            )
    write_json(saved_file, current)


def _write_demo_gallery(
    config: DemoConfig,
    data_dir: Path,
    predictions: Path,
    truth: dict[str, Any],
    report_dir: Path,
) -> Path:
    """The first `gallery_size` test images, then (if any) up to a third more with mistakes."""
    from roadscene.io import read_records
    from roadscene.report.gallery import GalleryItem, item_verdicts, write_gallery
    from roadscene.schema import image_key

    items = []
    for _, row in read_records(predictions):
        scene = truth[image_key(row["image"])]
        items.append(
            GalleryItem(data_dir / row["image"], scene, row.get("target", ""), row["prediction"])
        )
    shown = items[: config.gallery_size]
    wrong = [i for i in items[config.gallery_size :] if not all(item_verdicts(i).values())]
    shown += wrong[: max(config.gallery_size // 3, 0)]
    note = (
        f"{len(shown)} of {len(items)} held-out synthetic test images: the first "
        f"{min(config.gallery_size, len(items))}, then answers with a mistake. The cue is "
        "roadscene.predict.cue's rule table applied to the predicted and to the true fields."
    )
    return write_gallery(
        shown, report_dir / "gallery.html", title="roadscene demo: test images", note=note
    )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _write_demo_markdown(
    demo: DemoResult, config: DemoConfig, summary: dict[str, Any], path: Path
) -> None:
    from roadscene.io import atomic_write

    lines = [
        "# roadscene demo",
        "",
        f"A {config.family} model trained from scratch on synthetic street scenes, "
        f"{demo.steps_done} steps of {config.batch_size} freshly rendered images "
        f"({'stopped by the time budget' if demo.stopped_by_budget else 'as planned'}), "
        f"evaluated on {config.n_test} held-out synthetic test images (seed {config.seed}).",
        "",
        "| metric | value | bar |",
        "| --- | --- | --- |",
    ]
    for name, value in demo.metrics.items():
        bar = BAR.get(name)
        verdict = "" if bar is None else f"≥ {bar:.2f} {'✓' if (value or 0) >= bar else '✗'}"
        lines.append(f"| {name} | {_fmt(value)} | {verdict} |")
    lines += [
        "",
        "Object figures count the `Nearby:` list (close) and the `Far:` list separately, by class "
        "presence (strict parser); captions compare the whole answer with the target text.",
        "",
        "## Time",
        "",
        "| stage | seconds |",
        "| --- | --- |",
        *[f"| {stage} | {value} |" for stage, value in demo.seconds.items()],
        "",
        f"{config.threads} torch threads; torch {summary['torch']}.",
        "",
        "## Files",
        "",
        "- [gallery.html](gallery.html): test images with predicted and true answers and cues",
        "- [safety/report.md](safety/report.md): strict and compat safety report, confusion "
        "matrices and per-object plots",
    ]
    if "captions" in demo.files:
        lines.append("- [captions/report.md](captions/report.md): caption metrics")
    elif summary.get("captions_note"):
        lines.append(f"- captions: {summary['captions_note']}")
    lines += [
        "- `../predictions_test.jsonl`: one line per test image",
        "- `../data/`: the synthetic dataset (images, annotations.csv, SFT/caption files)",
        "- `../train/model/`: the trained model, processor and resolved config",
        f"- `../{SUMMARY_FILE}`: these numbers as JSON",
        "",
        "## Settings",
        "",
        "```json",
        json.dumps(summary["config"], indent=2),
        "```",
        "",
    ]
    with atomic_write(path) as handle:
        handle.write("\n".join(lines))
