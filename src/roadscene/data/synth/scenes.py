"""Sampling scenes: :class:`SceneDistribution` draws annotations. The built-in one is fitted to the
SENSATION annotations (their published frequencies); :meth:`SceneDistribution.fit` fits another
annotation file (`roadscene data synth --like FILE`). Also the templated context caption and the
structured target of a scene.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, field_validator

from roadscene.errors import InputError
from roadscene.schema import OBJECT_CLASSES, POSITIONS, SceneAnnotation, read_annotations_csv
from roadscene.targets import render_response


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

    def with_object_rate(
        self, rate: float, classes: Sequence[str] = OBJECT_CLASSES
    ) -> SceneDistribution:
        """A copy in which a scene has at least one near object of `classes` (default: any)
        with probability about `rate` (each such class's P(count > 0) scaled by one common
        factor), e.g. to oversample objects for training. Shapes of the count and position
        distributions are kept."""
        if not 0.0 < rate < 1.0:
            raise ValueError(f"object rate must be in (0, 1); got {rate}")
        chosen = [name for name in self.near if name in classes]
        empty = np.prod([self.near[name].count.get(0, 0.0) for name in chosen])
        target_empty = 1.0 - rate
        # find a common factor f on P(count > 0) so that prod(1 - f * p_i) = target_empty
        present = np.array([1.0 - self.near[name].count.get(0, 0.0) for name in chosen])
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
            if name not in chosen:
                near[name] = dist
                continue
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


def structured_target(scene: SceneAnnotation) -> str:
    """The published response without its `Context:` part (header, `Nearby:`, `Far:`)."""
    return render_response(scene, None)
