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

With `video` the same five stages work on short synthetic clips (`roadscene.data.synth.clips`):
WebM clips on disk, freshly rendered clips for training, a model that sees `clip_frames` frames
of each (or, as the control, only the last: `frames_seen`), and the motion of close people,
bicycles and cars scored beside the usual figures.

Every stage uses the project's public machinery; nothing here is a private copy of it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from roadscene.data.clips import ClipSettings
from roadscene.demo.config import (
    DEMO_PROMPT,
    MOTION_CONTROL_MARGIN,
    SUMMARY_FILE,
    DemoConfig,
    DemoResult,
)
from roadscene.demo.report import headline, write_demo_gallery, write_demo_markdown
from roadscene.errors import InputError


class _Stage:
    """Times one stage (under its short name) and announces it with what it does."""

    def __init__(
        self, log: Callable[[str], None], seconds: dict[str, float], name: str, what: str
    ) -> None:
        self.log, self.seconds, self.name, self.what = log, seconds, name, what

    def __enter__(self) -> _Stage:
        self.start = time.perf_counter()
        self.log(f"[bold]{self.name}: {self.what}[/bold]")
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


def _rich_print(message: str) -> None:
    from rich import print as rich_print

    rich_print(message)


def run_demo(config: DemoConfig, log: Callable[[str], None] = _rich_print) -> DemoResult:
    """Run the whole demo into `config.out` (see the module docstring); returns the numbers."""
    import numpy as np
    import torch

    from roadscene.data.synth import (
        ClipOptions,
        RenderedClips,
        RenderedScenes,
        SceneDistribution,
        sample_motion,
        sample_scenes,
        structured_target,
        write_synth_dataset,
    )
    from roadscene.io import read_json, write_json
    from roadscene.metrics.captions import evaluate_captions
    from roadscene.metrics.safety import evaluate_safety
    from roadscene.metrics.truth import truth_from_scenes
    from roadscene.models import get_family
    from roadscene.predict import ModelCard, PredictSettings, predict_file
    from roadscene.report import write_report_dir
    from roadscene.schema import MOVING_CLASSES
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
    if config.video:  # enough close people, bicycles and cars to see them move
        test_distribution = test_distribution.with_object_rate(config.moving_rate, MOVING_CLASSES)
    train_distribution = test_distribution.with_object_rate(config.object_rate)
    clips = ClipOptions() if config.video else None
    what = "clips" if config.video else "images"

    # 1. data ------------------------------------------------------------------------------
    data_dir = out / "data"
    n = config.n_train + config.n_val + config.n_test
    with _Stage(log, seconds, "1/5 data", f"rendering synthetic {what}"):
        synth = write_synth_dataset(
            data_dir,
            n,
            seed=config.seed,
            distribution=test_distribution,
            val_fraction=config.n_val / n,
            test_fraction=config.n_test / n,
            prompt=DEMO_PROMPT,
            context=False,
            source="built-in SENSATION-like distribution"
            + (f", moving rate {config.moving_rate}" if config.video else ""),
            conditions=config.conditions,
            clips=clips,
        )
        log(f"  {n} {what} in {data_dir} ({synth.counts})")

    # 2. model ------------------------------------------------------------------------------
    init_dir = out / "model-init"
    with _Stage(log, seconds, "2/5 model", "tokenizer + random-init model"):
        if config.resume and (init_dir / "config.json").is_file():
            log(f"  kept {init_dir} (--resume)")
        corpus_rng_seed = config.seed + 10_000
        scenes = list(sample_scenes(train_distribution, 4000, corpus_rng_seed))
        if config.video:  # targets with motion words
            rng = np.random.default_rng(corpus_rng_seed)
            scenes = [sample_motion(scene, rng) for scene in scenes]
        corpus = [DEMO_PROMPT] + [structured_target(s) for s in scenes]
        if config.video:  # the processor's text around the frames, as often as the answers
            clip_seconds = clips.frames / clips.fps
            corpus += family.clip_prompt_texts(config.clip_frames, clip_seconds) * len(scenes)
        if not (config.resume and (init_dir / "config.json").is_file()):
            family.build_tiny(init_dir, corpus=corpus, seed=config.seed, sizes=config.model_sizes())
            log(f"  {config.family} from scratch in {init_dir}")

    # 3. train ------------------------------------------------------------------------------
    train_dir = out / "train"
    budget = _budget_callback(config.minutes * 60.0, log)
    clip_settings = ClipSettings(frames=config.clip_frames, seen=config.frames_seen)
    train_config = TrainConfig.model_validate(
        {
            "model": {"family": config.family, "name_or_path": str(init_dir)},
            # From scratch: every weight trains, unless the family's recipe decides itself.
            **({"finetune": family.demo_finetune} if family.demo_finetune is not None else {}),
            "data": {
                "task": "bvpi",
                "data_dir": str(data_dir),
                "eval_split": None,
                "augment": config.augment.model_dump(),
                "clip": clip_settings.model_dump(),
            },
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
                "motion_loss_weight": config.motion_loss_weight if config.video else 1.0,
                "seed": config.seed,
                "logging_steps": max(1, min(50, steps // 10)),
                "eval_steps": max(1, min(200, steps)),
                "save_total_limit": 1,
                "num_threads": config.threads,
            },
            "generation_eval": {"enabled": False},
        }
    )

    rendered: Any = (
        RenderedClips(
            train_distribution,
            length=steps * config.batch_size,
            prompt=DEMO_PROMPT,
            seed=config.seed,
            clip=clips,
            settings=clip_settings,
        )
        if config.video
        else RenderedScenes(
            train_distribution,
            length=steps * config.batch_size,
            prompt=DEMO_PROMPT,
            seed=config.seed,
        )
    )
    with _Stage(log, seconds, "3/5 train", f"{steps} steps of {config.batch_size} fresh {what}"):
        summary_file = train_dir / "model" / "training_summary.json"
        if config.resume and summary_file.is_file():
            log(f"  kept the trained model in {summary_file.parent} (--resume)")
        else:
            has_checkpoint = any(train_dir.glob("checkpoint-*"))
            run_training(
                train_config,
                resume=config.resume and has_checkpoint,
                extra_callbacks=[budget],
                train_examples=rendered,
            )
        summary = read_json(summary_file)
        steps_done = summary.get("global_step") if isinstance(summary, dict) else None
        if not isinstance(steps_done, int):
            raise InputError("training summary without global_step", path=summary_file)
        log(f"  {steps_done} steps, model in {summary_file.parent}")

    # 4. predict ----------------------------------------------------------------------------
    predictions = out / "predictions_test.jsonl"
    with _Stage(log, seconds, "4/5 predict", f"{config.n_test} held-out test {what}"):
        result = predict_file(
            data_dir / "bvpi_sft_test.jsonl",
            predictions,
            ModelCard.read(summary_file.parent),
            PredictSettings(
                image_root=data_dir,
                batch_size=config.predict_batch_size,
                max_new_tokens=config.max_new_tokens,
            ),
        )
        log(f"  {result.written} answers, {result.items_per_second:.1f} items/s -> {predictions}")

    # 5. evaluate ---------------------------------------------------------------------------
    report_dir = out / "report"
    test_truth = {scene.image: scene for scene in synth.scenes["test"]}
    with _Stage(log, seconds, "5/5 evaluate", "strict safety, captions, report, gallery"):
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
        gallery = write_demo_gallery(config, data_dir, predictions, test_truth, report_dir)

    metrics = headline(safety.report, captions_report)
    motion_ceiling = None
    if config.video and config.frames_seen == "last":
        majority = metrics.get("motion majority-class rate")
        motion_ceiling = None if majority is None else majority + MOTION_CONTROL_MARGIN
    by_condition: dict[str, dict[str, float | None]] = {}
    if config.conditions:
        with _Stage(
            log, seconds, "conditions", f"the test scenes under {', '.join(config.conditions)}"
        ):
            by_condition = _evaluate_conditions(
                config, data_dir, summary_file.parent, test_truth, synth
            )
            by_condition = {"clean": metrics, **by_condition}
    seconds["total"] = round(time.perf_counter() - started, 1)
    demo = DemoResult(
        out=out,
        metrics=metrics,
        seconds=seconds,
        steps_done=steps_done,
        steps_planned=steps,
        stopped_by_budget=budget.stopped,
        by_condition=by_condition,
        bar=config.bar,
        motion_ceiling=motion_ceiling,
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
        "bar": config.bar,
        "passes_bar": demo.passes_bar(),
        "seconds": seconds,
        "threads": config.threads,
        "torch": torch.__version__,
        "captions_note": captions_note or None,
        "train_seconds_per_step": _seconds_per_step(summary_file),
    }
    if by_condition:
        summary["conditions"] = by_condition
    if motion_ceiling is not None:
        summary["motion_ceiling"] = motion_ceiling
    write_json(out / SUMMARY_FILE, summary)
    write_demo_markdown(demo, config, summary, report_dir / "report.md")
    return demo


def _seconds_per_step(summary_file: Path) -> float | None:
    """Mean training step time of the run (the Trainer's runtime over its steps)."""
    from roadscene.io import read_json

    summary = read_json(summary_file)
    runtime = summary["metrics"].get("train_runtime")
    steps = summary.get("global_step") or 0
    return round(runtime / steps, 4) if runtime and steps else None


def _evaluate_conditions(
    config: DemoConfig, data_dir: Path, model_dir: Path, test_truth: dict, synth: Any
) -> dict[str, dict[str, float | None]]:
    """Predict and score the test scenes under every condition (headline figures each)."""
    from roadscene.demo.report import headline
    from roadscene.metrics.safety import evaluate_safety
    from roadscene.metrics.truth import truth_from_scenes
    from roadscene.predict import ModelCard, PredictSettings, predict_file
    from roadscene.report import write_report_dir

    card = ModelCard.read(model_dir)
    out = Path(config.out)
    results = {}
    for condition in config.conditions:
        predictions = out / f"predictions_test_{condition}.jsonl"
        predict_file(
            data_dir / f"bvpi_sft_test_{condition}.jsonl",
            predictions,
            card,
            PredictSettings(
                image_root=data_dir,
                batch_size=config.predict_batch_size,
                max_new_tokens=config.max_new_tokens,
            ),
            progress=False,
        )
        safety = evaluate_safety(
            predictions,
            truth_from_scenes(test_truth, split=f"synthetic test, {condition}"),
            mode="both",
            baseline_scenes=synth.scenes["train"],
        )
        write_report_dir(safety, out / "report" / f"safety_{condition}")
        results[condition] = headline(safety.report, None)
    return results


CONFIG_FILE = "demo_config.json"
_RUN_DEFINING = {
    "family", "seed", "steps", "batch_size", "learning_rate", "warmup_steps", "object_rate",
    "n_train", "n_val", "n_test", "threads", "max_new_tokens", "sizes", "augment", "conditions",
    "video", "clip_frames", "frames_seen", "moving_rate",
}  # fmt: skip


def _check_out_dir(config: DemoConfig, out: Path) -> None:
    """A fresh run needs an unused folder; `resume` needs the same settings as the stopped run.
    The settings are recorded in `demo_config.json` before anything else is written."""
    from roadscene.io import check_output, read_json, write_json

    def is_demo_dir(folder: Path) -> bool:
        return any((folder / name).exists() for name in (CONFIG_FILE, "train", SUMMARY_FILE))

    check_output(out, folder=True, ours=is_demo_dir, what="a demo folder")
    saved_file = out / CONFIG_FILE
    used = out.is_dir() and is_demo_dir(out)
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
        saved = read_json(saved_file)
        if not isinstance(saved, dict):
            raise InputError("not a demo settings file", path=saved_file)
        # settings added later: a folder written before them ran with their defaults
        defaults = DemoConfig().model_dump(
            mode="json",
            include={"augment", "conditions", "video", "clip_frames", "frames_seen", "moving_rate"},
        )
        saved = {**defaults, **saved}
        changed = sorted(k for k in current.keys() | saved.keys() if current.get(k) != saved.get(k))
        if changed:
            raise InputError(
                f"--resume with other settings than the stopped run ({', '.join(changed)} "
                "differ); use the same options or another --out",
                path=saved_file,
            )
    write_json(saved_file, current)
