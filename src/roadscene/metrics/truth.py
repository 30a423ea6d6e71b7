"""Ground truth for the safety metrics: a split's images joined to their annotations.

Strict and compat scoring take truth as an ordered mapping image key -> SceneAnnotation, so
callers can also pass scenes that never came from the SENSATION CSVs (e.g. synthetic ones).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roadscene.errors import InputError
from roadscene.schema import SceneAnnotation, image_key, read_annotations_csv

FIELDS: tuple[str, ...] = ("sidewalk", "road", "relation")
# Report names of the three fields (the keys of the SFT exports).
FIELD_REPORT_NAMES: dict[str, str] = {
    "sidewalk": "sidewalk_pos",
    "road": "road_pos",
    "relation": "road_vs_sidewalk",
}


@dataclass
class SplitTruth:
    """Truth scenes of one split, in captions-file order, and what the join found."""

    split: str
    scenes: dict[str, SceneAnnotation]
    without_annotation: list[str] = field(default_factory=list)
    annotation_issues: int = 0
    sources: dict[str, str | None] = field(default_factory=dict)

    def counts(self) -> dict[str, Any]:
        return {
            "split_images": len(self.scenes),
            "without_annotation": len(self.without_annotation),
            "without_annotation_examples": self.without_annotation[:10],
            "annotation_row_issues": self.annotation_issues,
        }


def load_split_truth(
    captions_csv: str | Path, annotations_csv: str | Path, split: str
) -> SplitTruth:
    """The split's images (from captions.csv) left-joined to annotations.csv by base name.

    An image without an annotation row gets an empty scene (all `unknown`, no objects), as the
    published scorer did, and is counted in `without_annotation`.
    """
    from roadscene.data.build import SPLITS, read_captions_csv

    if split not in SPLITS:
        raise InputError(f"split must be one of {', '.join(SPLITS)}; got '{split}'", field="split")
    rows, _ = read_captions_csv(captions_csv)
    table = read_annotations_csv(annotations_csv)
    scenes: dict[str, SceneAnnotation] = {}
    without: list[str] = []
    for row in rows:
        if row.split != split or not row.used:
            continue  # another split, or left out (bad split, split conflict)
        key = image_key(row.image)
        if key in scenes:
            continue  # reported by read_captions_csv as a duplicate; first wins
        scene = table.scenes.get(key)
        if scene is None:
            without.append(key)
            scene = SceneAnnotation.build(image=key, sidewalk=None, road=None)
        scenes[key] = scene
    if not scenes:
        raise InputError(f"no images of split '{split}'", path=captions_csv, field="split")
    return SplitTruth(
        split=split,
        scenes=scenes,
        without_annotation=without,
        annotation_issues=len(table.issues),
        sources={"captions": str(captions_csv), "annotations": str(annotations_csv)},
    )


def truth_from_scenes(
    scenes: Mapping[str, SceneAnnotation] | list[SceneAnnotation], split: str = "custom"
) -> SplitTruth:
    """Truth from in-memory scenes (keyed by image, or a list keyed by each scene's image)."""
    items = scenes.items() if isinstance(scenes, Mapping) else ((s.image, s) for s in scenes)
    by_key: dict[str, SceneAnnotation] = {}
    for image, scene in items:
        key = image_key(image)
        if key in by_key:
            raise InputError(f"two truth scenes for image '{key}'", field="image")
        by_key[key] = scene
    if not by_key:
        raise InputError("no truth scenes given")
    return SplitTruth(split=split, scenes=by_key, sources={"captions": None, "annotations": None})
