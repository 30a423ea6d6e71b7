"""report.md: the evaluation report for people, built from the report JSON alone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from roadscene.metrics.truth import FIELD_REPORT_NAMES


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table: fixed digits; `—` for undefined."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_ci(block: dict[str, Any] | None, key: str = "rate", ci_key: str = "ci95") -> str:
    """`0.604 [0.550, 0.655]` from a rate block with a Wilson interval."""
    if not block:
        return "—"
    value = block.get(key)
    interval = block.get(ci_key)
    if value is None:
        return "—"
    if interval is None:
        return fmt(value)
    return f"{fmt(value)} [{fmt(interval[0])}, {fmt(interval[1])}]"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def _signature_lines(report: dict[str, Any]) -> list[str]:
    sig = report.get("signature", {})
    data = ", ".join(f"{k}={v}" for k, v in sig.get("data", {}).items() if v)
    settings = ", ".join(f"{k}={v}" for k, v in sig.get("settings", {}).items() if v is not None)
    versions = ", ".join(f"{k} {v}" for k, v in sig.get("metric_versions", {}).items() if v)
    return [
        f"- data: {data or '(in memory)'}",
        f"- settings: {settings}",
        f"- metrics: {versions}; roadscene {sig.get('roadscene')}; created {sig.get('created')}",
        "",
    ]


def _counts_lines(counts: dict[str, Any]) -> list[str]:
    shown = {k: v for k, v in counts.items() if not k.endswith("_examples")}
    lines = ["Counts: " + ", ".join(f"{k} {v}" for k, v in shown.items()), ""]
    for key in ("missing_examples", "unknown_image_examples", "duplicate_examples"):
        if counts.get(key):
            lines += [f"- {key.replace('_', ' ')}: {', '.join(counts[key])}"]
    return lines + ([""] if lines[-1] != "" else [])


def captions_markdown(report: dict[str, Any]) -> list[str]:
    metrics = report["metrics"]
    lines = [
        f"# Caption evaluation (compat), N = {report['n']}",
        "",
        *_signature_lines(report),
        *table(["metric", "value"], [[name, fmt(value, 4)] for name, value in metrics.items()]),
    ]
    if report.get("unavailable"):
        lines += ["Not computed:", ""]
        lines += [f"- {name}: {reason}" for name, reason in report["unavailable"].items()]
        lines += [""]
    return lines + _counts_lines(report.get("counts", {}))


def _strict_field_rows(strict: dict[str, Any]) -> list[list[str]]:
    baselines = strict.get("baselines", {}).get("fields", {})
    rows = []
    for name in FIELD_REPORT_NAMES.values():
        block, base = strict["fields"][name], baselines.get(name, {})
        rows.append(
            [
                name,
                fmt_ci(block["accuracy"]),
                fmt_ci(base.get("accuracy")) + (f" (`{base['label']}`)" if base else ""),
                fmt_ci(block["accuracy_known_truth"]),
                fmt_ci(base.get("accuracy_known_truth")),
                fmt(block["balanced_accuracy"]),
                fmt(base.get("balanced_accuracy")),
                fmt(block["macro_f1"]),
                fmt(base.get("macro_f1")),
            ]
        )
    return rows


def _object_row(name: str, block: dict[str, Any]) -> list[str]:
    return [
        name,
        str(block["support"]),
        str(block["tp"]),
        str(block["fp"]),
        str(block["fn"]),
        fmt_ci(block, "precision", "precision_ci95"),
        fmt_ci(block, "recall", "recall_ci95"),
        fmt(block["f1"]),
        fmt_ci(block["position_accuracy"]),
        fmt_ci(block["count_accuracy"]),
    ]


def _object_rows(side: dict[str, Any]) -> list[list[str]]:
    rows = [_object_row(cls, block) for cls, block in side["per_class"].items()]
    micro, macro = side["micro"], side["macro"]
    rows.append(_object_row("**micro**", micro))
    rows.append(
        [
            "**macro**",
            "",
            "",
            "",
            "",
            fmt(macro["precision"]),
            fmt(macro["recall"]),
            fmt(macro["f1"]),
            "",
            "",
        ]
    )
    return rows


def safety_markdown(report: dict[str, Any], plots: Sequence[str] = ()) -> list[str]:
    lines = [
        f"# Safety evaluation, split `{report['split']}`, N = {report['n']} "
        f"(missing predictions: {report['missing']})",
        "",
        *_signature_lines(report),
        *_counts_lines(report.get("counts", {})),
    ]
    strict = report.get("strict")
    if strict:
        lines += [
            "## Strict (the project's definition)",
            "",
            "Rates with Wilson 95% intervals. Missing or unparsed answers count as wrong. "
            "Baseline: always answer the train split's majority value.",
            "",
            *table(
                [
                    "field",
                    "accuracy",
                    "baseline",
                    "acc. w/o unknown truth",
                    "baseline",
                    "balanced acc.",
                    "baseline",
                    "macro-F1",
                    "baseline",
                ],
                _strict_field_rows(strict),
            ),
            f"Relation consistent with the answer's own sidewalk/road: "
            f"{fmt_ci(strict['consistency'])}. Complete answers (three fields and `Nearby:`): "
            f"{fmt_ci(strict['complete_answers'])}. Unparsed object phrases: "
            f"{strict['unparsed_phrases']}.",
            "",
        ]
        header = [
            "class",
            "support",
            "tp",
            "fp",
            "fn",
            "precision",
            "recall",
            "F1",
            "position acc. (of tp)",
            "count acc. (of tp)",
        ]
        for side, title in (("near", "Nearby objects"), ("far", "Far objects")):
            block = strict["objects"][side]
            lines += [
                f"### {title}",
                "",
                *table(header, _object_rows(block)),
                f"Images whose set of classes is exactly right: "
                f"{fmt_ci(block['class_set_exact'])}.",
                "",
            ]
        motion = strict.get("motion")
        if motion is not None and not motion["n"]:
            lines += [
                "### Motion of close objects (clips)",
                "",
                "No close person, bicycle or car was named by both truth and answer: no motion "
                "to score.",
                "",
            ]
        elif motion:  # clips: how the close people, bicycles and cars move
            per_label = motion["per_label"]
            lines += [
                "### Motion of close objects (clips)",
                "",
                f"Scored on the close people, bicycles and cars both truth and answer name "
                f"({motion['n']}; `static` when no motion word is given): accuracy "
                f"{fmt_ci(motion['accuracy'])}, balanced accuracy "
                f"{fmt(motion['balanced_accuracy'])}; always answering the most frequent motion "
                f"(`{motion['majority_label']}`) scores {fmt_ci(motion['majority_rate'])}.",
                "",
                *table(
                    ["motion", "support", "precision", "recall", "F1"],
                    [
                        [label, b["support"], fmt(b["precision"]), fmt(b["recall"]), fmt(b["f1"])]
                        for label, b in per_label.items()
                    ],
                ),
                "",
            ]
    compat = report.get("compat")
    if compat:
        lines += [
            f"## Compat (the published definition, objects from section `{compat['section']}`)",
            "",
            *table(
                ["field", "presence", "accuracy"],
                [
                    [
                        name,
                        f"{block['count']}/{block['total']} = {fmt(block['rate'])}",
                        f"{compat['accuracy'][name]['correct']}/{block['total']} = "
                        f"{fmt(compat['accuracy'][name]['rate'])}",
                    ]
                    for name, block in compat["presence"].items()
                ],
            ),
            *table(
                ["class", "truth present", "tp", "fn", "fp", "recall", "precision"],
                [
                    [
                        cls,
                        b["gt_present"],
                        b["tp"],
                        b["fn"],
                        b["fp"],
                        fmt(b["recall"], 2),
                        fmt(b["precision"], 2),
                    ]
                    for cls, b in compat["objects"].items()
                ],
            ),
        ]
    if plots:
        lines += ["## Plots", ""] + [f"![{name}]({name})" for name in plots] + [""]
    return lines


def report_markdown(report: dict[str, Any], plots: Sequence[str] = ()) -> str:
    """The whole report.md for a captions or safety report."""
    if report.get("task") == "captions":
        lines = captions_markdown(report)
        if plots:
            lines += ["## Plots", ""] + [f"![{name}]({name})" for name in plots] + [""]
    else:
        lines = safety_markdown(report, plots)
    return "\n".join(lines).rstrip() + "\n"
