"""Safety evaluation per test condition: one prediction file per condition (the same test
scenes rendered clean, in rain, fog, ...), scored against the same truth, every figure
reported for each condition (`roadscene evaluate conditions`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from roadscene.errors import InputError
from roadscene.metrics.results import EvaluationResult
from roadscene.metrics.safety import evaluate_safety
from roadscene.metrics.truth import load_split_truth


def parse_condition_files(items: list[str]) -> dict[str, Path]:
    """`NAME=FILE` items -> {name: file}; a bad item or a repeated name is an InputError."""
    files: dict[str, Path] = {}
    for item in items:
        name, sep, file = item.partition("=")
        if not sep or not name.strip() or not file.strip():
            raise InputError(f"expected CONDITION=FILE, got '{item}'", field="predictions")
        if name in files:
            raise InputError(f"condition '{name}' given twice", field="predictions")
        files[name.strip()] = Path(file.strip())
    if not files:
        raise InputError("give at least one CONDITION=FILE", field="predictions")
    return files


def evaluate_conditions(
    predictions: Mapping[str, str | Path],
    captions_csv: str | Path,
    annotations_csv: str | Path,
    *,
    split: str = "test",
    **options: Any,
) -> dict[str, EvaluationResult]:
    """`evaluate_safety` of each condition's predictions against the split's truth (read once;
    the majority baseline from the train split)."""
    for name, file in predictions.items():
        if not Path(file).is_file():
            raise InputError(f"prediction file of condition '{name}' not found", path=file)
    truth = load_split_truth(captions_csv, annotations_csv, split)
    baseline = load_split_truth(captions_csv, annotations_csv, "train").scenes.values()
    return {
        name: evaluate_safety(file, truth, baseline_scenes=list(baseline), **options)
        for name, file in predictions.items()
    }
