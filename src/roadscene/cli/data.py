"""`roadscene data ...`: annotation schema, validation and dataset building."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Annotation schema, validation and dataset building.", no_args_is_help=True)


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
