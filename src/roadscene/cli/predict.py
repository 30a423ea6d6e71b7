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
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Items per generate call."),
    num_beams: int = typer.Option(1, "--num-beams", min=1, help="1 = greedy, K = beam search."),
    max_new_tokens: int = typer.Option(
        192,
        "--max-new-tokens",
        min=1,
        help="Answer length cap (published answers run to ~730 characters).",
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N rows."),
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
        0, "--shots", min=0, help="In-context demonstrations per item (flamingo; 0 = zero-shot)."
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
) -> None:
    """Generate answers (answer text only) for every row; one JSON line per item."""
    from roadscene.errors import InputError
    from roadscene.predict.runner import predict_file, resolve_task

    if task not in {"auto", "caption", "bvpi", "annotated"}:
        raise InputError(f"unknown --task '{task}'; allowed: auto, caption, bvpi, annotated")
    task = resolve_task(task, data, model, adapter)
    if on_bad_image not in {"error", "skip"}:
        raise InputError(f"unknown --on-bad-image '{on_bad_image}'; allowed: error, skip")
    from roadscene.predict.structured import structured_predict_options

    options = structured_predict_options(
        data,
        task=task,
        structured=structured,
        relation_from_fields=relation_from_fields,
        output_format=output_format,
        max_new_tokens=max_new_tokens,
    )
    from roadscene.models.flamingo.fewshot import fewshot_predict_options

    options |= fewshot_predict_options(
        shots,
        shots_from,
        selection=shot_selection,
        seed=shot_seed,
        task=task,
        data=data,
        image_root=image_root,
    )
    summary = predict_file(
        model,
        data,
        out,
        image_root=image_root,
        adapter=adapter,
        family=family,
        task=task,  # type: ignore[arg-type]
        batch_size=batch_size,
        num_beams=num_beams,
        max_new_tokens=max_new_tokens,
        limit=limit,
        on_bad_image=on_bad_image,  # type: ignore[arg-type]
        **options,
    )
    typer.echo(
        f"wrote {summary.written} predictions to {out} ({summary.already_done} already there"
        + (f", {summary.items_per_second:.2f} items/s" if summary.written else "")
        + ")"
    )
    if summary.skipped_bad_images:
        typer.echo(f"skipped {len(summary.skipped_bad_images)} rows with bad images:")
        for line, image, reason in summary.skipped_bad_images:
            typer.echo(f"  line {line}: {image}: {reason}")
