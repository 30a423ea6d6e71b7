"""Corpus statistics: rates with Wilson intervals, confusion matrices, balanced accuracy, F1.

Per-sample scoring lives in the metric modules; this module only aggregates.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

# Two-sided 95% normal quantile.
Z_95 = 1.959963984540054


def wilson_interval(successes: int, total: int, z: float = Z_95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion; None when there are no trials.

    Chosen over the normal approximation because it stays inside [0, 1] and behaves at small n
    and extreme rates (e.g. 9 cars in the test split).
    """
    if total <= 0:
        return None
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    # At p = 0 or 1 the bound equals p exactly; rounding must not push it past p.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == total else min(1.0, centre + half)
    return (low, high)


def safe_div(numerator: float, denominator: float) -> float:
    """numerator / denominator, 0.0 when the denominator is 0 (the published convention)."""
    return numerator / denominator if denominator else 0.0


def rate(successes: int, total: int) -> dict[str, Any]:
    """A proportion with its counts and Wilson 95% interval."""
    return {
        "correct": successes,
        "total": total,
        "rate": safe_div(successes, total),
        "ci95": wilson_interval(successes, total),
    }


def ratio(numerator: int, denominator: int) -> float | None:
    """numerator / denominator, None when undefined (strict metrics never invent a 0)."""
    return numerator / denominator if denominator else None


def prf(tp: int, fp: int, fn: int) -> dict[str, Any]:
    """Precision / recall / F1 with counts and Wilson intervals; None where undefined.

    F1 = 2TP / (2TP + FP + FN), which equals the harmonic mean where both are defined and is 0
    when a class is missed entirely.
    """
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "support": tp + fn,
        "precision": ratio(tp, tp + fp),
        "precision_ci95": wilson_interval(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "recall_ci95": wilson_interval(tp, tp + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
    }


def strict_rate(successes: int, total: int) -> dict[str, Any]:
    """Like :func:`rate` but None when there are no trials."""
    return {**rate(successes, total), "rate": ratio(successes, total)}


def mean_defined(values: Sequence[float | None]) -> float | None:
    """Mean of the defined values; None when none is defined."""
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


def confusion_matrix(
    truth: Sequence[str], predicted: Sequence[str | None], labels: Sequence[str]
) -> dict[str, Any]:
    """Rows = truth label, columns = predicted label plus `none` (no answer given)."""
    columns = [*labels, "none"]
    counts = Counter(zip(truth, (p if p is not None else "none" for p in predicted), strict=True))
    return {
        "labels": list(labels),
        "columns": columns,
        "matrix": [[counts[(t, p)] for p in columns] for t in labels],
    }


def classification_summary(
    truth: Sequence[str], predicted: Sequence[str | None], labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, accuracy without `unknown` truth, balanced accuracy, macro-F1, confusion.

    `None` predictions (missing or unparsed) are wrong for every definition. Labels seen in the
    data but not in `labels` are appended. Balanced accuracy is the mean recall over labels
    present in the truth; macro-F1 averages F1 over labels present in the truth or the
    predictions (sklearn's conventions).
    """
    pairs = list(zip(truth, predicted, strict=True))
    seen = [v for pair in pairs for v in pair if v is not None]
    labels = [*labels, *sorted(set(seen) - set(labels))]
    correct = sum(t == p for t, p in pairs)
    known = [(t, p) for t, p in pairs if t != "unknown"]
    per_label = {}
    for label in labels:
        tp = sum(t == label and p == label for t, p in pairs)
        fp = sum(t != label and p == label for t, p in pairs)
        fn = sum(t == label and p != label for t, p in pairs)
        per_label[label] = prf(tp, fp, fn)
    return {
        "n": len(pairs),
        "answered": sum(p is not None for _, p in pairs),
        "accuracy": strict_rate(correct, len(pairs)),
        "accuracy_known_truth": strict_rate(sum(t == p for t, p in known), len(known)),
        "balanced_accuracy": mean_defined([per_label[lab]["recall"] for lab in labels]),
        "macro_f1": mean_defined([per_label[lab]["f1"] for lab in labels]),
        "per_label": per_label,
        "confusion": confusion_matrix(truth, predicted, labels),
    }


def majority_label(values: Sequence[str]) -> str | None:
    """The most frequent value (ties broken by first occurrence); None for no values."""
    if not values:
        return None
    counts = Counter(values)
    best = max(counts.values())
    return next(v for v in values if counts[v] == best)
