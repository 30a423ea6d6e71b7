"""Is a camera frame usable at all? Three cheap pixel measures, so a live assistant can say "camera
view unclear" instead of guessing from a frame that shows nothing.

All three are computed on the frame's luma (PIL's `L`), reduced to at most `MEASURE_WIDTH` pixels
wide with a box filter (never enlarged), so they cost well under a millisecond and do not depend
on the camera's resolution:

| measure | what it is | problem below the threshold |
| --- | --- | --- |
| `brightness` | mean luma, 0..255 | `dark`: lens covered, phone in a pocket, night |
| `contrast` | standard deviation of the luma | `uniform`: a wall, the sky, the ground up close |
| `sharpness` | variance of the 4-neighbour Laplacian of the luma | `blurred`: motion, a smeared lens |

The first failing check, in that order, names the problem. The thresholds
(:class:`FrameThresholds`) are documented with their calibration in docs/serve.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from PIL import Image

FrameProblem = Literal["dark", "uniform", "blurred"]
MEASURE_WIDTH = 160


class FrameThresholds(BaseModel):
    """Lowest acceptable values of the three measures."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_brightness: float = Field(35.0, ge=0, le=255, description="Mean luma (0..255).")
    min_contrast: float = Field(10.0, ge=0, description="Standard deviation of the luma.")
    min_sharpness: float = Field(20.0, ge=0, description="Variance of the luma's Laplacian.")


@dataclass(frozen=True)
class FrameQuality:
    """The measures of one frame and the first problem found (None: usable)."""

    brightness: float
    contrast: float
    sharpness: float
    problem: FrameProblem | None

    @property
    def usable(self) -> bool:
        return self.problem is None

    def to_dict(self) -> dict[str, float | str | bool | None]:
        return {
            "usable": self.usable,
            "problem": self.problem,
            "brightness": round(self.brightness, 1),
            "contrast": round(self.contrast, 1),
            "sharpness": round(self.sharpness, 1),
        }


def _luma(image: Image.Image) -> np.ndarray:
    from PIL import Image

    gray = image.convert("L")
    if gray.width > MEASURE_WIDTH:
        height = max(3, round(gray.height * MEASURE_WIDTH / gray.width))
        gray = gray.resize((MEASURE_WIDTH, height), Image.Resampling.BOX)
    return np.asarray(gray, dtype=np.float32)


def frame_quality(image: Image.Image, thresholds: FrameThresholds | None = None) -> FrameQuality:
    """Measure `image` and name its first problem (dark, then uniform, then blurred)."""
    limits = thresholds or FrameThresholds()
    luma = _luma(image)
    brightness = float(luma.mean())
    contrast = float(luma.std())
    if luma.shape[0] >= 3 and luma.shape[1] >= 3:
        centre = luma[1:-1, 1:-1]
        laplacian = (
            luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4.0 * centre
        )
        sharpness = float(laplacian.var())
    else:  # too small to have edges at all
        sharpness = 0.0
    problem: FrameProblem | None = None
    if brightness < limits.min_brightness:
        problem = "dark"
    elif contrast < limits.min_contrast:
        problem = "uniform"
    elif sharpness < limits.min_sharpness:
        problem = "blurred"
    return FrameQuality(brightness, contrast, sharpness, problem)
