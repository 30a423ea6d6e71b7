"""Side-by-side comparison of several report JSON files (captions or safety)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from roadscene.errors import InputError
from roadscene.io import read_json
from roadscene.metrics.truth import FIELD_REPORT_NAMES
from roadscene.report.markdown import fmt, table


def load_report(path: str | Path) -> dict[str, Any]:
    """A report JSON written by `roadscene evaluate`; anything else is an InputError."""
    report = read_json(path)
    if not isinstance(report, dict) or report.get("task") not in ("captions", "safety"):
        raise InputError("not a roadscene evaluation report (no task captions|safety)", path=path)
    if report["task"] == "captions" and not isinstance(report.get("metrics"), dict):
        raise InputError("caption report without a 'metrics' object", path=path)
    for section in ("strict", "compat"):
        if report.get(section) is not None and not isinstance(report[section], dict):
            raise InputError(f"safety report whose '{section}' is not an object", path=path)
    return report


def is_report_file(path: Path) -> bool:
    """Whether `path` is a report JSON `roadscene evaluate` wrote (it may be replaced)."""
    try:
        load_report(path)
    except InputError:
        return False
    return True


def _get(block: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(block, dict) or key not in block:
            return None
        block = block[key]
    return block


def headline_metrics(report: dict[str, Any]) -> list[tuple[str, Any]]:
    """The figures worth comparing, in display order, as (label, value)."""
    rows: list[tuple[str, Any]] = [("n", report.get("n"))]
    if report["task"] == "captions":
        rows += [(str(label), value) for label, value in report["metrics"].items()]
        return rows
    rows.append(("missing", report.get("missing")))
    strict = report.get("strict")
    if strict:
        for name in FIELD_REPORT_NAMES.values():
            block = _get(strict, "fields", name)
            block = block if isinstance(block, dict) else {}
            rows += [
                (f"strict {name} accuracy", _get(block, "accuracy", "rate")),
                (
                    f"strict {name} acc. w/o unknown truth",
                    _get(block, "accuracy_known_truth", "rate"),
                ),
                (f"strict {name} balanced acc.", block.get("balanced_accuracy")),
                (f"strict {name} macro-F1", block.get("macro_f1")),
            ]
        rows.append(("strict consistency", _get(strict, "consistency", "rate")))
        for side in ("near", "far"):
            rows += [
                (f"strict {side} micro-F1", _get(strict, "objects", side, "micro", "f1")),
                (f"strict {side} macro-F1", _get(strict, "objects", side, "macro", "f1")),
                (
                    f"strict {side} position acc.",
                    _get(strict, "objects", side, "micro", "position_accuracy", "rate"),
                ),
                (
                    f"strict {side} count acc.",
                    _get(strict, "objects", side, "micro", "count_accuracy", "rate"),
                ),
            ]
    compat = report.get("compat")
    if compat:
        for name in FIELD_REPORT_NAMES.values():
            rows.append((f"compat {name} accuracy", _get(compat, "accuracy", name, "rate")))
        objects = _get(compat, "objects")
        for cls, block in (objects if isinstance(objects, dict) else {}).items():
            rows.append(
                (
                    f"compat {cls} recall / precision",
                    f"{fmt(_get(block, 'recall'), 2)} / {fmt(_get(block, 'precision'), 2)}",
                )
            )
    return rows


# Figures where a larger value is not better: counts and lengths are context, not scores.
NOT_SCORES: frozenset[str] = frozenset(
    {"n", "missing", "avg_prediction_length", "avg_target_length"}
)


def best_columns(values: list[Any], label: str) -> set[int]:
    """Columns holding the best (highest) score of a row; none for non-scores or ties of all."""
    numbers = {i: v for i, v in enumerate(values) if isinstance(v, int | float)}
    if label in NOT_SCORES or len(numbers) < 2:
        return set()
    top = max(numbers.values())
    best = {i for i, v in numbers.items() if v == top}
    return best if len(best) < len(numbers) else set()


def comparison_table(
    reports: list[dict[str, Any]],
    names: list[str],
    *,
    mark_best: Callable[[str], str] = lambda cell: f"**{cell}**",
    escape: Callable[[str], str] = lambda cell: cell,
) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per figure, one column per report; `—` where a report lacks it.

    Every cell and name goes through `escape` (e.g. rich's markup escape: a report's text must
    not be read as markup), then the best score of each row through `mark_best` (every score
    here: higher is better).
    """
    columns = [dict(headline_metrics(r)) for r in reports]
    labels: list[str] = []
    for report in reports:
        labels += [label for label, _ in headline_metrics(report) if label not in labels]
    rows = []
    for label in labels:
        values = [col.get(label) for col in columns]
        best = best_columns(values, label)
        cells = [escape(fmt(v, 4)) for v in values]
        cells = [mark_best(cell) if i in best else cell for i, cell in enumerate(cells)]
        rows.append([escape(label), *cells])
    return ["metric", *map(escape, names)], rows


def is_comparison_markdown(path: Path) -> bool:
    """Whether `path` is a Markdown table `roadscene evaluate compare` wrote."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.readline().startswith("| metric |")
    except (OSError, UnicodeDecodeError):
        return False


def comparison_markdown(reports: list[dict[str, Any]], names: list[str]) -> str:
    header, rows = comparison_table(reports, names)
    return "\n".join(table(header, rows)).rstrip() + "\n"
