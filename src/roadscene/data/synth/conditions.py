"""Test conditions: the same rendered scene under rain, fog, night, glare or camera blur.

These are drawn by the renderer itself (numpy, using what it knows about the scene: where the
horizon is, how far each row is), independently of the training augmentation
(`roadscene.data.augment`, albumentations), so a weather-shifted test set never evaluates the
training transform on itself. Each condition has one fixed severity, strong enough to shift the
image statistics far beyond the renderer's mild default lighting variation while a person can
still read the scene. Randomness (streak positions, the sun's place...) comes from the image's
own generator, so an image depends only on (scene, seed, condition).
"""

from __future__ import annotations

import numpy as np

#: `clean` is the renderer's default image; the others are drawn on top of it.
CONDITIONS: tuple[str, ...] = ("clean", "rain", "fog", "night", "glare", "blur")


def _rain(image: np.ndarray, rng: np.random.Generator, horizon: float) -> np.ndarray:
    """Wet, darker, lower-contrast light with bright slanted streaks in front of everything."""
    size = image.shape[0]
    out = image * 0.78 + 18.0
    slant = rng.uniform(-0.35, 0.35)
    count = int(size * size / 30)
    length = max(3, int(size * 0.09))
    xs = rng.uniform(0, size, count)
    ys = rng.uniform(-length, size, count)
    streaks = np.zeros((size, size), dtype=np.float32)
    for step in range(length):
        cols = np.clip((xs + slant * step).astype(int), 0, size - 1)
        rows = (ys + step).astype(int)
        keep = (rows >= 0) & (rows < size)
        streaks[rows[keep], cols[keep]] = 1.0
    alpha = 0.55 * streaks[..., None]
    out = out * (1 - alpha) + 215.0 * alpha
    # a film of water: the lower half (the wet ground) reflects the sky a little
    ground = np.linspace(0, 1, size, dtype=np.float32)[:, None, None] > horizon
    return np.where(ground, out * 0.9 + 12.0, out)


def _fog(image: np.ndarray, rng: np.random.Generator, horizon: float) -> np.ndarray:
    """Scattering that grows with distance: exp(-beta * d), d from the bottom row to the horizon."""
    size = image.shape[0]
    rows = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    depth = np.clip((rows - horizon) / (1.0 - horizon), 1e-3, 1.0)
    distance = np.where(rows < horizon, 8.0, 1.0 / depth)  # sky: far away
    beta = rng.uniform(0.55, 0.7)
    transmission = np.exp(-beta * distance)
    airlight = rng.uniform(185.0, 210.0)
    return image * transmission + airlight * (1.0 - transmission)


def _night(image: np.ndarray, rng: np.random.Generator, horizon: float) -> np.ndarray:
    """Little light, blue-shifted, grainy; a street lamp's pool of light on one side."""
    size = image.shape[0]
    scale = rng.uniform(0.2, 0.28)
    tint = np.array([0.8, 0.9, 1.15], dtype=np.float32)
    out = (image / 255.0) ** 1.3 * 255.0 * scale * tint
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    lamp_x = rng.choice([0.1, 0.9]) + rng.uniform(-0.05, 0.05)
    pool = np.exp(-(((xs - lamp_x) / 0.25) ** 2 + ((ys - 0.8) / 0.3) ** 2))
    out = out * (1.0 + 1.6 * pool[..., None]) + 14.0 * pool[..., None]
    return out + rng.normal(0.0, 7.0, out.shape).astype(np.float32)


def _glare(image: np.ndarray, rng: np.random.Generator, horizon: float) -> np.ndarray:
    """A low sun just above the horizon: a white disc, a veil of light that washes out contrast
    around it, and a warm cast."""
    size = image.shape[0]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    sun_x = rng.uniform(0.2, 0.8)
    sun_y = horizon - rng.uniform(0.04, 0.12)
    distance = np.hypot(xs - sun_x, ys - sun_y)
    veil = np.clip(1.0 - distance / 0.75, 0.0, 1.0) ** 1.5
    out = image * (1.0 - 0.55 * veil[..., None]) + 250.0 * 0.55 * veil[..., None]
    out = out * np.array([1.06, 1.0, 0.9], dtype=np.float32)
    disc = (distance < 0.07)[..., None]
    return np.where(disc, 255.0, out)


def _blur(image: np.ndarray, rng: np.random.Generator, horizon: float) -> np.ndarray:
    """Camera shake: a straight motion blur of about 7 % of the width in a random direction."""
    size = image.shape[0]
    length = max(3, int(round(size * 0.07)))
    angle = rng.uniform(0, np.pi)
    dx, dy = np.cos(angle), np.sin(angle)
    pad = length
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    out = np.zeros_like(image)
    for step in range(length):
        offset = step - (length - 1) / 2
        shift_x, shift_y = int(round(offset * dx)), int(round(offset * dy))
        out += padded[pad + shift_y : pad + shift_y + size, pad + shift_x : pad + shift_x + size]
    return out / length


_EFFECTS = {"rain": _rain, "fog": _fog, "night": _night, "glare": _glare, "blur": _blur}


def apply_condition(
    image: np.ndarray, condition: str, rng: np.random.Generator, horizon: float
) -> np.ndarray:
    """`image` (float RGB, 0..255) under `condition` (`clean` returns it unchanged)."""
    if condition == "clean":
        return image
    if condition not in _EFFECTS:
        raise ValueError(f"unknown condition '{condition}'; allowed: {', '.join(CONDITIONS)}")
    return _EFFECTS[condition](np.clip(image, 0.0, 255.0).astype(np.float32), rng, horizon)
