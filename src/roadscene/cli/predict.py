"""`roadscene predict --model ... --data FILE --out FILE.jsonl`: batched, resumable."""

from __future__ import annotations

from pathlib import Path

import typer


def predict(
    model: str = typer.Option(
        ..., "--model", help="Hub id, saved model folder, or a training output (adapter) folder."
    ),
    data: Path = typer.Option(..., "--data", help="bvpi_sft_*.jsonl or captions_*.json file."),
    out: Path = typer.Option(..., "--out", help="Output JSONL (re-running continues it)."),
    image_root: Path | None = typer.Option(
        None, "--image-root", help="Folder image paths are relative to (default: the data file's)."
    ),
    adapter: Path | None = typer.Option(None, "--adapter", help="PEFT adapter folder."),
    family: str | None = typer.Option(
        None, "--family", help="Model family (default: from the saved config / model type)."
    ),
    task: str = typer.Option("auto", "--task", help="auto, caption, bvpi or annotated."),
    batch_size: int = typer.Option(8, "--batch-size", help="Items per generate call."),
    num_beams: int = typer.Option(1, "--num-beams", help="1 = greedy, K = beam search."),
    max_new_tokens: int = typer.Option(
        192,
        "--max-new-tokens",
        help="Answer length cap (published answers run to ~730 characters).",
    ),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N rows."),
    on_bad_image: str = typer.Option(
        "error", "--on-bad-image", help="error: stop naming the image; skip: skip and count."
    ),
    structured: bool | None = typer.Option(
        None,
        "--structured/--no-structured",
        help="Constrain answers to the target grammar (default: on for the bvpi task).",
    ),
    relation_from_fields: bool = typer.Option(
        False,
        "--relation-from-fields",
        help="With --structured: allow only the relation the sidewalk/road rule derives.",
    ),
    output_format: str = typer.Option(
        "text",
        "--format",
        help="text, or json: also write the parsed answer as an annotation-schema object.",
    ),
    shots: int = typer.Option(
        0, "--shots", help="In-context demonstrations per item (flamingo; 0 = zero-shot)."
    ),
    shots_from: Path | None = typer.Option(
        None, "--shots-from", help="Data file the demonstrations come from (the training split)."
    ),
    shot_selection: str = typer.Option(
        "random",
        "--shot-selection",
        help="random, or similar: nearest training images by CLIP embedding (RICES).",
    ),
    shot_seed: int = typer.Option(0, "--shot-seed", help="Seed of the random shot selection."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: auto)."),
) -> None:
    """Generate answers (answer text only) for every row; one JSON line per item."""
    from roadscene.predict import ModelCard, PredictSettings, predict_file

    settings = PredictSettings.from_options(
        task=task,
        image_root=image_root,
        batch_size=batch_size,
        num_beams=num_beams,
        max_new_tokens=max_new_tokens,
        limit=limit,
        on_bad_image=on_bad_image,
        structured=structured,
        relation_from_fields=relation_from_fields,
        output_format=output_format,
        shots=shots,
        shots_from=shots_from,
        shot_selection=shot_selection,
        shot_seed=shot_seed,
    )
    card = ModelCard.read(model, adapter, family)
    summary = predict_file(data, out, card, settings, device=device)
    typer.echo(
        f"wrote {summary.written} predictions to {out} ({summary.already_done} already there"
        + (f", {summary.items_per_second:.2f} items/s" if summary.written else "")
        + ")"
    )
    if summary.unseen_prompts:
        typer.echo(
            f"warning: {summary.unseen_prompts} rows ask a prompt the model was not trained on "
            f"(it was trained on {card.prompts[0]!r}); its answers may not follow the trained "
            "format",
            err=True,
        )
    if summary.skipped_bad_images:
        typer.echo(f"skipped {len(summary.skipped_bad_images)} rows with bad images:")
        for line, image, reason in summary.skipped_bad_images:
            typer.echo(f"  line {line}: {image}: {reason}")
