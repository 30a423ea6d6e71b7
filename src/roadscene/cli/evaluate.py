"""`roadscene evaluate captions|safety|compare`: parse options, call one library function."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from roadscene.metrics.results import EvaluationResult

app = typer.Typer(
    help="Evaluate predictions: caption metrics, safety fields and objects, comparisons.",
    no_args_is_help=True,
)


class DuplicateOption(StrEnum):
    error = "error"
    first = "first"
    last = "last"


class CleanOption(StrEnum):
    auto = "auto"
    none = "none"


class ModeOption(StrEnum):
    compat = "compat"
    strict = "strict"
    both = "both"


class SectionOption(StrEnum):
    all = "all"
    nearby = "nearby"


PredictionsOpt = Annotated[
    Path,
    typer.Option(
        "--predictions",
        "-p",
        help="Prediction file: JSON array or JSONL with "
        "image|image_path and text|response|prediction.",
    ),
]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Write the report JSON here.")]
ReportDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--report-dir",
        help="Write report.json, details.jsonl, report.md and PNG plots into this folder.",
    ),
]
CleanOpt = Annotated[
    CleanOption,
    typer.Option(
        "--clean",
        help="auto: score only the text after the last 'Assistant:' of a chat transcript; "
        "none: score texts as they are.",
    ),
]
DuplicateOpt = Annotated[
    DuplicateOption,
    typer.Option(
        "--on-duplicate", help="Two predictions for one image: error, or keep the first / last."
    ),
]


def _emit(result: EvaluationResult, out: Path | None, report_dir: Path | None, title: str) -> None:
    """Print the headline figures, then write the requested files (each atomically)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from roadscene.io import write_json
    from roadscene.report import is_report_file, write_report_dir
    from roadscene.report.compare import headline_metrics
    from roadscene.report.markdown import fmt

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for label, value in headline_metrics(result.report):
        table.add_row(label, fmt(value, 4))
    console = Console()
    console.print(table)
    for name, reason in result.report.get("unavailable", {}).items():
        console.print(f"[yellow]{escape(name)} not computed:[/yellow] {escape(str(reason))}")
    if out is not None:
        write_json(out, result.report, ours=is_report_file, what=REPORT_WHAT)
        console.print(f"report: {out}")
    if report_dir is not None:
        write_report_dir(result, report_dir)
        console.print(f"report folder: {report_dir}")


REPORT_WHAT = "a report JSON file"


def _check_outputs(out: Path | None, report_dir: Path | None) -> None:
    """Before any scoring: the report file and folder can be written and replace nothing that
    `roadscene evaluate` did not write."""
    from roadscene.io import check_output
    from roadscene.report import is_report_dir, is_report_file

    if out is not None:
        check_output(out, ours=is_report_file, what=REPORT_WHAT)
    if report_dir is not None:
        check_output(report_dir, folder=True, ours=is_report_dir, what="a report folder")


@app.command("captions")
def captions(
    predictions: PredictionsOpt,
    references: Annotated[
        Path | None,
        typer.Option(
            "--references",
            help="Reference captions: captions_{split}.json / JSONL "
            "(image, caption) or captions.csv. Default: each prediction's `target`.",
        ),
    ] = None,
    split: Annotated[
        str | None, typer.Option("--split", help="Split to keep from a references CSV.")
    ] = None,
    image_root: Annotated[
        Path | None,
        typer.Option(
            "--image-root", help="Folder the image paths are relative to (needed for CLIPScore)."
        ),
    ] = None,
    clip_model: Annotated[
        str | None, typer.Option("--clip-model", help="CLIP model folder or hub id for CLIPScore.")
    ] = None,
    clean: CleanOpt = CleanOption.auto,
    spice_jars: Annotated[
        Path | None,
        typer.Option(
            "--spice-jars",
            help="Folder with stanford-corenlp-3.6.0.jar and "
            "-models.jar for SPICE (default: $ROADSCENE_SPICE_JARS, else pycocoevalcap's "
            "spice/lib; never downloaded).",
        ),
    ] = None,
    on_duplicate: DuplicateOpt = DuplicateOption.error,
    out: OutOpt = None,
    report_dir: ReportDirOpt = None,
) -> None:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr, SPICE (pycocoevalcap) and CLIPScore (torchmetrics)."""
    from rich.console import Console

    from roadscene.metrics.captions import evaluate_captions

    _check_outputs(out, report_dir)
    status = "caption metrics: PTB tokenizer, METEOR and SPICE run in Java (METEOR's start takes 15-30 s)"
    with Console(stderr=True).status(status):
        result = evaluate_captions(
            predictions,
            references,
            split=split,
            image_root=image_root,
            clip_model=clip_model,
            clean=clean.value,
            spice_jars=spice_jars,
            on_duplicate=on_duplicate.value,
        )
    _emit(result, out, report_dir, f"Caption metrics (compat), N = {result.report['n']}")


@app.command("safety")
def safety(
    predictions: PredictionsOpt,
    captions_csv: Annotated[
        Path, typer.Option("--captions", help="captions.csv: decides the split's images.")
    ],
    annotations_csv: Annotated[
        Path, typer.Option("--annotations", help="annotations.csv: the truth.")
    ],
    split: Annotated[str, typer.Option("--split", help="train, val or test.")] = "test",
    mode: Annotated[
        ModeOption,
        typer.Option(
            "--mode", help="compat: the published definition; strict: the project's; both."
        ),
    ] = ModeOption.both,
    section: Annotated[
        SectionOption,
        typer.Option(
            "--section",
            help="Compat object matching on the whole text "
            "(all) or its Nearby: part (the published object table).",
        ),
    ] = SectionOption.all,
    on_duplicate: DuplicateOpt = DuplicateOption.error,
    clean: CleanOpt = CleanOption.auto,
    out: OutOpt = None,
    report_dir: ReportDirOpt = None,
) -> None:
    """Sidewalk / road / relation fields and object mentions, compat and strict."""
    from roadscene.metrics.safety import evaluate_safety

    _check_outputs(out, report_dir)
    result = evaluate_safety(
        predictions,
        captions_csv=captions_csv,
        annotations_csv=annotations_csv,
        split=split,
        mode=mode.value,
        section=section.value,
        on_duplicate=on_duplicate.value,
        clean=clean.value,
    )
    _emit(result, out, report_dir, f"Safety metrics, split {split}, N = {result.report['n']}")


@app.command("conditions")
def conditions(
    predictions: Annotated[
        list[str],
        typer.Option(
            "--predictions",
            "-p",
            help="CONDITION=FILE, once per condition (the same test scenes under each, e.g. "
            "from `data synth --conditions`).",
        ),
    ],
    captions_csv: Annotated[
        Path, typer.Option("--captions", help="captions.csv: decides the split's images.")
    ],
    annotations_csv: Annotated[
        Path, typer.Option("--annotations", help="annotations.csv: the truth.")
    ],
    split: Annotated[str, typer.Option("--split", help="train, val or test.")] = "test",
    on_duplicate: DuplicateOpt = DuplicateOption.error,
    clean: CleanOpt = CleanOption.auto,
    report_dir: ReportDirOpt = None,
) -> None:
    """Safety metrics per test condition: every figure, one column per condition."""
    from rich.console import Console
    from rich.table import Table

    from roadscene.metrics.conditions import evaluate_conditions, parse_condition_files
    from roadscene.report.compare import comparison_table

    results = evaluate_conditions(
        parse_condition_files(predictions),
        captions_csv,
        annotations_csv,
        split=split,
        on_duplicate=on_duplicate.value,
        clean=clean.value,
    )
    header, rows = comparison_table(
        [r.report for r in results.values()], list(results), mark_best=lambda c: f"[bold]{c}[/]"
    )
    table = Table(title=f"Safety metrics per condition, split {split}")
    for index, name in enumerate(header):
        table.add_column(name, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    if report_dir is not None:
        from roadscene.report.conditions import write_condition_reports

        Console().print(f"report: {write_condition_reports(results, report_dir)}")


@app.command("compare")
def compare(
    reports: Annotated[list[Path], typer.Argument(help="Report JSON files to put side by side.")],
    names: Annotated[
        str | None,
        typer.Option("--names", help="Column names, comma-separated (default: the file names)."),
    ] = None,
    markdown: Annotated[
        Path | None, typer.Option("--markdown", help="Also write the table as Markdown here.")
    ] = None,
) -> None:
    """One side-by-side table of several evaluation reports."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from roadscene.errors import InputError
    from roadscene.io import atomic_write, check_output
    from roadscene.report.compare import (
        comparison_markdown,
        comparison_table,
        is_comparison_markdown,
        load_report,
    )

    markdown_what = "a comparison table (Markdown)"
    if markdown is not None:
        check_output(markdown, ours=is_comparison_markdown, what=markdown_what)
    loaded = [load_report(path) for path in reports]
    columns = names.split(",") if names else [path.name for path in reports]
    if len(columns) != len(loaded):
        raise InputError(
            f"--names gives {len(columns)} names for {len(loaded)} reports", field="names"
        )
    header, rows = comparison_table(
        loaded, columns, mark_best=lambda cell: f"[bold]{cell}[/]", escape=escape
    )
    table = Table()
    for index, name in enumerate(header):
        table.add_column(name, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    if markdown is not None:
        with atomic_write(markdown, ours=is_comparison_markdown, what=markdown_what) as handle:
            handle.write(comparison_markdown(loaded, columns))
