"""Structured-field and object metrics exactly as published ("compat", docs/evaluation.md).

Fields are found with the published regular expressions; objects are "mentioned" when any
keyword is a substring of the lower-cased text (the whole text, or with `section="nearby"` its
`Nearby:` part, which gives the published object table). The flaws of this definition are
listed in docs/evaluation.md; `safety_strict` is the project's own definition.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from roadscene.metrics.stats import safe_div
from roadscene.metrics.truth import FIELD_REPORT_NAMES, FIELDS
from roadscene.schema import SceneAnnotation

Section = Literal["all", "nearby"]
SECTIONS: tuple[str, ...] = ("all", "nearby")

_FIELD_PATTERNS: dict[str, re.Pattern[str]] = {
    "sidewalk": re.compile(r"\bsidewalk\s*:\s*(left|center|right|front|unknown)\b", re.I),
    "road": re.compile(r"\broad\s*:\s*(left|center|right|front|unknown)\b", re.I),
    "relation": re.compile(
        r"\broadvssidewalk\s*:\s*(left_of|right_of|crossing_front|unknown)\b", re.I
    ),
}
# Published keyword lists, in the published report order (substring matching, on purpose).
COMPAT_KEYWORDS: dict[str, tuple[str, ...]] = {
    "person": ("person", "pedestrian", "man", "woman", "people"),
    "car": ("car", "vehicle", "auto"),
    "bicycle": ("bicycle", "bike", "cyclist"),
    "obstacle": ("obstacle", "barrier", "cone", "bollard", "block"),
    "traffic_sign": ("traffic sign", "sign"),
    "traffic_light": ("traffic light", "trafficlight", "signal"),
}
_NEARBY_PART = re.compile(r"nearby:(.*?)(?=far:|context:|$)", re.S)


def nearby_part(lowered: str) -> str:
    """The text between `nearby:` and the next `far:` / `context:` (empty when absent)."""
    match = _NEARBY_PART.search(lowered)
    return match.group(1) if match else ""


def score_compat_sample(
    text: str, truth: SceneAnnotation, section: Section = "all"
) -> dict[str, Any]:
    """Per-sample compat scoring: the found field values and the mentioned classes."""
    found = {}
    for name in FIELDS:
        match = _FIELD_PATTERNS[name].search(text)
        found[name] = match.group(1).lower() if match else None
    lowered = text.lower()
    scope = nearby_part(lowered) if section == "nearby" else lowered
    mentioned = {cls: any(w in scope for w in words) for cls, words in COMPAT_KEYWORDS.items()}
    present = {cls: bool(truth.near.get(cls)) for cls in COMPAT_KEYWORDS}
    return {
        "fields": found,
        "field_correct": {name: found[name] == getattr(truth, name) for name in FIELDS},
        "mentioned": mentioned,
        "present": present,
    }


def aggregate_compat(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Corpus compat figures from per-sample results (missing predictions = empty text)."""
    total = len(samples)
    presence, accuracy = {}, {}
    for name in FIELDS:
        key = FIELD_REPORT_NAMES[name]
        count = sum(s["fields"][name] is not None for s in samples)
        correct = sum(bool(s["field_correct"][name]) for s in samples)
        presence[key] = {"count": count, "total": total, "rate": safe_div(count, total)}
        accuracy[key] = {"correct": correct, "total": total, "rate": safe_div(correct, total)}
    objects = {}
    for cls in COMPAT_KEYWORDS:
        tp = sum(s["present"][cls] and s["mentioned"][cls] for s in samples)
        fn = sum(s["present"][cls] and not s["mentioned"][cls] for s in samples)
        fp = sum(not s["present"][cls] and s["mentioned"][cls] for s in samples)
        objects[cls] = {
            "gt_present": tp + fn,
            "tp": tp,
            "fn": fn,
            "fp": fp,
            "recall": safe_div(tp, tp + fn),
            "precision": safe_div(tp, tp + fp),
        }
    return {"presence": presence, "accuracy": accuracy, "objects": objects}
