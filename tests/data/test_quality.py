"""Frame quality: synthetic street scenes and a real photo are usable; the same frames made dark,
uniform or blurred are not, each named by its problem."""

from __future__ import annotations

import matplotlib.cbook
import numpy as np
import pytest
from PIL import Image, ImageFilter

from roadscene.data.quality import FrameThresholds, frame_quality
from roadscene.data.synth import RenderOptions, SceneDistribution, render_scene, sample_scenes


def _scenes(size: int, weather: bool = True) -> list[Image.Image]:
    scenes = sample_scenes(SceneDistribution.builtin(), 6, seed=3)
    options = RenderOptions(size=size, weather=weather)
    return [Image.fromarray(render_scene(s, i, options)) for i, s in enumerate(scenes)]


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """A real photograph shipped with matplotlib (Grace Hopper, 512 x 600)."""
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as image:
        return image.convert("RGB")


@pytest.mark.parametrize("size", [96, 160, 320, 640])
def test_synthetic_scenes_are_usable_at_any_size(size) -> None:
    for image in _scenes(size):
        quality = frame_quality(image)
        assert quality.usable, quality


def test_a_real_photo_is_usable_until_heavily_blurred(photo) -> None:
    assert frame_quality(photo).usable
    assert frame_quality(photo.filter(ImageFilter.GaussianBlur(2))).usable
    assert frame_quality(photo.filter(ImageFilter.GaussianBlur(12))).problem == "blurred"


def test_dark_frames() -> None:
    for image in _scenes(160):
        dark = Image.fromarray((np.asarray(image, dtype=np.float32) * 0.15).astype(np.uint8))
        quality = frame_quality(dark)
        assert quality.problem == "dark", quality
        assert quality.brightness < FrameThresholds().min_brightness
    assert frame_quality(Image.new("RGB", (640, 480))).problem == "dark"  # lens covered


def test_uniform_frames() -> None:
    # a grey wall, the white sky, a wall with sensor noise: bright enough, but nothing to see
    assert frame_quality(Image.new("RGB", (640, 480), (128, 128, 128))).problem == "uniform"
    assert frame_quality(Image.new("RGB", (640, 480), (250, 250, 250))).problem == "uniform"
    rng = np.random.default_rng(0)
    noisy = np.clip(rng.normal(120, 4, (480, 640, 3)), 0, 255).astype(np.uint8)
    quality = frame_quality(Image.fromarray(noisy))
    assert quality.problem == "uniform" and quality.contrast < 10


def test_blurred_frames() -> None:
    for image in _scenes(320):
        blurred = image.filter(ImageFilter.GaussianBlur(5))
        quality = frame_quality(blurred)
        assert quality.problem == "blurred", quality
        # blur, not darkness or flatness: the scene's contrast is still there
        assert quality.brightness > 60 and quality.contrast > 20


def test_thresholds_are_settings() -> None:
    image = _scenes(160)[0]
    measured = frame_quality(image)
    strict = FrameThresholds(min_sharpness=measured.sharpness + 1)
    assert frame_quality(image, strict).problem == "blurred"
    assert frame_quality(Image.new("RGB", (2, 2), (200, 10, 10))).problem == "uniform"
    assert set(measured.to_dict()) == {"usable", "problem", "brightness", "contrast", "sharpness"}
