"""Synthetic street scenes: a scene sampler and a cheap, deterministic renderer.

A :class:`~roadscene.schema.SceneAnnotation` becomes a small RGB image that shows what the
annotation says, so a model can learn the task from pixels without any real data:

- a perspective sidewalk (light paving) whose bottom edge sits at the left, center or right of
  the image, or no sidewalk (`unknown`);
- asphalt road to the left or right of the view (converging to the vanishing point), a crossing
  band with zebra stripes across the view (`front`), or none (`unknown`: grass);
- each object class with its own shape and colour (:data:`OBJECT_STYLES`) in the left / center /
  right column: near objects low and large, far objects just below the horizon and small; one
  shape per object, so counts are visible;
- optional lighting / weather variation (brightness, tint, fog, sensor noise) and small layout
  jitter.

Rendering is vectorised numpy on fixed-size pixel grids (about 0.2 ms per 96 px image on one
core). Everything random comes from a `numpy.random.Generator` seeded per image, so an image
depends only on (scene, seed), never on the order of rendering.

:class:`SceneDistribution` samples annotations: the built-in one is fitted to SENSATION's
`annotations.csv` (README frequencies); :meth:`SceneDistribution.fit` fits another annotation
file (`roadscene data synth --like FILE`).
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, field_validator

from roadscene.errors import InputError
from roadscene.schema import (
    ANNOTATION_COLUMNS,
    FORM_CLASSES,
    OBJECT_CLASSES,
    POSITIONS,
    SceneAnnotation,
    far_column,
    near_column,
    read_annotations_csv,
)
from roadscene.targets import render_response

# --- rendering ------------------------------------------------------------------------------------


class RenderOptions(BaseModel):
    """How scenes are drawn."""

    size: int = Field(96, ge=32, le=1024, description="Image side in pixels (square images).")
    weather: bool = Field(
        True, description="Random lighting / weather (brightness, tint, fog, noise) per image."
    )
    jitter: bool = Field(True, description="Small random shifts of layout and object placement.")


@dataclass(frozen=True)
class ObjectStyle:
    """How one object class looks: colour and the box it is drawn in (fractions of its height)."""

    colour: tuple[int, int, int]
    aspect: float  # width / height of the drawing box


# Saturated colours far from the grey paving, dark asphalt, olive grass and pale sky.
OBJECT_STYLES: dict[str, ObjectStyle] = {
    "obstacle": ObjectStyle((245, 125, 15), 1.0),  # orange barrier box with a white band
    "person": ObjectStyle((175, 35, 205), 0.5),  # purple body + head
    "bicycle": ObjectStyle((0, 205, 225), 1.5),  # cyan wheels + frame
    "car": ObjectStyle((215, 25, 25), 1.7),  # red body, cabin, black wheels
    "traffic_sign": ObjectStyle((35, 75, 235), 0.6),  # blue disc on a pole
    "traffic_light": ObjectStyle((235, 205, 15), 0.45),  # yellow housing, red/green lamps
}

# Column centres (fractions of the width) of the three positions.
_COLUMN_X = {"left": 0.18, "center": 0.5, "right": 0.82}
_COLUMN_WIDTH = 0.30
# Sidewalk bottom edge (fractions of the width) per position; it converges to the vanishing point.
_SIDEWALK_BOTTOM = {"left": (0.10, 0.44), "center": (0.30, 0.70), "right": (0.56, 0.90)}
# Road edge at the bottom row: the road lies beyond this line (left of it / right of it).
_ROAD_LEFT_EDGE, _ROAD_RIGHT_EDGE = 0.34, 0.66
_HORIZON = 0.36  # fraction of the height
_CROSSING = (0.50, 0.62)  # rows of the crossing band (fractions of the height)
_NEAR_BASE, _NEAR_HEIGHT = 0.95, 0.24  # near objects: bottom row, height (fractions)
_FAR_BASE, _FAR_HEIGHT = 0.47, 0.10  # far objects: just below the horizon, small


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates as fractions of the side: (rows (S,1), columns (1,S))."""
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size
    return coords[:, None], coords[None, :]


def _unit_box(
    size: int, cx: float, base: float, height: float, aspect: float
) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
    """The pixel box of an object (centre x, bottom y, height; fractions) and its local
    coordinates u (horizontal), v (vertical) in [-1, 1] (v = 1 at the bottom)."""
    width = height * aspect
    x0, x1 = (cx - width / 2) * size, (cx + width / 2) * size
    y0, y1 = (base - height) * size, base * size
    cols = slice(max(int(np.floor(x0)), 0), min(int(np.ceil(x1)), size))
    rows = slice(max(int(np.floor(y0)), 0), min(int(np.ceil(y1)), size))
    if cols.start >= cols.stop or rows.start >= rows.stop:
        return None
    xs = np.arange(cols.start, cols.stop, dtype=np.float32) + 0.5
    ys = np.arange(rows.start, rows.stop, dtype=np.float32) + 0.5
    u = ((xs - x0) / max(x1 - x0, 1e-6) * 2 - 1)[None, :]
    v = ((ys - y0) / max(y1 - y0, 1e-6) * 2 - 1)[:, None]
    return rows, cols, u, v


def _shape_masks(cls: str, u: np.ndarray, v: np.ndarray) -> list[tuple[np.ndarray, tuple]]:
    """(mask, colour) layers of one object in its unit box, drawn in order."""
    colour = OBJECT_STYLES[cls].colour
    white, black, grey = (245, 245, 245), (20, 20, 20), (110, 110, 110)
    if cls == "obstacle":
        box = (np.abs(u) < 0.95) & (v > -0.6)
        band = box & (np.abs(v - 0.1) < 0.18)
        return [(box, colour), (band, white)]
    if cls == "person":
        head = u**2 + ((v + 0.72) / 0.55) ** 2 < 0.28**2 / 0.55**2 * 2.2
        body = (np.abs(u) < 0.62) & (v > -0.42) & (v < 0.55)
        legs = (np.abs(np.abs(u) - 0.32) < 0.2) & (v >= 0.55)
        return [(head | body | legs, colour)]
    if cls == "bicycle":
        ru = 0.36 / 1.0
        left = np.hypot((u + 0.55) / ru, (v - 0.4) / 0.55)
        right = np.hypot((u - 0.55) / ru, (v - 0.4) / 0.55)
        wheels = ((left > 0.62) & (left < 1.0)) | ((right > 0.62) & (right < 1.0))
        frame = (np.abs(v + 0.05 - 0.35 * np.abs(u)) < 0.12) & (np.abs(u) < 0.6)
        bar = (np.abs(u - 0.3) < 0.09) & (v > -0.6) & (v < 0.1)
        return [(wheels | frame | bar, colour)]
    if cls == "car":
        body = (np.abs(u) < 0.98) & (v > -0.15) & (v < 0.62)
        cabin = (np.abs(u) < 0.55) & (v > -0.75) & (v <= -0.15)
        wheels = (np.hypot((np.abs(u) - 0.55) / 0.2, (v - 0.65) / 0.35) < 1.0) & (v > 0.3)
        window = (np.abs(u) < 0.42) & (v > -0.62) & (v < -0.25)
        return [(body | cabin, colour), (window, (200, 225, 240)), (wheels, black)]
    if cls == "traffic_sign":
        disc = np.hypot(u / 0.95, (v + 0.45) / 0.52) < 1.0
        pole = (np.abs(u) < 0.14) & (v > 0.0)
        return [(pole, grey), (disc, colour), (np.hypot(u / 0.5, (v + 0.45) / 0.27) < 1.0, white)]
    if cls == "traffic_light":
        housing = (np.abs(u) < 0.95) & (v > -0.98) & (v < 0.15)
        pole = (np.abs(u) < 0.22) & (v >= 0.15)
        red = np.hypot(u / 0.55, (v + 0.6) / 0.2) < 1.0
        green = np.hypot(u / 0.55, (v + 0.15) / 0.2) < 1.0
        return [(pole, grey), (housing, colour), (red, (230, 20, 20)), (green, (20, 200, 60))]
    raise ValueError(f"unknown object class '{cls}'; valid classes: {', '.join(OBJECT_CLASSES)}")


def _draw_objects(
    image: np.ndarray,
    objects: dict[str, list[str]],
    *,
    base: float,
    height: float,
    rng: np.random.Generator | None,
) -> None:
    """Draw objects column by column; several objects in one column share it side by side."""
    size = image.shape[0]
    for position in POSITIONS:
        members = [cls for cls in OBJECT_CLASSES for p in objects.get(cls, []) if p == position]
        if not members:
            continue
        slot = _COLUMN_WIDTH / len(members)
        start = _COLUMN_X[position] - _COLUMN_WIDTH / 2
        for index, cls in enumerate(members):
            style = OBJECT_STYLES[cls]
            obj_height = min(height, 0.92 * slot / style.aspect)
            cx = start + slot * (index + 0.5)
            bottom = base
            if rng is not None:
                cx += rng.uniform(-0.12, 0.12) * slot
                bottom += rng.uniform(-0.015, 0.015)
                obj_height *= rng.uniform(0.9, 1.05)
            box = _unit_box(size, cx, bottom, obj_height, style.aspect)
            if box is None:
                continue
            rows, cols, u, v = box
            patch = image[rows, cols]
            for mask, colour in _shape_masks(cls, u, v):
                patch[mask] = colour


def render_scene(
    scene: SceneAnnotation, seed: int | Sequence[int] = 0, options: RenderOptions | None = None
) -> np.ndarray:
    """Draw `scene` as an (S, S, 3) uint8 RGB array; the same (scene, seed, options) gives the
    same bytes."""
    options = options or RenderOptions()
    size = options.size
    rng = np.random.default_rng(seed)
    jitter = rng if options.jitter else None
    ys, xs = _grid(size)

    def vary(colour: tuple[int, int, int], amount: float) -> np.ndarray:
        base = np.asarray(colour, dtype=np.float32)
        if jitter is None:
            return base
        return base + jitter.uniform(-amount, amount) + jitter.uniform(-amount / 3, amount / 3, 3)

    horizon = _HORIZON + (jitter.uniform(-0.02, 0.02) if jitter is not None else 0.0)
    vanish_x = 0.5 + (jitter.uniform(-0.04, 0.04) if jitter is not None else 0.0)
    image = np.empty((size, size, 3), dtype=np.float32)
    # sky: pale blue, lighter towards the horizon; ground: olive grass
    sky = vary((150, 185, 225), 12)
    image[:] = vary((105, 135, 65), 12)
    sky_rows = ys[:, 0] < horizon
    image[sky_rows] = sky + (ys[sky_rows, :, None] / max(horizon, 1e-6)) * 25

    depth = np.clip((ys - horizon) / (1.0 - horizon), 0.0, None)  # 0 at horizon, 1 at bottom
    below = ys >= horizon

    def beyond_line(bottom_x: float) -> np.ndarray:
        return vanish_x + (bottom_x - vanish_x) * depth  # (S,1) edge x per row

    asphalt = vary((62, 62, 66), 8)
    road = np.zeros((size, size), dtype=bool)
    if scene.road == "left":
        road = below & (xs < beyond_line(_ROAD_LEFT_EDGE))
    elif scene.road == "right":
        road = below & (xs > beyond_line(_ROAD_RIGHT_EDGE))
    elif scene.road == "center":
        road = below & (xs > beyond_line(0.25)) & (xs < beyond_line(0.75))
    image[road] = asphalt

    if scene.sidewalk in _SIDEWALK_BOTTOM:
        left_x, right_x = _SIDEWALK_BOTTOM[scene.sidewalk]
        if jitter is not None:
            shift = jitter.uniform(-0.03, 0.03)
            left_x, right_x = left_x + shift, right_x + shift
        paving = vary((188, 184, 176), 12)
        walk = below & (xs > beyond_line(left_x) - 0.01) & (xs < beyond_line(right_x) + 0.01)
        image[walk] = paving
        # paving joints: darker lines across the walk every few rows, denser towards the horizon
        joints = walk & (np.mod(np.sqrt(depth + 1e-6) * 9.0, 1.0) < 0.12)
        image[joints] = paving - 28
        # kerb: a pale line along the road-side edge(s)
        kerb = walk & (
            (np.abs(xs - beyond_line(left_x)) < 0.012) | (np.abs(xs - beyond_line(right_x)) < 0.012)
        )
        image[kerb] = (225, 225, 220)

    if scene.road == "front":
        top, bottom = _CROSSING
        if jitter is not None:
            move = jitter.uniform(-0.02, 0.02)
            top, bottom = top + move, bottom + move
        band = (ys >= top) & (ys < bottom) & np.ones_like(xs, dtype=bool)
        image[band] = asphalt
        stripes = band & (np.mod(xs * 11.0 + vanish_x, 1.0) < 0.45) & (ys > top + 0.015)
        stripes &= ys < bottom - 0.015
        image[stripes] = (232, 232, 228)

    _draw_objects(image, scene.far, base=_FAR_BASE, height=_FAR_HEIGHT, rng=jitter)
    _draw_objects(image, scene.near, base=_NEAR_BASE, height=_NEAR_HEIGHT, rng=jitter)

    if options.weather:
        brightness = rng.uniform(0.72, 1.15)
        tint = rng.uniform(0.93, 1.07, 3)
        image *= brightness * tint
        fog = rng.uniform(0.0, 0.3) if rng.random() < 0.35 else 0.0
        image = image * (1.0 - fog) + 200.0 * fog
        image += rng.normal(0.0, 3.0, image.shape).astype(np.float32)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


# --- sampling scenes --------------------------------------------------------------------------------


class ClassDistribution(BaseModel):
    """Per object class and side: P(count = k) and P(position) for each object."""

    count: dict[int, float] = Field(description="count -> probability (sums to 1)")
    position: dict[str, float] = Field(description="left/center/right -> probability")

    @field_validator("count", "position")
    @classmethod
    def _normalised(cls, value: dict[Any, float]) -> dict[Any, float]:
        total = sum(value.values())
        if total <= 0 or any(p < 0 for p in value.values()):
            raise ValueError(f"probabilities must be >= 0 with a positive sum; got {value}")
        return {k: p / total for k, p in value.items()}


class SceneDistribution(BaseModel):
    """A factorised distribution of scenes: (sidewalk, road) jointly, then each object class's
    near and far count and positions independently."""

    layout: dict[str, float] = Field(
        description="'sidewalk/road' -> probability, e.g. 'center/left'"
    )
    near: dict[str, ClassDistribution]
    far: dict[str, ClassDistribution]

    @field_validator("layout")
    @classmethod
    def _layout(cls, value: dict[str, float]) -> dict[str, float]:
        total = sum(value.values())
        for key in value:
            if key.count("/") != 1:
                raise ValueError(f"layout keys are 'sidewalk/road'; got '{key}'")
        if total <= 0:
            raise ValueError("layout probabilities must have a positive sum")
        return {k: p / total for k, p in value.items()}

    @classmethod
    def builtin(cls) -> SceneDistribution:
        """The distribution of SENSATION's annotations.csv (3,234 annotated images)."""
        return cls.model_validate(_SENSATION_DISTRIBUTION)

    @classmethod
    def fit(cls, scenes: Iterable[SceneAnnotation]) -> SceneDistribution:
        """The empirical distribution of some annotated scenes."""
        scenes = list(scenes)
        if not scenes:
            raise ValueError("cannot fit a scene distribution to zero scenes")
        layout = Counter(f"{s.sidewalk}/{s.road}" for s in scenes)

        def side(attr: str) -> dict[str, ClassDistribution]:
            out = {}
            for name in OBJECT_CLASSES:
                counts = Counter(len(getattr(s, attr)[name]) for s in scenes)
                positions = Counter(p for s in scenes for p in getattr(s, attr)[name])
                out[name] = ClassDistribution(
                    count=dict(counts),
                    position={p: positions.get(p, 0) + 1e-3 for p in POSITIONS},
                )
            return out

        return cls(layout=dict(layout), near=side("near"), far=side("far"))

    @classmethod
    def from_annotations(cls, path: str | Path) -> SceneDistribution:
        """Fit to an annotations CSV (SENSATION column layout)."""
        table = read_annotations_csv(path)
        if not table.scenes:
            raise InputError("no annotated images to sample from", path=path)
        return cls.fit(table.scenes.values())

    def with_object_rate(self, rate: float) -> SceneDistribution:
        """A copy in which a scene has at least one near object with probability about `rate`
        (each class's P(count > 0) scaled by one common factor), e.g. to oversample objects for
        training. Shapes of the count and position distributions are kept."""
        if not 0.0 < rate < 1.0:
            raise ValueError(f"object rate must be in (0, 1); got {rate}")
        empty = np.prod([d.count.get(0, 0.0) for d in self.near.values()])
        target_empty = 1.0 - rate
        # find a common factor f on P(count > 0) so that prod(1 - f * p_i) = target_empty
        present = np.array([1.0 - d.count.get(0, 0.0) for d in self.near.values()])
        low, high = 0.0, 1.0 / max(present.max(), 1e-9)
        for _ in range(60):
            mid = (low + high) / 2
            if np.prod(1.0 - mid * present) > target_empty:
                low = mid
            else:
                high = mid
        factor = (low + high) / 2 if empty > target_empty else 1.0
        near = {}
        for name, dist in self.near.items():
            p_present = 1.0 - dist.count.get(0, 0.0)
            scaled = min(p_present * factor, 1.0)
            rest = {k: p for k, p in dist.count.items() if k > 0}
            rest_total = sum(rest.values()) or 1.0
            count = {0: 1.0 - scaled} | {k: scaled * p / rest_total for k, p in rest.items()}
            near[name] = ClassDistribution(count=count, position=dist.position)
        return self.model_copy(update={"near": near})

    def sample(self, rng: np.random.Generator, image: str) -> SceneAnnotation:
        """One scene named `image`."""
        keys = list(self.layout)
        layout = keys[rng.choice(len(keys), p=np.array([self.layout[k] for k in keys]))]
        sidewalk, road = layout.split("/")

        def objects(side: dict[str, ClassDistribution]) -> dict[str, list[str]]:
            out: dict[str, list[str]] = {}
            for name in OBJECT_CLASSES:
                dist = side[name]
                counts = list(dist.count)
                n = counts[rng.choice(len(counts), p=np.array([dist.count[k] for k in counts]))]
                where = list(dist.position)
                probs = np.array([dist.position[p] for p in where])
                picks = rng.choice(len(where), size=int(n), p=probs) if n else []
                # list positions left < center < right, as annotators tend to
                out[name] = sorted((where[i] for i in picks), key=POSITIONS.index)
            return out

        return SceneAnnotation.build(
            image=image,
            sidewalk=sidewalk,
            road=road,
            near=objects(self.near),
            far=objects(self.far),
        )


# Fitted to ../shared/sensation/annotations.csv (first row per image; `SceneDistribution.fit`),
# counts as observed. A test checks this table against the real file.
_SENSATION_DISTRIBUTION: dict[str, Any] = {
    "layout": {
        "center/unknown": 686,
        "center/left": 675,
        "center/right": 496,
        "right/left": 417,
        "left/right": 257,
        "center/front": 138,
        "right/unknown": 137,
        "left/unknown": 107,
        "right/front": 71,
        "right/right": 63,
        "unknown/front": 60,
        "left/left": 47,
        "left/front": 45,
        "unknown/unknown": 24,
        "unknown/left": 6,
        "unknown/right": 5,
    },
    "near": {
        "obstacle": {
            "count": {0: 2413, 1: 580, 2: 197, 3: 27, 4: 11, 5: 4, 7: 2},
            "position": {"left": 413, "center": 299, "right": 421},
        },
        "person": {
            "count": {0: 2824, 1: 296, 2: 89, 3: 19, 4: 2, 5: 2, 6: 2},
            "position": {"left": 165, "center": 246, "right": 150},
        },
        "bicycle": {
            "count": {0: 3066, 1: 128, 2: 23, 3: 11, 4: 4, 5: 1, 6: 1},
            "position": {"left": 119, "center": 40, "right": 75},
        },
        "car": {
            "count": {0: 3150, 1: 74, 2: 7, 3: 3},
            "position": {"left": 40, "center": 24, "right": 33},
        },
        "traffic_sign": {
            "count": {0: 2913, 1: 297, 2: 22, 3: 2},
            "position": {"left": 127, "center": 81, "right": 139},
        },
        "traffic_light": {
            "count": {0: 3116, 1: 110, 2: 8},
            "position": {"left": 47, "center": 35, "right": 44},
        },
    },
    "far": {
        "obstacle": {
            "count": {0: 2647, 1: 498, 2: 76, 3: 9, 4: 3, 5: 1},
            "position": {"left": 308, "center": 50, "right": 336},
        },
        "person": {
            "count": {0: 3078, 1: 148, 2: 7, 3: 1},
            "position": {"left": 37, "center": 65, "right": 63},
        },
        "bicycle": {
            "count": {0: 3124, 1: 99, 2: 7, 3: 3, 4: 1},
            "position": {"left": 56, "center": 18, "right": 52},
        },
        "car": {
            "count": {0: 2327, 1: 786, 2: 94, 3: 25, 4: 1, 5: 1},
            "position": {"left": 581, "center": 64, "right": 413},
        },
        "traffic_sign": {
            "count": {0: 2993, 1: 226, 2: 15},
            "position": {"left": 116, "center": 25, "right": 115},
        },
        "traffic_light": {
            "count": {0: 3181, 1: 48, 2: 5},
            "position": {"left": 16, "center": 17, "right": 25},
        },
    },
}


def sample_scenes(
    distribution: SceneDistribution, n: int, seed: int, prefix: str = "synth"
) -> Iterator[SceneAnnotation]:
    """`n` scenes named `{prefix}_{i:06d}.png`; scene i depends only on (seed, i)."""
    for index in range(n):
        rng = np.random.default_rng([seed, index, 1])
        yield distribution.sample(rng, f"{prefix}_{index:06d}.png")


def image_seed(seed: int, index: int) -> list[int]:
    """Seed of image `index` (independent of the scene sampling stream)."""
    return [seed, index, 2]


# --- templated context captions -------------------------------------------------------------------


def scene_caption(scene: SceneAnnotation) -> str:
    """A one-sentence templated description, in the spirit of SENSATION's free-text captions."""
    where_walk = {
        "left": "on the left side of the view",
        "center": "straight ahead",
        "right": "on the right side of the view",
    }
    if scene.sidewalk in where_walk:
        first = f"A paved sidewalk runs {where_walk[scene.sidewalk]}"
    else:
        first = "There is no sidewalk, only grass"
    road = {
        "left": "with a road to the left",
        "right": "with a road to the right",
        "center": "with a road in the middle",
        "front": "and a crossing with zebra stripes ahead",
    }.get(scene.road, "and no road in sight")
    near = sum(len(v) for v in scene.near.values())
    far = sum(len(v) for v in scene.far.values())
    if near:
        tail = "; the way is partly blocked" if near > 1 else "; something is on the way"
    elif far:
        tail = "; the way is clear, with things in the distance"
    else:
        tail = "; the way is clear"
    return f"{first} {road}{tail}."


# --- the SENSATION CSV layout ------------------------------------------------------------------------


def _form_cell(positions: list[str]) -> str:
    return "-".join(p.capitalize() for p in positions) if positions else "not present"


def annotation_row(scene: SceneAnnotation) -> dict[str, str]:
    """One annotations.csv row (SENSATION column layout) for a scene; parses back to it."""
    row = {
        "image": scene.image,
        "status": "synthetic",
        "sidewalk_pos": {"unknown": "Outside"}.get(scene.sidewalk, scene.sidewalk.capitalize()),
        "road_pos": {"unknown": "Not present"}.get(scene.road, scene.road.capitalize()),
        "Object_present": "Yes" if any(scene.near.get(c) for c in OBJECT_CLASSES) else "No",
        "Object_present_outside": "Yes" if any(scene.far.get(c) for c in OBJECT_CLASSES) else "No",
    }
    for cls in FORM_CLASSES:
        row[near_column(cls)] = _form_cell(scene.near.get(cls, []))
        row[far_column(cls)] = _form_cell(scene.far.get(cls, []))
    return {column: row[column] for column in ANNOTATION_COLUMNS}


def annotations_csv_text(scenes: Iterable[SceneAnnotation]) -> str:
    """annotations.csv text for scenes."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(ANNOTATION_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for scene in scenes:
        writer.writerow(annotation_row(scene))
    return buffer.getvalue()


# --- writing a synthetic dataset ------------------------------------------------------------------

SYNTH_SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass
class SynthResult:
    """What `write_synth_dataset` wrote."""

    out_dir: Path
    counts: dict[str, int]
    scenes: dict[str, list[SceneAnnotation]]
    report: dict[str, Any]


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> dict[str, int]:
    """Rows per split: test and val rounded, the rest train (train first in index order)."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise InputError(
            f"val and test fractions must be in [0, 1) with a sum below 1; got {val_fraction} "
            f"and {test_fraction}",
            field="val_fraction",
        )
    test = round(n * test_fraction)
    val = round(n * val_fraction)
    return {"train": n - val - test, "val": val, "test": test}


def write_synth_dataset(
    out_dir: str | Path,
    n: int,
    *,
    seed: int = 0,
    distribution: SceneDistribution | None = None,
    options: RenderOptions | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    prompt: str | None = None,
    context: bool = True,
    source: str = "built-in SENSATION-like distribution",
    progress: Any = None,
) -> SynthResult:
    """Render `n` scenes into `out_dir` and write the same files as `roadscene data build`.

    Layout: `images/synth_{i:06d}.png`, `annotations.csv` (SENSATION columns), `captions.csv`
    (`image_path,target,split`; the templated caption), `bvpi_sft_{split}.jsonl`,
    `bvpi_dpo_{train,val}.jsonl`, `captions_{split}.json` and `synth_report.json`. Image paths
    in the data files are relative to `out_dir` (use it as the image root). With
    `context=False` the responses end after `Nearby:`/`Far:` (no `Context:` caption).
    `progress(k)` is called after every k images. The folder is written atomically.
    """
    from PIL import Image

    from roadscene.data.build import CaptionRow, _write_jsonl, dpo_record, sft_record
    from roadscene.io import atomic_dir, dumps_line
    from roadscene.targets import DEFAULT_PROMPT

    if n < 1:
        raise InputError(f"--n must be at least 1; got {n}", field="n")
    distribution = distribution or SceneDistribution.builtin()
    options = options or RenderOptions()
    prompt = DEFAULT_PROMPT if prompt is None else prompt
    sizes = split_sizes(n, val_fraction, test_fraction)
    split_of = [s for s in SYNTH_SPLITS for _ in range(sizes[s])]

    scenes: dict[str, list[SceneAnnotation]] = {s: [] for s in SYNTH_SPLITS}
    sft: dict[str, list[dict[str, Any]]] = {s: [] for s in SYNTH_SPLITS}
    dpo: dict[str, list[dict[str, Any]]] = {s: [] for s in ("train", "val")}
    plain: dict[str, list[dict[str, str]]] = {s: [] for s in SYNTH_SPLITS}
    captions_csv = io.StringIO(newline="")
    caption_writer = csv.writer(captions_csv, lineterminator="\n")
    caption_writer.writerow(["image_path", "target", "split"])
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        (tmp / "images").mkdir()
        for index, scene in enumerate(sample_scenes(distribution, n, seed)):
            split = split_of[index]
            pixels = render_scene(scene, image_seed(seed, index), options)
            Image.fromarray(pixels).save(tmp / "images" / scene.image, compress_level=1)
            caption = scene_caption(scene)
            row = CaptionRow(index + 2, f"images/{scene.image}", caption, split)
            record = sft_record(row, scene, prompt)
            if not context:
                record["response"] = structured_target(scene)
            scenes[split].append(scene)
            sft[split].append(record)
            plain[split].append({"image": row.image, "caption": caption})
            caption_writer.writerow([row.image, caption, split])
            if split in dpo:
                pair = dpo_record(record, caption)
                if pair is not None:
                    dpo[split].append(pair)
            if progress is not None and (index + 1) % 100 == 0:
                progress(100)
        if progress is not None and n % 100:
            progress(n % 100)
        all_scenes = [s for split in SYNTH_SPLITS for s in scenes[split]]
        (tmp / "annotations.csv").write_text(annotations_csv_text(all_scenes), encoding="utf-8")
        (tmp / "captions.csv").write_text(captions_csv.getvalue(), encoding="utf-8")
        for split in SYNTH_SPLITS:
            _write_jsonl(tmp / f"bvpi_sft_{split}.jsonl", sft[split])
            with open(tmp / f"captions_{split}.json", "w", encoding="utf-8") as handle:
                json.dump(plain[split], handle, ensure_ascii=False, indent=1)  # as `data build`
                handle.write("\n")
        for split, rows in dpo.items():
            _write_jsonl(tmp / f"bvpi_dpo_{split}.jsonl", rows)
        report = {
            "n": n,
            "seed": seed,
            "distribution": source,
            "render": options.model_dump(),
            "splits": sizes,
            "prompt": prompt,
            "context": context,
            "images_with_near_objects": sum(
                1 for s in all_scenes if any(s.near[c] for c in OBJECT_CLASSES)
            ),
        }
        with open(tmp / "synth_report.json", "w", encoding="utf-8") as handle:
            handle.write(dumps_line(report) + "\n")
    return SynthResult(out_dir=out_dir, counts=sizes, scenes=scenes, report=report)


def structured_target(scene: SceneAnnotation) -> str:
    """The published response without its `Context:` part (header, `Nearby:`, `Far:`)."""
    return render_response(scene, None)
