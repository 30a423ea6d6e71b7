"""Drawing a scene: a :class:`~roadscene.schema.SceneAnnotation` becomes a small RGB image that shows
what the annotation says, so a model can learn the task from pixels without any real data.

- a perspective sidewalk (light paving) whose bottom edge sits at the left, center or right of
  the image, or no sidewalk (`unknown`);
- asphalt road to the left or right of the view (converging to the vanishing point), a crossing
  band with zebra stripes across the view (`front`), or none (`unknown`: grass);
- each object class with its own shape and colour (:data:`OBJECT_STYLES`) in the left / center /
  right column: near objects low and large, far objects just below the horizon and small; one
  shape per object, so counts are visible;
- optional lighting / weather variation (brightness, tint, fog, sensor noise) and small layout
  jitter;
- optionally one test condition on top (rain, fog, night, glare, blur: `conditions`);
- a frame of a clip (`at` < 1): the camera a little further back on its walk forward (paving
  joints shifted, close objects a little smaller) and each close object where its motion puts it
  then (`object_motion`); `at` = 1 is the still image itself.

Rendering is vectorised numpy on fixed-size pixel grids. Everything random comes from a
`numpy.random.Generator` seeded per image, so an image depends only on (scene, seed), never on
the order of rendering.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pydantic import BaseModel, Field, field_validator

from roadscene.schema import OBJECT_CLASSES, POSITIONS, SceneAnnotation


class RenderOptions(BaseModel):
    """How scenes are drawn."""

    size: int = Field(96, ge=32, le=1024, description="Image side in pixels (square images).")
    weather: bool = Field(
        True, description="Random lighting / weather (brightness, tint, fog, noise) per image."
    )
    jitter: bool = Field(True, description="Small random shifts of layout and object placement.")
    condition: str = Field(
        "clean",
        description="Test condition drawn on top: clean, rain, fog, night, glare or blur "
        "(roadscene.data.synth.conditions).",
    )

    @field_validator("condition")
    @classmethod
    def _known_condition(cls, value: str) -> str:
        from roadscene.data.synth.conditions import CONDITIONS

        if value not in CONDITIONS:
            raise ValueError(f"unknown condition '{value}'; allowed: {', '.join(CONDITIONS)}")
        return value


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
# A clip's camera walks forward: at its start (at = 0) close objects that stand still are this
# much smaller and higher, and the paving joints this many joint spacings further on.
_WALK_SCALE, _WALK_RISE, _WALK_JOINTS = 0.12, 0.03, 1.5
# How far (fraction of the width) a crossing object starts to one side. Walking pace (1.4 m/s)
# over a 2 s clip is 2.8 m, about 0.6 of the view's width at 4 m: it comes in from beyond the
# next column (or from out of view), so its own column is empty until late in the clip.
_CROSSING_SHIFT = 0.60


def object_motion(motion: str, at: float, side: float = 1.0) -> tuple[float, float, float]:
    """(scale, downward shift of its base, sideways shift) of a close object at time `at` of a
    clip (0: its start, 1: its end, where every object is where the still image has it), as
    fractions of the object's height and of the image. `side` (+1 / -1) is where a crossing
    object comes from."""
    early = 1.0 - at
    walk = 1.0 - _WALK_SCALE * early
    if motion == "approaching":  # from well down the path: small and near the horizon
        return walk * (1.0 - 0.55 * early), -0.30 * early, 0.0
    if motion == "moving away":  # from right in front: large, its base a little lower
        # (still in view: a body cut off by the image's bottom edge looked much like one
        # standing still a little higher up)
        return walk * (1.0 + 0.7 * early), 0.04 * early, 0.0
    if motion == "crossing":  # from one side, across the path
        return walk, -_WALK_RISE * early, side * _CROSSING_SHIFT * early
    return walk, -_WALK_RISE * early, 0.0


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
    moves: dict[str, tuple[float, float, float]] | None = None,
) -> None:
    """Draw objects column by column; several objects in one column share it side by side.
    `moves` (a clip's frame) scales and shifts each class's objects (`object_motion`)."""
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
            if moves is not None and cls in moves:
                scale, drop, shift = moves[cls]
                obj_height *= scale
                bottom += drop
                cx += shift
            box = _unit_box(size, cx, bottom, obj_height, style.aspect)
            if box is None:
                continue
            rows, cols, u, v = box
            patch = image[rows, cols]
            for mask, colour in _shape_masks(cls, u, v):
                patch[mask] = colour


def render_scene(
    scene: SceneAnnotation,
    seed: int | Sequence[int] = 0,
    options: RenderOptions | None = None,
    *,
    at: float = 1.0,
) -> np.ndarray:
    """Draw `scene` as an (S, S, 3) uint8 RGB array; the same (scene, seed, options, at) gives
    the same bytes. `at` < 1 draws an earlier frame of the scene's clip (module docstring): the
    same layout, lighting and objects, with the camera and the close objects (by
    `scene.motion`) where they were then."""
    options = options or RenderOptions()
    if not 0.0 <= at <= 1.0:
        raise ValueError(f"at must be in [0, 1]; got {at}")
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
        phase = np.sqrt(depth + 1e-6) * 9.0
        if at < 1.0:  # earlier in a clip, the walker had further to go
            phase = phase - _WALK_JOINTS * (1.0 - at)
        joints = walk & (np.mod(phase, 1.0) < 0.12)
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
    moves = None
    if at < 1.0:
        # where a crossing object comes from: its own draw, so the still image is unchanged
        sides = np.random.default_rng([*np.atleast_1d(seed).tolist(), 3])
        moves = {
            cls: object_motion(scene.moving(cls), at, float(sides.choice([-1.0, 1.0])))
            for cls in OBJECT_CLASSES
        }
    _draw_objects(image, scene.near, base=_NEAR_BASE, height=_NEAR_HEIGHT, rng=jitter, moves=moves)

    if options.weather:
        brightness = rng.uniform(0.72, 1.15)
        tint = rng.uniform(0.93, 1.07, 3)
        image *= brightness * tint
        fog = rng.uniform(0.0, 0.3) if rng.random() < 0.35 else 0.0
        image = image * (1.0 - fog) + 200.0 * fog
        image += rng.normal(0.0, 3.0, image.shape).astype(np.float32)
    if options.condition != "clean":
        from roadscene.data.synth.conditions import apply_condition

        # drawn after everything else, so the scene under it is the clean image's exactly
        condition_rng = np.random.default_rng(rng.integers(2**63))
        image = apply_condition(image, options.condition, condition_rng, horizon)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)
