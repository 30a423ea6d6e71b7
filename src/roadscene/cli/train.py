"""`roadscene train CONFIG.yaml [--set key=value ...] [--resume]`."""

from __future__ import annotations

from pathlib import Path

import typer


def train(
    config: Path = typer.Argument(..., help="YAML recipe (see configs/)."),
    overrides: list[str] | None = typer.Option(
        None,
        "--set",
        help="Override a field: section.key=value (e.g. train.learning_rate=1e-4); repeatable. "
        "Precedence: defaults -> YAML -> --set.",
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from the newest checkpoint in train.output_dir."
    ),
) -> None:
    """Fine-tune a model (LoRA / QLoRA / full) with the HF Trainer; torchrun / accelerate launch
    scale it out. Saves model/adapter + processor + resolved config to OUTPUT_DIR/model."""
    from roadscene.train.config import load_config
    from roadscene.train.runner import run_training

    resolved = load_config(config, overrides or [])
    result = run_training(resolved, resume=resume)
    if not result.is_main_process:
        return
    typer.echo(f"saved {result.model_dir}")
    if result.skipped_images:
        typer.echo(f"skipped {result.skipped_images} rows with missing or unreadable images")
