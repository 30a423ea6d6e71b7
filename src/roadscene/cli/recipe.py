"""`roadscene data augment-preview|filter|export`: the data recipe's commands (registered under
`data`)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class TaskOption(StrEnum):
    caption = "caption"
    bvpi = "bvpi"
    annotated = "annotated"


class FormatOption(StrEnum):
    messages = "messages"
    hf_dataset = "hf-dataset"


def augment_preview(
    image: Annotated[Path, typer.Argument(help="The image to show under every transform.")],
    out: Annotated[Path, typer.Option(help="PNG file to write.")] = Path("augment_preview.png"),
    config: Annotated[
        Path | None,
        typer.Option(
            help="Training recipe whose data.augment to show (strengths, and a row "
            "of the whole configured pipeline)."
        ),
    ] = None,
    strength: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=1.0, help="Strength of every transform (default: the recipe's, else 0.5)."
        ),
    ] = None,
    samples: Annotated[int, typer.Option(min=1, max=16, help="Draws per transform.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the draws.")] = 0,
) -> None:
    """Write a PNG grid of one image under every augmentation transform."""
    from roadscene.data.augment_preview import preview_rows, write_preview_grid

    section = None
    if config is not None:
        from roadscene.train.config import load_config

        section = load_config(config).data.augment
    rows = preview_rows(image, section, samples=samples, strength=strength, seed=seed)
    write_preview_grid(rows, out)
    typer.echo(f"wrote {out} ({len(rows)} rows)")


def filter_pairs(
    data: Annotated[
        Path, typer.Argument(help="Data file: captions JSON, bvpi JSONL or conversational JSONL.")
    ],
    clip_model: Annotated[str, typer.Option(help="CLIP model folder or hub id.")],
    out: Annotated[Path, typer.Option(help="Folder for the kept / dropped files and the report.")],
    threshold: Annotated[
        float,
        typer.Option(
            help="Keep rows with cosine >= this. 0.28 belongs to OpenAI CLIP "
            "ViT-B/32 (LAION-5B); other CLIP models need their own."
        ),
    ] = 0.28,
    image_root: Annotated[
        Path | None,
        typer.Option(help="Folder image paths are relative to (default: the data file's)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images or texts per CLIP batch.")] = 64,
    device: Annotated[
        str | None, typer.Option(help="Torch device (default: cuda when there is one).")
    ] = None,
) -> None:
    """Score image-caption pairs with CLIP; keep those above the threshold."""
    from roadscene.predict.clip_filter import filter_by_clip

    result = filter_by_clip(
        data,
        out,
        clip_model,
        threshold=threshold,
        image_root=image_root,
        batch_size=batch_size,
        device=device,
    )
    typer.echo(
        f"kept {result.kept}, dropped {result.dropped} (threshold {threshold}), "
        f"{result.unscored} without a caption kept unscored; {result.computed} embeddings "
        f"computed; {result.files['kept']}, {result.files['dropped']}, {result.files['report']}"
    )


def export(
    data: Annotated[Path, typer.Argument(help="Task data file (captions JSON or bvpi JSONL).")],
    out: Annotated[Path, typer.Option(help="JSONL file (messages) or folder (hf-dataset).")],
    task: Annotated[TaskOption, typer.Option(help="What the rows are.")] = TaskOption.bvpi,
    format: Annotated[
        FormatOption,
        typer.Option(
            help="messages: conversational JSONL; hf-dataset: a `datasets` dataset on "
            "disk with the images embedded."
        ),
    ] = FormatOption.messages,
    image_root: Annotated[
        Path | None,
        typer.Option(help="Folder image paths are relative to (default: the data file's)."),
    ] = None,
) -> None:
    """Export task data in the conversational format ({"messages": [...], "images": [...]})."""
    from roadscene.data.formats import export_messages, save_hf_dataset

    writer = export_messages if format is FormatOption.messages else save_hf_dataset
    count = writer(task.value, data, out, image_root=image_root)
    typer.echo(f"wrote {count} rows to {out} ({format.value})")
