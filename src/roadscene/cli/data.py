"""`roadscene data ...`: annotation schema, validation, dataset building and on-policy preference
pairs (`data pairs`, which runs a model: `roadscene.predict.pairs`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Annotation schema, validation, dataset building and on-policy preference pairs.",
    no_args_is_help=True,
)


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of the annotation form."""
    from roadscene.schema import form_json_schema

    typer.echo(json.dumps(form_json_schema(), indent=2))


@app.command("validate")
def validate(
    files: Annotated[
        list[Path], typer.Argument(help="Annotation JSON files and/or annotations CSV files.")
    ],
) -> None:
    """Check annotation JSON files / CSVs and list every bad row. Exit code 2 if any is bad."""
    from rich.console import Console

    from roadscene.schema import read_annotations_csv, validate_annotation_json

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    problems = 0
    for path in files:
        if path.suffix.lower() == ".csv":
            table = read_annotations_csv(path)
            for issue in table.issues:
                console.print(str(issue), markup=False)
            problems += len(table.issues)
            status = "ok" if not table.issues else f"{len(table.issues)} bad row(s)"
            console.print(f"{path}: {table.row_count} rows, {status}", markup=False)
        else:
            messages = validate_annotation_json(path)
            for message in messages:
                console.print(message, markup=False)
            problems += len(messages)
            if not messages:
                console.print(f"{path}: ok", markup=False)
    if problems:
        raise typer.Exit(code=2)


@app.command("build")
def build(
    captions: Annotated[Path, typer.Option(help="captions.csv: image_path,target,split")],
    annotations: Annotated[Path, typer.Option(help="annotations.csv: the annotation form")],
    out: Annotated[Path, typer.Option(help="Output folder for the JSONL/JSON files.")],
    strict: Annotated[
        bool, typer.Option(help="Stop (exit 2) on any row-level defect instead of warning.")
    ] = False,
) -> None:
    """Build bvpi_sft/bvpi_dpo JSONL, caption JSON and build_report.json from the two CSVs."""
    from rich.console import Console
    from rich.table import Table

    from roadscene.data.build import build_datasets

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    result = build_datasets(captions, annotations, out, strict=strict)
    for issue in result.issues:
        err.print(f"warning: {issue}", markup=False)
    report = result.report
    table = Table(title=f"Datasets written to {out}")
    table.add_column("file")
    table.add_column("rows", justify="right")
    for split, count in report["sft"].items():
        table.add_row(f"bvpi_sft_{split}.jsonl", str(count))
    for split, count in report["dpo"].items():
        table.add_row(f"bvpi_dpo_{split}.jsonl", str(count))
    Console().print(table)
    err.print(
        f"{len(report['annotations_without_caption'])} annotation row(s) without caption, "
        f"{len(report['captions_without_annotation'])} caption(s) without annotation, "
        f"{len(result.issues)} row issue(s); details in {out / 'build_report.json'}",
        markup=False,
    )


@app.command("pairs")
def pairs(
    model: Annotated[
        str, typer.Option(help="The SFT model: a training output folder, saved model or hub id.")
    ],
    data: Annotated[Path, typer.Option(help="bvpi_sft_*.jsonl: images, prompts and true answers.")],
    out: Annotated[
        Path,
        typer.Option(help="Pair file to write (JSONL); its .samples.jsonl lets a rerun continue."),
    ],
    image_root: Annotated[
        Path | None, typer.Option(help="Folder image paths are relative to (default: data's).")
    ] = None,
    adapter: Annotated[Path | None, typer.Option(help="PEFT adapter folder.")] = None,
    family: Annotated[str | None, typer.Option(help="Model family (default: detected).")] = None,
    samples: Annotated[int, typer.Option(help="Answers sampled per image.")] = 4,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 1.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass (1: off).")] = 1.0,
    batch_size: Annotated[int, typer.Option(help="Images per generate call.")] = 8,
    max_new_tokens: Annotated[int, typer.Option(help="Answer length cap in tokens.")] = 192,
    pairs_per_image: Annotated[int, typer.Option(help="At most this many pairs per image.")] = 2,
    structured: Annotated[
        bool, typer.Option("--structured/--no-structured", help="Sample within the grammar.")
    ] = True,
    seed: Annotated[int, typer.Option(help="Seed of the sampling.")] = 0,
    limit: Annotated[int | None, typer.Option(help="Only the first N rows.")] = None,
    on_bad_image: Annotated[
        str, typer.Option(help="error: stop naming the image; skip: skip and count.")
    ] = "error",
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 (default: auto).")] = None,
) -> None:
    """Preference pairs from the model's own mistakes: sample answers per image, score each with
    the strict parser against the row's answer; a wrong one (sidewalk, road, relation, a close
    object missed, invented or on the wrong side) is rejected, the true answer chosen."""
    from rich.console import Console
    from rich.table import Table

    from roadscene.predict import ModelCard
    from roadscene.predict.pairs import MISTAKES, PairSettings, build_pairs, report_file

    settings = PairSettings.from_options(
        image_root=image_root,
        samples=samples,
        temperature=temperature,
        top_p=top_p,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        pairs_per_image=pairs_per_image,
        structured=structured,
        seed=seed,
        limit=limit,
        on_bad_image=on_bad_image,
    )
    summary = build_pairs(
        data, out, ModelCard.read(model, adapter, family), settings, device=device
    )
    report = summary.report
    table = Table(title=f"{report['pairs']} pairs from {report['rows']} images")
    table.add_column("mistake in the rejected answer")
    table.add_column("pairs", justify="right")
    for kind in MISTAKES:
        table.add_row(kind.replace("_", " "), str(report["pairs_by_mistake"][kind]))
    Console().print(table)
    drawn = report["samples"]
    typer.echo(
        f"{drawn['drawn']} answers sampled: {drawn.get('correct', 0)} right on every field and "
        f"close object, {drawn.get('wrong_paired', 0)} paired, "
        f"{drawn.get('wrong_not_paired', 0)} wrong but repeated or past --pairs-per-image; "
        f"{report['rows_with_pairs']} images gave pairs. Pairs: {out}; report: {report_file(out)}"
    )
    if report["skipped_bad_images"]:
        typer.echo(f"skipped {len(report['skipped_bad_images'])} rows with bad images")
