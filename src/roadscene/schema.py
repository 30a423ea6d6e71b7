"""The annotation schema: the annotation form, the normalised scene view, and readers.

Two views of one annotation:

- :class:`AnnotationForm` is the form annotators fill in (``annotation-schema.json``): capitalised
  enums such as ``"Center"`` or ``"Not present"``.
- :class:`SceneAnnotation` is the normalised view used for training and evaluation: lower-case
  positions (``left/center/right/front/unknown``), the road-vs-sidewalk relation derived by the rule
  in ``targets.md``, and near / far objects as position lists (one entry per object, so the count is
  the list's length).

A row of ``annotations.csv`` and an annotation JSON file both produce a :class:`SceneAnnotation`.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from roadscene.errors import InputError
from roadscene.io import read_text

# --- normalised values ---------------------------------------------------------------------------

POSITIONS: tuple[str, ...] = ("left", "center", "right")
SIDEWALK_VALUES: tuple[str, ...] = ("left", "center", "right", "unknown")
ROAD_VALUES: tuple[str, ...] = ("left", "center", "right", "front", "unknown")
RELATION_VALUES: tuple[str, ...] = ("left_of", "right_of", "crossing_front", "unknown")
NORMALISED_POSITIONS: frozenset[str] = frozenset({"left", "center", "right", "front", "unknown"})

# Render order of the object classes (targets.md), and their CSV columns.
OBJECT_CLASSES: tuple[str, ...] = (
    "obstacle",
    "person",
    "bicycle",
    "car",
    "traffic_sign",
    "traffic_light",
)
# Classes in the form that are never rendered into targets.
VEGETATION_CLASSES: tuple[str, ...] = ("grass", "plants", "trees")
FORM_CLASSES: tuple[str, ...] = (
    "bicycle",
    "car",
    "person",
    "traffic_sign",
    "traffic_light",
    "obstacle",
    *VEGETATION_CLASSES,
)


def near_column(cls: str) -> str:
    """CSV column of a class on the sidewalk (note the irregular `traffic_light`)."""
    return "traffic_light" if cls == "traffic_light" else f"m_{cls}"


def far_column(cls: str) -> str:
    """CSV column of a class off the sidewalk."""
    return f"{near_column(cls)}_outside"


ANNOTATION_COLUMNS: tuple[str, ...] = (
    "image",
    "status",
    "sidewalk_pos",
    "road_pos",
    "Object_present",
    "Object_present_outside",
    *(near_column(c) for c in FORM_CLASSES),
    *(far_column(c) for c in FORM_CLASSES),
)
REQUIRED_COLUMNS: tuple[str, ...] = (
    "image",
    "sidewalk_pos",
    "road_pos",
    *(near_column(c) for c in OBJECT_CLASSES),
    *(far_column(c) for c in OBJECT_CLASSES),
)

_MISSING = {"", "nan", "none", "not present"}


def normalize_position(value: Any) -> str:
    """Normalise a sidewalk or road position exactly as the published exports do.

    Missing / empty / ``nan`` / ``none`` / ``not present`` -> ``unknown``; otherwise lower-cased,
    ``centre`` -> ``center``; anything outside {left, center, right, front, unknown} -> ``unknown``.
    """
    if value is None:
        return "unknown"
    text = str(value).strip().lower()
    if text in _MISSING:
        return "unknown"
    if text == "centre":
        text = "center"
    return text if text in NORMALISED_POSITIONS else "unknown"


def road_vs_sidewalk(sidewalk: str, road: str) -> str:
    """Where the road is relative to the sidewalk (targets.md), from normalised positions."""
    if road == "front":
        return "crossing_front"
    lateral = {"left", "center", "right"}
    if sidewalk in lateral and road in lateral and sidewalk == road:
        return "unknown"
    if sidewalk == "left" and road in {"center", "right"}:
        return "right_of"
    if sidewalk == "right" and road in {"center", "left"}:
        return "left_of"
    if sidewalk == "center" and road == "left":
        return "left_of"
    if sidewalk == "center" and road == "right":
        return "right_of"
    return "unknown"


_CELL_SPLIT = re.compile(r"[-,/ ]+")
_CELL_POSITIONS = {"Left", "Center", "Right"}


def parse_object_cell(value: Any) -> list[str]:
    """Positions of the objects in one CSV cell, one entry per object, lower-case.

    The cell is split on every run of ``-``, ``,``, ``/`` or space; each piece is capitalised and
    kept if it is Left, Center or Right (repeats kept: ``Right-Right`` is two objects).
    """
    if value is None:
        return []
    text = str(value).strip()
    if text.lower() in _MISSING:
        return []
    pieces = (piece.capitalize() for piece in _CELL_SPLIT.split(text))
    return [piece.lower() for piece in pieces if piece in _CELL_POSITIONS]


def _cell_is_valid(value: str) -> bool:
    """Whether a CSV object cell uses only the form's vocabulary."""
    text = value.strip()
    if text == "" or text == "not present":
        return True
    return all(piece in _CELL_POSITIONS for piece in text.split("-"))


# --- the normalised scene --------------------------------------------------------------------------


class SceneAnnotation(BaseModel):
    """Normalised annotation of one image: what training targets and strict metrics use."""

    model_config = ConfigDict(frozen=False)

    image: str = Field(description="Image file name (base name) or path.")
    sidewalk: Literal["left", "center", "right", "front", "unknown"] = Field(
        description="Where the sidewalk is in the image."
    )
    road: Literal["left", "center", "right", "front", "unknown"] = Field(
        description="Where the road is in the image; `front` = a road crossing ahead."
    )
    relation: Literal["left_of", "right_of", "crossing_front", "unknown"] = Field(
        description="Road relative to the sidewalk, derived from sidewalk and road."
    )
    near: dict[str, list[Literal["left", "center", "right"]]] = Field(
        default_factory=dict,
        description="Objects on the sidewalk: class -> one position per object.",
    )
    far: dict[str, list[Literal["left", "center", "right"]]] = Field(
        default_factory=dict,
        description="Objects off the sidewalk: class -> one position per object.",
    )

    @classmethod
    def build(
        cls,
        image: str,
        sidewalk: str,
        road: str,
        near: dict[str, list[str]] | None = None,
        far: dict[str, list[str]] | None = None,
    ) -> SceneAnnotation:
        """A scene from (possibly raw) positions; the relation is derived by the rule."""
        sw, rd = normalize_position(sidewalk), normalize_position(road)
        return cls(
            image=image,
            sidewalk=sw,
            road=rd,
            relation=road_vs_sidewalk(sw, rd),
            near={c: list((near or {}).get(c, [])) for c in OBJECT_CLASSES},
            far={c: list((far or {}).get(c, [])) for c in OBJECT_CLASSES},
        )

    def near_count(self, cls: str) -> int:
        return len(self.near.get(cls, []))

    def far_count(self, cls: str) -> int:
        return len(self.far.get(cls, []))

    def to_form(self) -> AnnotationForm:
        """The annotation form for this scene (lossy where the form is: single-valued classes
        keep their first position; sidewalk `unknown` -> `Outside`, road `unknown` -> `Not
        present`)."""
        sidewalk = {"unknown": "Outside", "front": "Outside"}.get(
            self.sidewalk, self.sidewalk.capitalize()
        )
        road = {"unknown": "Not present", "center": "Front"}.get(self.road, self.road.capitalize())

        def objects(side: dict[str, list[str]], obstacle_list: bool) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for cls in FORM_CLASSES:
                positions = [p.capitalize() for p in side.get(cls, [])]
                if cls == "obstacle" and obstacle_list:
                    out[cls] = positions or ["not present"]
                else:
                    out[cls] = positions[0] if positions else "not present"
            return out

        has_near = any(self.near.get(c) for c in OBJECT_CLASSES)
        has_far = any(self.far.get(c) for c in OBJECT_CLASSES)
        return AnnotationForm.model_validate(
            {
                "image": self.image,
                "sidewalk_pos": sidewalk,
                "road_pos": road,
                "object_present": "Yes" if has_near else "No",
                "objects_on_sidewalk": objects(self.near, obstacle_list=True),
                "object_present_outside": "Yes" if has_far else "No",
                "objects_outside_sidewalk": objects(self.far, obstacle_list=False),
            }
        )


# --- the annotation form (annotation-schema.json) -------------------------------------------------

FormPosition = Literal["not present", "Left", "Center", "Right"]


class ObjectsOnSidewalk(BaseModel):
    """Objects on the sidewalk; `obstacle` may list several positions."""

    model_config = ConfigDict(extra="forbid")

    bicycle: FormPosition | None = None
    car: FormPosition | None = None
    person: FormPosition | None = None
    traffic_sign: FormPosition | None = None
    traffic_light: FormPosition | None = None
    obstacle: list[FormPosition] | None = None
    grass: FormPosition | None = None
    plants: FormPosition | None = None
    trees: FormPosition | None = None


class ObjectsOutsideSidewalk(BaseModel):
    """Objects off the sidewalk."""

    model_config = ConfigDict(extra="forbid")

    bicycle: FormPosition | None = None
    car: FormPosition | None = None
    person: FormPosition | None = None
    traffic_sign: FormPosition | None = None
    traffic_light: FormPosition | None = None
    obstacle: FormPosition | None = None
    grass: FormPosition | None = None
    plants: FormPosition | None = None
    trees: FormPosition | None = None


class AnnotationForm(BaseModel):
    """Sidewalk scene annotation, as filled in by an annotator (annotation-schema.json)."""

    model_config = ConfigDict(extra="forbid", title="Sidewalk scene annotation")

    image: str
    sidewalk_pos: Literal["Left", "Center", "Right", "Outside"]
    road_pos: Literal["Not present", "Left", "Front", "Right"]
    object_present: Literal["No", "Yes"]
    objects_on_sidewalk: ObjectsOnSidewalk | None = None
    object_present_outside: Literal["No", "Yes"]
    objects_outside_sidewalk: ObjectsOutsideSidewalk | None = None

    def to_scene(self) -> SceneAnnotation:
        """The normalised view of this form."""

        def positions(value: Any) -> list[str]:
            values = value if isinstance(value, list) else [value]
            return [p for v in values if v is not None for p in parse_object_cell(v)]

        near = self.objects_on_sidewalk or ObjectsOnSidewalk()
        far = self.objects_outside_sidewalk or ObjectsOutsideSidewalk()
        return SceneAnnotation.build(
            image=self.image,
            sidewalk=self.sidewalk_pos,
            road=self.road_pos,
            near={c: positions(getattr(near, c)) for c in OBJECT_CLASSES},
            far={c: positions(getattr(far, c)) for c in OBJECT_CLASSES},
        )


def form_json_schema() -> dict[str, Any]:
    """JSON Schema of the annotation form (what `roadscene data schema` prints)."""
    schema = AnnotationForm.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


# --- reading annotations ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RowIssue:
    """A row-level defect: reported with file and line, counted, never silently dropped."""

    path: str
    line: int
    kind: Literal["malformed", "unknown_value", "duplicate", "missing_value", "bad_split"]
    message: str
    image: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}"
        if self.field:
            where += f": field '{self.field}'"
        return f"{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "kind": self.kind,
            "image": self.image,
            "field": self.field,
            "message": self.message,
        }


@dataclass
class AnnotationTable:
    """All annotations of a CSV, de-duplicated by image base name (first row wins)."""

    path: str
    scenes: dict[str, SceneAnnotation] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    issues: list[RowIssue] = field(default_factory=list)
    row_count: int = 0


def image_key(path_or_name: str) -> str:
    """Join key of captions and annotations: the base name of the image path."""
    return str(path_or_name).replace("\\", "/").rsplit("/", 1)[-1]


_IMAGE_NAME = re.compile(r".+\.(jpe?g|png|webp|bmp)$", re.IGNORECASE)
_FORM_SIDEWALK = {"Left", "Center", "Right", "Outside"}
_FORM_ROAD = {"Not present", "Left", "Front", "Right"}
_FORM_YES_NO = {"Yes", "No"}


def read_csv_rows(
    path: str | Path, required: tuple[str, ...], what: str
) -> list[tuple[int, dict[str, str]]]:
    """Read a CSV as (first line number, row) pairs.

    File-level problems (missing file, non-UTF-8 bytes, empty file, missing column) raise an
    InputError naming the file (and column). Line numbers count the header as line 1 and follow
    quoted multi-line fields.
    """
    text = read_text(path)
    if not text.strip():
        raise InputError(f"{what} file is empty", path=path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(
            f"missing column '{missing[0]}'"
            + (
                f" (and {len(missing) - 1} more: {', '.join(missing[1:])})"
                if len(missing) > 1
                else ""
            ),
            path=path,
            field=None,
        )
    rows: list[tuple[int, dict[str, str]]] = []
    start = reader.line_num + 1
    for row in reader:
        rows.append((start, {k: (v if v is not None else "") for k, v in row.items() if k}))
        start = reader.line_num + 1
    if not rows:
        raise InputError(f"{what} file has a header but no rows", path=path)
    return rows


def validate_annotation_row(row: dict[str, str], path: str, line: int) -> list[RowIssue]:
    """Row-level defects of one annotations.csv row (the form's vocabulary is the reference)."""
    issues: list[RowIssue] = []
    image = row.get("image", "")
    if not _IMAGE_NAME.match(image.strip()):
        issues.append(
            RowIssue(
                path,
                line,
                "malformed",
                f"malformed row: image '{image}' is not an image file name (columns shifted?)",
                image=image,
                field="image",
            )
        )
    checks = [
        ("sidewalk_pos", _FORM_SIDEWALK),
        ("road_pos", _FORM_ROAD),
        ("Object_present", _FORM_YES_NO),
        ("Object_present_outside", _FORM_YES_NO),
    ]
    for column, allowed in checks:
        if column not in row:
            continue
        value = row[column]
        if value.strip() == "":
            issues.append(
                RowIssue(path, line, "missing_value", "empty value", image=image, field=column)
            )
        elif value not in allowed:
            issues.append(
                RowIssue(
                    path,
                    line,
                    "unknown_value",
                    f"unknown value '{value}' (allowed: {', '.join(sorted(allowed))})",
                    image=image,
                    field=column,
                )
            )
    for cls in FORM_CLASSES:
        for column in (near_column(cls), far_column(cls)):
            value = row.get(column)
            if value is not None and not _cell_is_valid(value):
                issues.append(
                    RowIssue(
                        path,
                        line,
                        "unknown_value",
                        f"unknown value '{value}' (allowed: "
                        "not present, or Left/Center/Right joined by '-')",
                        image=image,
                        field=column,
                    )
                )
    return issues


def scene_from_csv_row(row: dict[str, str]) -> SceneAnnotation:
    """The normalised scene of one annotations.csv row (normalisation never fails)."""
    return SceneAnnotation.build(
        image=image_key(row.get("image", "")),
        sidewalk=row.get("sidewalk_pos"),
        road=row.get("road_pos"),
        near={c: parse_object_cell(row.get(near_column(c))) for c in OBJECT_CLASSES},
        far={c: parse_object_cell(row.get(far_column(c))) for c in OBJECT_CLASSES},
    )


def read_annotations_csv(path: str | Path) -> AnnotationTable:
    """Read annotations.csv: normalised scenes keyed by image base name, first row wins.

    Row-level defects (unknown values, malformed rows, duplicates) are collected in `.issues`
    with line numbers; they do not stop reading.
    """
    path = Path(path)
    table = AnnotationTable(path=str(path))
    for line, row in read_csv_rows(path, REQUIRED_COLUMNS, "annotations"):
        table.row_count += 1
        table.issues.extend(validate_annotation_row(row, str(path), line))
        key = image_key(row["image"])
        if key in table.scenes:
            table.issues.append(
                RowIssue(
                    str(path),
                    line,
                    "duplicate",
                    f"duplicate annotation of '{key}' (first "
                    f"at line {table.lines[key]}; first row wins)",
                    image=key,
                    field="image",
                )
            )
            continue
        table.scenes[key] = scene_from_csv_row(row)
        table.lines[key] = line
    return table


def read_annotation_json(path: str | Path) -> AnnotationForm:
    """Read and validate one annotation JSON file (the form)."""
    path = Path(path)
    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"malformed JSON: {err.msg}", path=path, line=err.lineno) from None
    try:
        return AnnotationForm.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise InputError(first["msg"], path=path, field=loc) from None


def validate_annotation_json(path: str | Path) -> list[str]:
    """Every problem of an annotation JSON file, one message each (empty list when valid)."""
    path = Path(path)
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        return [f"{path}:{err.lineno}: malformed JSON: {err.msg}"]
    try:
        AnnotationForm.model_validate(data)
    except ValidationError as err:
        return [
            f"{path}: field '{'.'.join(str(p) for p in e['loc'])}': {e['msg']}"
            for e in err.errors()
        ]
    return []
