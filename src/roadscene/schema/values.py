"""Normalised values of the annotation schema: positions, object classes, CSV columns, and the
normalisation rules the published exports apply (positions, object cells, the road-vs-sidewalk
relation)."""

from __future__ import annotations

import re
from typing import Any

POSITIONS: tuple[str, ...] = ("left", "center", "right")
SIDEWALK_VALUES: tuple[str, ...] = ("left", "center", "right", "unknown")
ROAD_VALUES: tuple[str, ...] = ("left", "center", "right", "front", "unknown")
RELATION_VALUES: tuple[str, ...] = ("left_of", "right_of", "crossing_front", "unknown")
NORMALISED_POSITIONS: frozenset[str] = frozenset({"left", "center", "right", "front", "unknown"})

# Render order of the object classes (docs/targets.md), and their CSV columns.
OBJECT_CLASSES: tuple[str, ...] = (
    "obstacle",
    "person",
    "bicycle",
    "car",
    "traffic_sign",
    "traffic_light",
)
# How a close object moves in a clip, and the classes that can move: a motion word follows only
# their phrases (docs/targets.md). A clip's answer names one for each of them, `standing still`
# included; a still image's answer names none (one image cannot tell).
STANDING_STILL = "standing still"
MOTIONS: tuple[str, ...] = (STANDING_STILL, "approaching", "moving away", "crossing")
#: The motions scored (`motion_label`): `static` (standing still, or no motion word named).
MOTION_WORDS: tuple[str, ...] = ("static", *(m for m in MOTIONS if m != STANDING_STILL))
MOVING_CLASSES: tuple[str, ...] = ("person", "bicycle", "car")
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
    """Where the road is relative to the sidewalk (docs/targets.md), from normalised positions."""
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


def motion_label(word: str | None) -> str:
    """The scored motion (`MOTION_WORDS`) of a motion word: `static` for standing still or none."""
    return "static" if word is None or word == STANDING_STILL else word


def motion_cell(motion: dict[str, str] | None) -> str:
    """The optional `motion` column of annotations.csv for a clip: `person:approaching;car:
    standing still` (classes in render order; a class left out stands still)."""
    return ";".join(f"{c}:{motion[c]}" for c in OBJECT_CLASSES if c in (motion or {}))


def parse_motion_cell(value: str | None) -> tuple[dict[str, str], list[str]]:
    """The motions of a `motion` cell, and the entries that are not `class:motion` with a class
    that can move (`MOVING_CLASSES`) and a motion of `MOTIONS` (left out, reported)."""
    motion: dict[str, str] = {}
    bad: list[str] = []
    for entry in (value or "").split(";"):
        if not entry.strip():
            continue
        cls, _, word = (part.strip() for part in entry.partition(":"))
        if cls in MOVING_CLASSES and word in MOTIONS:
            motion[cls] = word
        else:
            bad.append(entry.strip())
    return motion, bad


def cell_is_valid(value: str) -> bool:
    """Whether a CSV object cell uses only the form's vocabulary."""
    text = value.strip()
    if text == "" or text == "not present":
        return True
    return all(piece in _CELL_POSITIONS for piece in text.split("-"))


def image_key(path_or_name: str) -> str:
    """Join key of captions and annotations: the base name of the image path."""
    return str(path_or_name).replace("\\", "/").rsplit("/", 1)[-1]
