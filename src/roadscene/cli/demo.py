"""`roadscene demo`: synthesise scenes, train a small VLM from scratch on the CPU, evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def demo(
    out: Annotated[
        Path, typer.Option(help="Output folder: new or empty (a stopped demo's with --resume).")
    ] = Path("runs/demo"),
    minutes: Annotated[
        float | None,
        typer.Option(
            help="Training budget in minutes: sets the step count (910 steps for 8.5 min, the "
            "2-core CPU speed; --video: 1,500 clip steps for 7.5 min) and stops training when "
            "spent.  [default: 8.5; --video: 7.5]"
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same numbers.")] = 0,
    family: Annotated[
        str | None,
        typer.Option(
            help="Model family (smolvlm, qwen3vl, flamingo); its demo sizes are used.  "
            "[default: smolvlm; --video: qwen3vl]"
        ),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(min=1, help="Optimiser steps instead of the budget's (910 x minutes / 8.5)."),
    ] = None,
    n_test: Annotated[int, typer.Option(min=1, help="Held-out synthetic test images.")] = 300,
    n_train: Annotated[int, typer.Option(min=1, help="Train images written to disk.")] = 400,
    n_val: Annotated[int, typer.Option(min=1, help="Val images written to disk.")] = 50,
    threads: Annotated[
        int,
        typer.Option(
            min=1,
            help="torch CPU threads (fixed: part of what makes runs reproducible). On a machine "
            "busy with other jobs, 1 can be much faster than 2.",
        ),
    ] = 2,
    caption_metrics: Annotated[
        bool, typer.Option(help="Run the caption metrics (BLEU, METEOR, ROUGE-L, CIDEr; Java).")
    ] = True,
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue a stopped demo in --out (same options): resume training from its "
            "newest checkpoint, predict only the missing test images."
        ),
    ] = False,
    conditions: Annotated[
        str,
        typer.Option(
            help="Also evaluate on the test scenes under these conditions, comma-separated "
            "(rain, fog, night, glare, blur)."
        ),
    ] = "",
    augment: Annotated[
        bool,
        typer.Option(
            help="Train with every weather / lighting transform at p 0.15, strength 0.7 "
            "(needs roadscene[augment])."
        ),
    ] = False,
    video: Annotated[
        bool,
        typer.Option(
            help="Train a clip model on synthetic clips (walking forward; close people, "
            "bicycles and cars approaching, moving away, crossing or standing still) and score "
            "their motion."
        ),
    ] = False,
    clip_frames: Annotated[
        int, typer.Option(min=2, max=8, help="--video: frames the model sees per clip.")
    ] = 4,
    frames_seen: Annotated[
        str,
        typer.Option(
            help="--video: all (every sampled frame) or last (the last frame only: the control "
            "on the same data and steps)."
        ),
    ] = "all",
    motion_loss_weight: Annotated[
        float | None,
        typer.Option(
            min=1.0,
            help="--video: loss weight of the tokens of each motion word.  [default: 15]",
        ),
    ] = None,
) -> None:
    """Show the whole system working, offline on a CPU: synthetic data -> a small
    model trained from scratch -> predictions -> evaluation and report."""
    from pydantic import ValidationError
    from rich.console import Console
    from rich.table import Table

    from roadscene.data.augment import AugmentSection, weather_preset
    from roadscene.demo import DemoConfig, run_demo
    from roadscene.errors import InputError

    console = Console(highlight=False)
    try:
        config = DemoConfig(
            out=out,
            **({"minutes": minutes} if minutes is not None else {}),
            seed=seed,
            **({"family": family} if family is not None else {}),
            steps=steps,
            n_test=n_test,
            n_train=n_train,
            n_val=n_val,
            threads=threads,
            caption_metrics=caption_metrics,
            resume=resume,
            conditions=[c.strip() for c in conditions.split(",") if c.strip()],
            augment=weather_preset() if augment else AugmentSection(),
            video=video,
            clip_frames=clip_frames,
            **({"frames_seen": frames_seen} if frames_seen != "all" else {}),
            **({"motion_loss_weight": motion_loss_weight} if motion_loss_weight else {}),
        )
    except ValidationError as err:
        first = err.errors()[0]
        raise InputError(first["msg"], field=".".join(map(str, first["loc"]))) from None
    result = run_demo(config, log=console.print)

    items = "clips" if config.video else "images"
    table = Table(title=f"roadscene demo: {config.n_test} held-out synthetic test {items}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("bar", justify="right")
    for name, value in result.metrics.items():
        low = result.bar.get(name)
        shown = "n/a" if value is None else f"{value:.3f}"
        verdict = ""
        if low is not None:
            ok = value is not None and value >= low
            verdict = f"[{'green' if ok else 'red'}]≥ {low:.2f} {'pass' if ok else 'FAIL'}[/]"
        if name == "motion accuracy" and result.motion_ceiling is not None:
            ceiling = result.motion_ceiling
            ok = value is not None and value <= ceiling
            verdict = f"[{'green' if ok else 'red'}]≤ {ceiling:.3f} {'pass' if ok else 'FAIL'}[/]"
        table.add_row(name, shown, verdict)
    console.print(table)
    if result.by_condition:
        shown = ("sidewalk accuracy", "road accuracy", "close-object recall (micro)")
        by_condition = Table(title="Per test condition")
        by_condition.add_column("condition")
        for name in shown:
            by_condition.add_column(name, justify="right")
        for condition, metrics in result.by_condition.items():
            by_condition.add_row(condition, *(f"{metrics[name] or 0:.3f}" for name in shown))
        console.print(by_condition)
    timing = ", ".join(f"{k.split(':')[0]} {v:.0f} s" for k, v in result.seconds.items())
    console.print(f"steps {result.steps_done}/{result.steps_planned}; time: {timing}")
    for name, path in result.files.items():
        console.print(f"{name}: {path}")
