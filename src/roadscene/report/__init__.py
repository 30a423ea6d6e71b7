"""Reports people read: report.md, PNG plots, and side-by-side comparisons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from roadscene.io import atomic_dir, dumps_line
from roadscene.metrics.results import EvaluationResult
from roadscene.report.compare import is_report_file
from roadscene.report.markdown import report_markdown
from roadscene.report.plots import write_plots

REPORT_FILE = "report.json"
DETAILS_FILE = "details.jsonl"
MARKDOWN_FILE = "report.md"


def is_report_dir(folder: Path) -> bool:
    """Whether `folder` is a report folder `write_report_dir` wrote (it may be replaced)."""
    return is_report_file(folder / REPORT_FILE)


def write_report_dir(
    result: EvaluationResult | dict[str, Any],
    out_dir: str | Path,
    details: list[dict[str, Any]] | None = None,
) -> Path:
    """Write report.json, details.jsonl, report.md and the PNG plots into `out_dir` atomically.

    `result` is an EvaluationResult, or a report dict (then `details` may be given). Everything
    is rebuilt from the report and details alone: no model is loaded.
    """
    if isinstance(result, EvaluationResult):
        report, details = result.report, result.details
    else:
        report, details = result, details or []
    with atomic_dir(out_dir, ours=is_report_dir, what="a report folder") as tmp:
        with open(tmp / REPORT_FILE, "w", encoding="utf-8") as handle:
            json.dump(report, handle, ensure_ascii=False, indent=2)
            handle.write("\n")
        with open(tmp / DETAILS_FILE, "w", encoding="utf-8") as handle:
            for row in details:
                handle.write(dumps_line(row) + "\n")
        plots = write_plots(report, details, tmp)
        (tmp / MARKDOWN_FILE).write_text(report_markdown(report, plots), encoding="utf-8")
    return Path(out_dir)


__all__ = ["is_report_dir", "is_report_file", "write_report_dir", "report_markdown", "write_plots"]
