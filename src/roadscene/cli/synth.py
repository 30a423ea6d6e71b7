"""`roadscene data synth`: render a synthetic street-scene dataset (registered under `data`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def synth(
    out: Annotated[
        Path, typer.Option(help="Output folder (images/, CSVs, SFT/DPO/caption files).")
    ],
    n: Annotated[int, typer.Option(min=1, help="Number of images (all splits together).")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed: the same seed writes the same files.")] = 0,
    like: Annotated[
        Path | None,
        typer.Option(
            help="annotations.csv whose distribution to sample from (default: built-in, fitted "
            "to SENSATION)."
        ),
    ] = None,
    size: Annotated[int, typer.Option(min=32, max=1024, help="Image side in pixels.")] = 96,
    weather: Annotated[
        bool, typer.Option(help="Random lighting and weather (brightness, tint, fog, noise).")
    ] = True,
    val_fraction: Annotated[float, typer.Option(help="Share of images in the val split.")] = 0.1,
    test_fraction: Annotated[float, typer.Option(help="Share of images in the test split.")] = 0.1,
    object_rate: Annotated[
        float | None,
        typer.Option(
            help="Oversample near objects: share of images with at least one (default: as the "
            "distribution has it, about 0.44)."
        ),
    ] = None,
    context: Annotated[
        bool, typer.Option(help="End each response with `Context:` and the templated caption.")
    ] = True,
    conditions: Annotated[
        str,
        typer.Option(
            help="Also render the test scenes under these conditions, comma-separated, from "
            "clean, rain, fog, night, glare, blur: conditions/NAME/ images and "
            "bvpi_sft_test_NAME.jsonl per condition.",
        ),
    ] = "",
    clips: Annotated[
        bool,
        typer.Option(
            help="Write short clips (clips/clip_NNNNNN.webm: walking forward, close people, "
            "bicycles and cars approaching, moving away, crossing or standing still) instead "
            "of images; answers name the motions."
        ),
    ] = False,
    clip_frames: Annotated[int, typer.Option(min=2, max=120, help="Frames per clip.")] = 16,
    fps: Annotated[int, typer.Option(min=1, max=60, help="Clip frame rate.")] = 8,
    moving_rate: Annotated[
        float | None,
        typer.Option(
            help="Share of scenes with at least one close person, bicycle or car (default: as "
            "the distribution has it, about 0.17)."
        ),
    ] = None,
) -> None:
    """Render synthetic street scenes (or clips) with annotations and the files `data build`
    writes."""
    from rich.console import Console
    from rich.progress import Progress

    from roadscene.data.synth import (
        ClipOptions,
        RenderOptions,
        SceneDistribution,
        write_synth_dataset,
    )
    from roadscene.errors import InputError
    from roadscene.schema import MOVING_CLASSES

    if like is not None:
        distribution = SceneDistribution.from_annotations(like)
        source = f"fitted to {like}"
    else:
        distribution = SceneDistribution.builtin()
        source = "built-in SENSATION-like distribution"
    if object_rate is not None:
        try:
            distribution = distribution.with_object_rate(object_rate)
        except ValueError as err:
            raise InputError(str(err), field="object_rate") from None
        source += f", object rate {object_rate}"
    if moving_rate is not None:
        try:
            distribution = distribution.with_object_rate(moving_rate, MOVING_CLASSES)
        except ValueError as err:
            raise InputError(
                str(err).replace("object rate", "moving rate"), field="moving_rate"
            ) from None
        source += f", moving rate {moving_rate}"
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("rendering", total=n)
        result = write_synth_dataset(
            out,
            n,
            seed=seed,
            distribution=distribution,
            options=RenderOptions(size=size, weather=weather),
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            context=context,
            source=source,
            progress=lambda k: progress.advance(task, k),
            conditions=[c.strip() for c in conditions.split(",") if c.strip()],
            clips=ClipOptions(frames=clip_frames, fps=fps) if clips else None,
        )
    counts = ", ".join(f"{split} {count}" for split, count in result.counts.items())
    what = f"clips of {clip_frames} frames at {fps} fps" if clips else "scenes"
    Console(highlight=False).print(f"wrote {n} synthetic {what} to {out} ({counts}); {source}")
    if result.report["conditions"]:
        files = ", ".join(result.report["conditions"].values())
        Console(highlight=False).print(f"test scenes under each condition: {files}")
