"""`roadscene predict --model ... --data FILE --out FILE.jsonl`: batched, resumable; on this
machine, or on a Ray cluster with `--engine ray` (the same file either way)."""

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
    clip_frames: int | None = typer.Option(
        None,
        "--clip-frames",
        min=1,
        max=64,
        help="Rows naming a video or frames: frames sampled per clip (default: as the model "
        "was trained, else 8).",
    ),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: auto)."),
    engine: str = typer.Option(
        "local", "--engine", help="local: this process; ray: workers on a Ray cluster."
    ),
    address: str | None = typer.Option(
        None,
        "--address",
        help="With --engine ray: auto (a cluster started with `ray start`), ray://HOST:10001, "
        "or local (default: RAY_ADDRESS, else a running cluster, else a new local one).",
    ),
    num_workers: int | None = typer.Option(
        None, "--num-workers", help="With --engine ray: workers, each loading the model (1)."
    ),
    gpus_per_worker: float | None = typer.Option(
        None, "--gpus-per-worker", help="With --engine ray: GPUs per worker (0: CPU workers)."
    ),
    cpus_per_worker: int | None = typer.Option(
        None, "--cpus-per-worker", help="With --engine ray: CPUs (torch threads) per worker (1)."
    ),
) -> None:
    """Generate answers (answer text only) for every row; one JSON line per item."""
    from roadscene.errors import InputError
    from roadscene.predict import ModelCard, PredictSettings, predict_file

    ray_options = {
        "address": address,
        "num_workers": num_workers,
        "gpus_per_worker": gpus_per_worker,
        "cpus_per_worker": cpus_per_worker,
    }
    given = {name: value for name, value in ray_options.items() if value is not None}
    if engine not in ("local", "ray"):
        raise InputError(f"--engine: unknown engine '{engine}'; allowed: local, ray")
    if engine == "local" and given:
        option = "--" + next(iter(given)).replace("_", "-")
        raise InputError(f"{option} needs --engine ray")
    if engine == "ray" and device is not None:
        raise InputError("--device is for --engine local; Ray workers use --gpus-per-worker")

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
    if clip_frames is not None:
        from roadscene.data.clips import ClipSettings

        seen = card.clip.seen if card.clip is not None else "all"
        settings = settings.model_copy(update={"clip": ClipSettings(frames=clip_frames, seen=seen)})
    if engine == "ray":
        # Ray is imported only here: a local run never needs it.
        from roadscene.predict.distributed import RaySettings, predict_file_ray

        ray_settings = RaySettings.from_options(**given)
        summary = predict_file_ray(data, out, card, settings, ray_settings)
    else:
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
        typer.echo(f"skipped {len(summary.skipped_bad_images)} rows with bad images or clips:")
        for line, image, reason in summary.skipped_bad_images:
            typer.echo(f"  line {line}: {image}: {reason}")
