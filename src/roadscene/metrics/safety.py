"""Safety evaluation: structured fields and objects, compat and/or strict, in one report."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from roadscene.errors import InputError
from roadscene.metrics.records import (
    CleanMode,
    DuplicatePolicy,
    PredictionRecord,
    as_records,
    check_choice,
    clean_text,
    join_predictions,
)
from roadscene.metrics.results import EvaluationResult, signature
from roadscene.metrics.safety_compat import (
    SECTIONS,
    Section,
    aggregate_compat,
    score_compat_sample,
)
from roadscene.metrics.safety_strict import aggregate_strict, score_strict_sample
from roadscene.metrics.truth import SplitTruth, load_split_truth, truth_from_scenes
from roadscene.schema import SceneAnnotation

Mode = Literal["compat", "strict", "both"]
MODES: tuple[str, ...] = ("compat", "strict", "both")
COMPAT_VERSION = "docs/evaluation.md compat (published regex fields, substring keywords)"
STRICT_VERSION = "docs/evaluation.md strict (roadscene.targets.parse_response, Wilson 95%)"


def evaluate_safety(
    predictions: str | Path | Iterable[PredictionRecord | Mapping[str, Any] | tuple[str, str]],
    truth: SplitTruth | Mapping[str, SceneAnnotation] | None = None,
    *,
    captions_csv: str | Path | None = None,
    annotations_csv: str | Path | None = None,
    split: str = "test",
    mode: Mode = "both",
    section: Section = "all",
    on_duplicate: DuplicatePolicy = "error",
    clean: CleanMode = "auto",
    baseline_scenes: Iterable[SceneAnnotation] | None = None,
) -> EvaluationResult:
    """Score structured answers against annotated scenes.

    Truth is either given (`SplitTruth`, or a mapping image -> SceneAnnotation, e.g. synthetic
    scenes) or read from `captions_csv` + `annotations_csv` for `split`; then the majority
    baseline comes from the train split unless `baseline_scenes` are given. `section` applies to
    compat object matching only (strict always reads `Nearby:` and `Far:` separately).
    `clean="auto"` scores only what follows a chat transcript's last `Assistant:` (texts without
    the marker are unchanged, so the published figures are unaffected).
    """
    check_choice("mode", mode, MODES)
    check_choice("section", section, SECTIONS)
    records, source = as_records(predictions)
    if truth is None:
        if captions_csv is None or annotations_csv is None:
            raise InputError("give the truth scenes, or both --captions and --annotations")
        split_truth = load_split_truth(captions_csv, annotations_csv, split)
        if baseline_scenes is None and split != "train":
            baseline_scenes = load_split_truth(
                captions_csv, annotations_csv, "train"
            ).scenes.values()
    elif isinstance(truth, SplitTruth):
        split_truth = truth
    else:
        split_truth = truth_from_scenes(truth)
    joined = join_predictions(
        records, split_truth.scenes.keys(), on_duplicate=on_duplicate, source=source
    )
    details: list[dict[str, Any]] = []
    compat_samples, strict_samples = [], []
    for key, scene in split_truth.scenes.items():
        record = joined.by_key.get(key)
        text = clean_text(record.text, clean) if record is not None else ""
        row: dict[str, Any] = {
            "image": record.image if record is not None else key,
            "line": record.line if record is not None else None,
            "missing": record is None,
            "text": text,
        }
        if mode in ("compat", "both"):
            sample = score_compat_sample(text, scene, section)
            compat_samples.append(sample)
            row["compat"] = sample
        if mode in ("strict", "both"):
            sample = score_strict_sample(text, scene)
            strict_samples.append(sample)
            row["strict"] = sample
        details.append(row)
    report: dict[str, Any] = {
        "task": "safety",
        "split": split_truth.split,
        "n": len(split_truth.scenes),
        "missing": len(joined.missing),
        "counts": {**joined.counts(), **split_truth.counts()},
    }
    if compat_samples:
        report["compat"] = {"section": section, **aggregate_compat(compat_samples)}
    if strict_samples:
        baseline = list(baseline_scenes) if baseline_scenes is not None else None
        report["strict"] = aggregate_strict(strict_samples, baseline)
    report["signature"] = signature(
        metrics={"compat": COMPAT_VERSION, "strict": STRICT_VERSION},
        settings={
            "mode": mode,
            "section": section,
            "on_duplicate": on_duplicate,
            "split": split_truth.split,
        },
        data={"predictions": source, **split_truth.sources},
    )
    return EvaluationResult(report=report, details=details)
