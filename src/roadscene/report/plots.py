"""PNG plots of a report (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from roadscene.metrics.truth import FIELD_REPORT_NAMES


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(confusion: dict[str, Any], title: str, path: Path) -> None:
    """Counts heat map: rows truth, columns prediction (`none` = no answer)."""
    plt = _pyplot()
    matrix, rows, columns = confusion["matrix"], confusion["labels"], confusion["columns"]
    fig, ax = plt.subplots(figsize=(1.2 * len(columns) + 1.5, 1.0 * len(rows) + 1.5))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("predicted")
    ax.set_ylabel("truth")
    ax.set_title(title)
    peak = max((max(r) for r in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(
                j,
                i,
                str(count),
                ha="center",
                va="center",
                color="white" if count > peak / 2 else "black",
            )
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_object_pr(per_class: dict[str, Any], title: str, path: Path) -> None:
    """Precision and recall bars per class with Wilson 95% error bars (strict blocks) or plain
    bars (compat blocks, which have no intervals)."""
    plt = _pyplot()
    classes = list(per_class)
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.38
    for offset, name in ((-width / 2, "precision"), (width / 2, "recall")):
        values = [per_class[c][name] or 0.0 for c in classes]
        errors = None
        if all(f"{name}_ci95" in per_class[c] for c in classes):
            intervals = [per_class[c][f"{name}_ci95"] for c in classes]
            errors = [
                [
                    max(0.0, v - ci[0]) if ci else 0.0
                    for v, ci in zip(values, intervals, strict=True)
                ],
                [
                    max(0.0, ci[1] - v) if ci else 0.0
                    for v, ci in zip(values, intervals, strict=True)
                ],
            ]
        ax.bar(
            [i + offset for i in range(len(classes))],
            values,
            width,
            yerr=errors,
            capsize=3,
            label=name,
        )
    ax.set_xticks(range(len(classes)), classes, rotation=20)
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_caption_scores(details: list[dict[str, Any]], path: Path, metric: str = "CIDEr") -> bool:
    """Histogram of a per-sample caption metric; False when the details lack it."""
    values = [row[metric] for row in details if row.get(metric) is not None]
    if not values:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(values, bins=30)
    ax.set_xlabel(f"per-sample {metric}")
    ax.set_ylabel("items")
    ax.set_title(f"{metric} per item (N = {len(values)})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_plots(report: dict[str, Any], details: list[dict[str, Any]], folder: Path) -> list[str]:
    """Every plot the report supports, written into `folder`; returns the file names."""
    names: list[str] = []
    if report.get("task") == "captions":
        if plot_caption_scores(details, folder / "cider_per_item.png"):
            names.append("cider_per_item.png")
        return names
    strict = report.get("strict")
    if strict:
        for name in FIELD_REPORT_NAMES.values():
            file = f"confusion_{name}.png"
            plot_confusion(strict["fields"][name]["confusion"], f"{name} (strict)", folder / file)
            names.append(file)
        for side, label in (("near", "Nearby"), ("far", "Far")):
            file = f"objects_{side}_precision_recall.png"
            plot_object_pr(
                strict["objects"][side]["per_class"],
                f"{label} objects, strict (Wilson 95%)",
                folder / file,
            )
            names.append(file)
    compat = report.get("compat")
    if compat:
        file = "objects_compat_precision_recall.png"
        plot_object_pr(
            compat["objects"], f"Objects, compat (section {compat['section']})", folder / file
        )
        names.append(file)
    return names
