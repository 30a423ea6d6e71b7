"""The per-condition report: every condition's report folder and one table of every headline
figure, one column per condition."""

from __future__ import annotations

from pathlib import Path

from roadscene.io import atomic_write, write_json
from roadscene.metrics.results import EvaluationResult
from roadscene.report import write_report_dir
from roadscene.report.compare import comparison_markdown


def write_condition_reports(results: dict[str, EvaluationResult], out_dir: str | Path) -> Path:
    """`out_dir/{condition}/` (report.json, report.md, plots) for each condition, then
    `conditions.md` and `conditions.json` side by side; returns the Markdown table's path."""
    out_dir = Path(out_dir)
    for name, result in results.items():
        write_report_dir(result, out_dir / name)
    names = list(results)
    reports = [results[name].report for name in names]
    table = out_dir / "conditions.md"
    with atomic_write(table) as handle:
        handle.write(f"# Safety metrics per test condition ({', '.join(names)})\n\n")
        handle.write(comparison_markdown(reports, names))
    write_json(out_dir / "conditions.json", dict(zip(names, reports, strict=True)))
    return table
