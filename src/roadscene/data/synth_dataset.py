"""A training dataset of synthetic scenes rendered on the fly: a fresh image for every index.

Rendering costs well under a millisecond per image, so a model never needs to see the same image
twice; item `i` is sampled and drawn from `(seed, i)` alone, so the stream is reproducible and
independent of the order in which a DataLoader asks for items. Items are the model family's own
`encode` features (answer-only labels), exactly what `roadscene.train` feeds from files.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from roadscene.data.synth import RenderOptions, SceneDistribution, render_scene, structured_target
from roadscene.schema import SceneAnnotation

if TYPE_CHECKING:
    import torch

    from roadscene.models.base import ModelFamily


class RenderedSceneDataset:
    """Map-style dataset (torch Dataset protocol) of `length` freshly rendered scenes.

    `stream` separates independent streams drawn from the same seed (e.g. training vs the test
    set written to disk), so they never share an image.
    """

    def __init__(
        self,
        family: ModelFamily,
        processor: Any,
        distribution: SceneDistribution,
        *,
        length: int,
        prompt: str,
        seed: int = 0,
        stream: int = 7,
        options: RenderOptions | None = None,
        target: Callable[[SceneAnnotation], str] = structured_target,
    ) -> None:
        if length < 1:
            raise ValueError(f"length must be >= 1; got {length}")
        self.family = family
        self.processor = processor
        self.distribution = distribution
        self.length = length
        self.prompt = prompt
        self.seed = seed
        self.stream = stream
        self.options = options or RenderOptions()
        self.target = target

    def __len__(self) -> int:
        return self.length

    def scene(self, index: int) -> SceneAnnotation:
        rng = np.random.default_rng([self.seed, self.stream, index, 1])
        return self.distribution.sample(rng, f"rendered_{self.stream}_{index:08d}.png")

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        from PIL import Image

        from roadscene.models.base import VisionTextExample

        if not 0 <= index < self.length:
            raise IndexError(index)
        scene = self.scene(index)
        pixels = render_scene(scene, [self.seed, self.stream, index, 2], self.options)
        example = VisionTextExample(
            images=[Image.fromarray(pixels)],
            prompt=self.prompt,
            answer=self.target(scene),
            image_ref=scene.image,
        )
        return self.family.encode(self.processor, example)
