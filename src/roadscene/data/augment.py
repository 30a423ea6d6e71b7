"""Weather and lighting augmentation of training examples, on the fly and seeded.

Eight image transforms (`TRANSFORMS`), each with a probability and a strength in [0, 1], drawn
from albumentations 2.0.8 (MIT; its successor `albumentationsx` is AGPL and installs under the
same import name, so it is refused), plus an optional horizontal flip that mirrors the labels
too (`mirror_example`: left and right swap in every field, object position, relation and so in
the cue). Fog is the one transform written here, as an albumentations transform drawing from
the pipeline's generators: the library's `RandomFog` blends one full-image copy per fog particle
and costs about 80 % of the whole pipeline (docs/performance.md).

Seeding: item `index` of epoch `epoch` draws everything (which transforms fire, their
parameters, the flip) from one generator pair seeded by `(seed, epoch, index)`, so the same
seed gives the same pixels whatever the DataLoader order or worker. Examples are augmented
before a family encodes them (`AugmentedExamples` wraps any sequence of examples). A clip gets
one draw for all its frames (albumentations' `images` target: the same transforms with the same
parameters on every frame, the same flip), so augmentation never fakes motion.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from roadscene.data.examples import VisionTextExample
from roadscene.errors import InputError
from roadscene.targets import mirror_response, mirror_text

if TYPE_CHECKING:
    from PIL import Image

#: The transforms in the order they are applied (camera-like: scene light, weather, optics,
#: then the codec last).
TRANSFORMS: tuple[str, ...] = (
    "color_jitter",
    "night",
    "shadow",
    "fog",
    "rain",
    "glare",
    "motion_blur",
    "jpeg",
)
ALBUMENTATIONS_VERSION = "2.0.8"
# albumentations class -> our transform name (night is three classes under one probability)
_CLASS_TRANSFORM = {
    "ColorJitter": "color_jitter",
    "RandomBrightnessContrast": "night",
    "RandomGamma": "night",
    "ISONoise": "night",
    "RandomShadow": "shadow",
    "Haze": "fog",
    "RandomRain": "rain",
    "RandomSunFlare": "glare",
    "MotionBlur": "motion_blur",
    "ImageCompression": "jpeg",
}


class TransformSettings(BaseModel):
    """One transform: how often it fires and how strong it is."""

    model_config = ConfigDict(extra="forbid")

    p: float = Field(0.0, description="Probability that the transform fires on an item.")
    strength: float = Field(0.5, description="0 = mildest, 1 = strongest setting.")

    @field_validator("p", "strength")
    @classmethod
    def _unit(cls, value: float) -> float:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"must be in [0, 1]; got {value}")
        return value


class AugmentSection(BaseModel):
    """`data.augment` of the training config (nothing is augmented by default)."""

    model_config = ConfigDict(extra="forbid")

    transforms: dict[str, TransformSettings] = Field(
        default_factory=dict,
        description=f"Transform name -> {{p, strength}}; names: {', '.join(TRANSFORMS)}.",
    )
    hflip: float = Field(
        0.0, description="Probability of a horizontal flip; the labels are mirrored with it."
    )
    seed: int | None = Field(None, description="Augmentation seed (null: the training seed).")

    @field_validator("transforms")
    @classmethod
    def _known(cls, value: dict[str, TransformSettings]) -> dict[str, TransformSettings]:
        for name in value:
            if name not in TRANSFORMS:
                raise ValueError(f"unknown transform '{name}'; allowed: {', '.join(TRANSFORMS)}")
        return value

    @field_validator("hflip")
    @classmethod
    def _unit(cls, value: float) -> float:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"must be in [0, 1]; got {value}")
        return value

    @property
    def active(self) -> bool:
        """Whether anything can change an item."""
        return self.hflip > 0 or any(t.p > 0 for t in self.transforms.values())


def weather_preset(p: float = 0.15, strength: float = 0.7) -> AugmentSection:
    """Every transform with the same probability and strength (the benchmark's setting)."""
    return AugmentSection(
        transforms={name: TransformSettings(p=p, strength=strength) for name in TRANSFORMS}
    )


def load_albumentations() -> Any:
    """The MIT albumentations module; the AGPL `albumentationsx` (same import name) is refused.

    The import never calls the network: albumentations asks PyPI for updates on import unless
    NO_ALBUMENTATIONS_UPDATE is set.
    """
    from importlib import metadata

    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    try:
        metadata.distribution("albumentationsx")
    except metadata.PackageNotFoundError:
        pass
    else:
        raise InputError(
            "albumentationsx (AGPL-3.0) is installed and replaces albumentations under the same "
            f"name; uninstall it and install albumentations=={ALBUMENTATIONS_VERSION} (MIT)"
        )
    try:
        import albumentations
    except ImportError:
        raise InputError(
            "data.augment needs albumentations; install it with pip install 'roadscene[augment]'"
        ) from None
    return albumentations


def _odd(value: float) -> int:
    value = max(3, round(value))
    return value if value % 2 else value + 1


def _haze_class(albumentations: Any) -> type:
    class Haze(albumentations.ImageOnlyTransform):
        """Fog as atmospheric scattering: blend toward a bright airlight, denser toward the top
        of the frame (farther away), with a smooth random density field."""

        def __init__(
            self, density: tuple[float, float] = (0.3, 0.6), p: float = 0.5, **kwargs: Any
        ) -> None:
            super().__init__(p=p, **kwargs)
            self.density = density

        def get_params_dependent_on_data(self, params: Any, data: Any) -> dict[str, Any]:
            return {
                "density": self.py_random.uniform(*self.density),
                "airlight": self.py_random.uniform(195.0, 235.0),
                "field": self.random_generator.random((4, 4)).astype(np.float32),
            }

        def apply(
            self, img: np.ndarray, density: float, airlight: float, field: Any, **_: Any
        ) -> np.ndarray:
            import cv2

            height, width = img.shape[:2]
            depth = np.linspace(1.0, 0.45, height, dtype=np.float32)[:, None]
            noise = cv2.resize(field, (width, height), interpolation=cv2.INTER_CUBIC)
            share = np.clip(density * depth * (0.7 + 0.6 * noise), 0.0, 0.95)[..., None]
            out = img.astype(np.float32) * (1.0 - share) + airlight * share
            return np.clip(out, 0, 255).astype(np.uint8)

        def get_transform_init_args_names(self) -> tuple[str, ...]:
            return ("density",)

    return Haze


def _transform(name: str, p: float, s: float, height: int, width: int) -> Any:
    """One transform at probability `p` and strength `s` for images of this size."""
    A = load_albumentations()
    side = min(height, width)
    if name == "color_jitter":
        return A.ColorJitter(
            brightness=0.4 * s, contrast=0.4 * s, saturation=0.4 * s, hue=0.06 * s, p=p
        )
    if name == "night":  # no single op: darker, higher gamma, sensor noise, under one probability
        return A.Sequential(
            [
                A.RandomBrightnessContrast(
                    brightness_limit=(-0.15 - 0.35 * s, -0.1 - 0.2 * s),
                    contrast_limit=(-0.3 * s, 0.0),
                    p=1.0,
                ),
                A.RandomGamma(gamma_limit=(100 + 40 * s, 100 + 120 * s), p=1.0),
                A.ISONoise(color_shift=(0.01, 0.03), intensity=(0.05, 0.05 + 0.4 * s), p=1.0),
            ],
            p=p,
        )
    if name == "shadow":
        return A.RandomShadow(
            shadow_roi=(0.0, 0.4, 1.0, 1.0),
            num_shadows_limit=(1, 1 + round(2 * s)),
            shadow_dimension=5,
            shadow_intensity_range=(0.2 + 0.3 * s, 0.3 + 0.5 * s),
            p=p,
        )
    if name == "fog":
        return _haze_class(A)(density=(0.15 + 0.3 * s, 0.25 + 0.5 * s), p=p)
    if name == "rain":
        rain_type = "drizzle" if s < 0.34 else ("heavy" if s < 0.67 else "torrential")
        return A.RandomRain(
            slant_range=(-10, 10),
            drop_width=1,
            drop_color=(200, 200, 200),
            blur_value=3,
            brightness_coefficient=1.0 - 0.3 * s,
            rain_type=rain_type,
            p=p,
        )
    if name == "glare":  # the source radius is in pixels: scale it with the image
        return A.RandomSunFlare(
            flare_roi=(0.0, 0.0, 1.0, 0.5),
            src_radius=max(4, int(max(height, width) * (0.15 + 0.35 * s))),
            num_flare_circles_range=(3, 6),
            method="overlay",
            p=p,
        )
    if name == "motion_blur":
        return A.MotionBlur(blur_limit=(3, _odd(3 + 12 * s * side / 96)), allow_shifted=True, p=p)
    if name == "jpeg":
        return A.ImageCompression(
            compression_type="jpeg", quality_range=(int(90 - 75 * s), int(95 - 50 * s)), p=p
        )
    raise ValueError(f"unknown transform '{name}'; allowed: {', '.join(TRANSFORMS)}")


@lru_cache(maxsize=32)
def _pipeline(settings: tuple[tuple[str, float, float], ...], height: int, width: int) -> Any:
    A = load_albumentations()
    chosen = {name: (p, s) for name, p, s in settings}
    steps = [
        _transform(name, *chosen[name], height, width)
        for name in TRANSFORMS
        if name in chosen and chosen[name][0] > 0
    ]
    # The seed given here is irrelevant: each item sets the generators first.
    return A.Compose(steps, p=1.0, save_applied_params=True)


def item_generators(seed: int, epoch: int, index: int) -> tuple[np.random.Generator, random.Random]:
    """The generator pair of one item: everything about it is drawn from these."""
    sequence = np.random.SeedSequence([seed, epoch, index])
    return np.random.default_rng(sequence), random.Random(int(sequence.generate_state(1)[0]))


class Augmenter:
    """Applies `section` to examples: `augment_image` for pixels, `__call__` for an example."""

    def __init__(self, section: AugmentSection, seed: int = 0) -> None:
        self.section = section
        self.seed = section.seed if section.seed is not None else seed
        self._settings = tuple(
            (name, t.p, t.strength) for name, t in sorted(section.transforms.items()) if t.p > 0
        )
        if self._settings:
            load_albumentations()  # fail now (not installed, AGPL build) rather than mid-run

    def augment_image(
        self, image: Image.Image, generators: tuple[np.random.Generator, random.Random]
    ) -> tuple[Image.Image, list[str]]:
        """The image through the pipeline, and the names of the transforms that fired."""
        from PIL import Image

        if not self._settings:
            return image, []
        pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
        pipeline = _pipeline(self._settings, *pixels.shape[:2])
        # One generator pair shared by every transform. Seeding each transform separately
        # (Compose(seed=...)) gives them identical streams, so they would all fire together.
        pipeline.set_random_state(*generators)
        out = pipeline(image=pixels)
        fired = [_CLASS_TRANSFORM[name] for name, _ in out.get("applied_transforms", [])]
        return Image.fromarray(out["image"]), list(dict.fromkeys(fired))

    def augment_frames(
        self, frames: Sequence[Image.Image], generators: tuple[np.random.Generator, random.Random]
    ) -> tuple[list[Image.Image], list[str]]:
        """A clip's frames through the pipeline with ONE draw for all of them (the same
        transforms, the same parameters on every frame), and the transforms that fired."""
        from PIL import Image

        if not self._settings:
            return list(frames), []
        pixels = np.stack([np.asarray(frame.convert("RGB"), dtype=np.uint8) for frame in frames])
        pipeline = _pipeline(self._settings, *pixels.shape[1:3])
        pipeline.set_random_state(*generators)
        out = pipeline(images=pixels)
        fired = [_CLASS_TRANSFORM[name] for name, _ in out.get("applied_transforms", [])]
        return [Image.fromarray(frame) for frame in out["images"]], list(dict.fromkeys(fired))

    def __call__(
        self, example: VisionTextExample, index: int, *, task: str, epoch: int = 0
    ) -> VisionTextExample:
        """The example as item `index` of `epoch` sees it (a new object; the input is kept)."""
        from PIL import ImageOps

        generators = item_generators(self.seed, epoch, index)
        flip = bool(generators[0].random() < self.section.hflip)
        out = mirror_example(example, task) if flip else example
        if example.clip is not None:
            frames = list(example.clip.frames)
            if flip:
                frames = [ImageOps.mirror(frame) for frame in frames]
            frames, fired = self.augment_frames(frames, generators)
            meta = {**out.meta, "augment": {"hflip": flip, "transforms": fired}}
            return replace(out, clip=example.clip.with_frames(frames), meta=meta)
        images = [ImageOps.mirror(image) for image in example.images] if flip else example.images
        augmented, fired = [], []
        for image in images:
            image, names = self.augment_image(image, generators)
            augmented.append(image)
            fired += names
        meta = {**out.meta, "augment": {"hflip": flip, "transforms": fired}}
        return replace(out, images=augmented, meta=meta)


def mirror_example(example: VisionTextExample, task: str) -> VisionTextExample:
    """The labels of the horizontally flipped image (the images themselves are not touched).

    bvpi: the structured answer rendered again from its mirrored scene; annotated: the
    annotation in the prompt and the answer (cue + context) rebuilt from the mirrored response
    (without the response, e.g. read from the conversational format: `left` and `right` swapped
    in prompt and answer); caption: `left` and `right` swapped in the text. Prompts of the other tasks carry no labels
    and stay as they are.
    """
    from roadscene.data.records import ANNOTATED_PROMPT, annotation_json

    if task == "annotated":
        response = example.meta.get("response")
        if not isinstance(response, str):  # e.g. read from the conversational format
            answer = mirror_text(example.answer) if example.answer is not None else None
            return replace(example, prompt=mirror_text(example.prompt), answer=answer)
        mirrored = mirror_response(response)
        annotation, answer = annotation_json(mirrored)
        meta = {**example.meta, "response": mirrored}
        prompt = ANNOTATED_PROMPT.format(annotation=annotation)
        return replace(example, prompt=prompt, answer=answer, meta=meta)
    if example.answer is None:
        return example
    answer = mirror_response(example.answer) if task == "bvpi" else mirror_text(example.answer)
    return replace(example, answer=answer)


class AugmentedExamples:
    """Examples augmented on the fly: item i is `augmenter(examples[i], i)` for the current
    epoch (`set_epoch`, called by the trainer at each epoch's start)."""

    def __init__(self, examples: Sequence[VisionTextExample], augmenter: Augmenter, task: str):
        self.examples = examples
        self.augmenter = augmenter
        self.task = task
        self.epoch = 0

    @property
    def prompts(self) -> list[str]:
        return list(getattr(self.examples, "prompts", []))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> VisionTextExample:
        example = self.examples[index]
        task = example.meta.get("task", self.task)
        return self.augmenter(example, index, task=task, epoch=self.epoch)
