"""The project's own ("strict") structured-field and object metrics (docs/evaluation.md).

Predictions are parsed with the grammar that renders the targets (`roadscene.targets`), so
objects are read per section (`Nearby:` vs `Far:`), as whole words, with counts and positions.
Per-sample scoring (:func:`score_strict_sample`) is separate from corpus aggregation
(:func:`aggregate_strict`). Missing predictions are scored as empty texts: wrong everywhere.

Motion (clips): where the truth says how close objects move (`SceneAnnotation.motion` is not
None), every close person, bicycle or car that the answer also names close is scored on its
motion word (`static`: standing still, or none named); `motion` then appears in the report beside
the accuracy of always answering the most frequent motion (the majority-class rate). Still-image
truth has no motion, and the report is then what it always was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from roadscene.metrics.stats import (
    classification_summary,
    majority_label,
    mean_defined,
    prf,
    strict_rate,
)
from roadscene.metrics.truth import FIELD_REPORT_NAMES, FIELDS
from roadscene.schema import (
    MOTION_WORDS,
    MOVING_CLASSES,
    OBJECT_CLASSES,
    RELATION_VALUES,
    ROAD_VALUES,
    SIDEWALK_VALUES,
    SceneAnnotation,
    motion_label,
    road_vs_sidewalk,
)
from roadscene.targets import ObjectMention, parse_response

FIELD_LABELS: dict[str, tuple[str, ...]] = {
    "sidewalk": SIDEWALK_VALUES,
    "road": ROAD_VALUES,
    "relation": RELATION_VALUES,
}
SIDES: tuple[str, ...] = ("near", "far")


MOTION_LABELS: tuple[str, ...] = MOTION_WORDS


def _object_outcome(
    truth_positions: list[str], mention: ObjectMention | None, motion: str | None = None
) -> dict[str, Any]:
    """One class on one side of one image: presence, and position/count agreement when both
    truth and prediction have it (a true positive); with the truth's `motion` (a clip's close
    moving class), the motion the answer gives it."""
    present, predicted = bool(truth_positions), mention is not None
    outcome: dict[str, Any] = {"present": present, "predicted": predicted}
    if present and predicted:
        outcome["position_correct"] = set(mention.positions) == set(truth_positions)
        outcome["count_correct"] = mention.count == len(truth_positions)
        if motion is not None:
            outcome["motion"] = motion
            outcome["motion_predicted"] = motion_label(mention.motion)
    return outcome


def score_strict_sample(text: str, truth: SceneAnnotation) -> dict[str, Any]:
    """Per-sample strict scoring of one prediction text against its truth scene."""
    parsed = parse_response(text)
    fields = {name: getattr(parsed, name) for name in FIELDS}
    consistent = (
        None not in fields.values()
        and road_vs_sidewalk(fields["sidewalk"], fields["road"]) == fields["relation"]
    )
    objects = {
        side: {
            cls: _object_outcome(
                getattr(truth, side).get(cls, []),
                getattr(parsed, side).get(cls),
                truth.moving(cls)
                if side == "near" and truth.motion is not None and cls in MOVING_CLASSES
                else None,
            )
            for cls in OBJECT_CLASSES
        }
        for side in SIDES
    }
    sample = {
        "fields": fields,
        "truth": {name: getattr(truth, name) for name in FIELDS},
        "consistent": consistent,
        "objects": objects,
        "complete": parsed.complete,
        "unparsed": list(parsed.unparsed),
    }
    if truth.motion is not None:  # a clip: its motions are scored (still images: unchanged)
        sample["clip"] = True
    return sample


def _aggregate_side(samples: Sequence[Mapping[str, Any]], side: str) -> dict[str, Any]:
    per_class: dict[str, Any] = {}
    totals = {"tp": 0, "fp": 0, "fn": 0, "position": 0, "count": 0}
    set_exact = 0
    for cls in OBJECT_CLASSES:
        outcomes = [s["objects"][side][cls] for s in samples]
        tp = sum(o["present"] and o["predicted"] for o in outcomes)
        fp = sum(o["predicted"] and not o["present"] for o in outcomes)
        fn = sum(o["present"] and not o["predicted"] for o in outcomes)
        position = sum(bool(o.get("position_correct")) for o in outcomes)
        count = sum(bool(o.get("count_correct")) for o in outcomes)
        per_class[cls] = {
            **prf(tp, fp, fn),
            "position_accuracy": strict_rate(position, tp),
            "count_accuracy": strict_rate(count, tp),
        }
        for key, value in (
            ("tp", tp),
            ("fp", fp),
            ("fn", fn),
            ("position", position),
            ("count", count),
        ):
            totals[key] += value
    for sample in samples:
        outcomes = sample["objects"][side].values()
        set_exact += all(o["present"] == o["predicted"] for o in outcomes)
    # Macro over classes where the figure is defined (a class absent from truth and
    # predictions says nothing about the model).
    macro = {
        name: mean_defined([per_class[c][name] for c in OBJECT_CLASSES])
        for name in ("precision", "recall", "f1")
    }
    return {
        "per_class": per_class,
        "micro": {
            **prf(totals["tp"], totals["fp"], totals["fn"]),
            "position_accuracy": strict_rate(totals["position"], totals["tp"]),
            "count_accuracy": strict_rate(totals["count"], totals["tp"]),
        },
        "macro": macro,
        "class_set_exact": strict_rate(set_exact, len(samples)),
    }


def aggregate_motion(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Motion of the close moving objects both truth and answer name: accuracy, per-motion
    figures and confusion, and the majority-class rate (always answering the most frequent
    true motion); None when no truth says how anything moves (no clip)."""
    if not any(s.get("clip") for s in samples):
        return None
    pairs = [
        (o["motion"], o["motion_predicted"])
        for s in samples
        for o in s["objects"]["near"].values()
        if "motion" in o
    ]
    truth = [t for t, _ in pairs]
    summary = classification_summary(truth, [p for _, p in pairs], MOTION_LABELS)
    label = majority_label(truth)
    majority = sum(t == label for t in truth)
    return {
        "scored": "close person / bicycle / car named by both truth and answer",
        **summary,
        "majority_label": label,
        "majority_rate": strict_rate(majority, len(truth)),
    }


def field_baselines(
    scenes: Sequence[SceneAnnotation], truth_values: Mapping[str, Sequence[str]]
) -> dict[str, Any]:
    """Majority-class baseline per field: the most frequent value in `scenes` (the train
    split) answered for every evaluated row, scored like a model."""
    out = {}
    for name in FIELDS:
        label = majority_label([getattr(s, name) for s in scenes])
        truth = list(truth_values[name])
        summary = classification_summary(truth, [label] * len(truth), FIELD_LABELS[name])
        out[FIELD_REPORT_NAMES[name]] = {
            "label": label,
            "accuracy": summary["accuracy"],
            "accuracy_known_truth": summary["accuracy_known_truth"],
            "balanced_accuracy": summary["balanced_accuracy"],
            "macro_f1": summary["macro_f1"],
        }
    return out


def aggregate_strict(
    samples: Sequence[Mapping[str, Any]],
    baseline_scenes: Sequence[SceneAnnotation] | None = None,
) -> dict[str, Any]:
    """Corpus strict figures from per-sample results; baselines from `baseline_scenes`."""
    truth_values = {name: [s["truth"][name] for s in samples] for name in FIELDS}
    fields = {}
    for name in FIELDS:
        summary = classification_summary(
            truth_values[name], [s["fields"][name] for s in samples], FIELD_LABELS[name]
        )
        fields[FIELD_REPORT_NAMES[name]] = summary
    consistent = sum(bool(s["consistent"]) for s in samples)
    result: dict[str, Any] = {
        "n": len(samples),
        "complete_answers": strict_rate(sum(bool(s["complete"]) for s in samples), len(samples)),
        "unparsed_phrases": sum(len(s["unparsed"]) for s in samples),
        "fields": fields,
        "consistency": strict_rate(consistent, len(samples)),
        "objects": {side: _aggregate_side(samples, side) for side in SIDES},
    }
    motion = aggregate_motion(samples)
    if motion is not None:
        result["motion"] = motion
    if baseline_scenes:
        result["baselines"] = {
            "source": "majority class of the train split",
            "n_train": len(baseline_scenes),
            "fields": field_baselines(baseline_scenes, truth_values),
        }
    return result
