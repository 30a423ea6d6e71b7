"""Synthetic scenes rendered on the fly: a fresh image for every index.

Rendering is cheap next to a training step (docs/performance.md), so a model never needs to see
the same image twice; item `i` is sampled and drawn from `(seed, i)` alone, so the stream is reproducible and
independent of the order in which a DataLoader asks for items. Items are
:class:`~roadscene.data.examples.VisionTextExample` s, exactly what rows read from files become.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from roadscene.data.examples import VisionTextExample
from roadscene.data.synth.render import RenderOptions, render_scene
from roadscene.data.synth.scenes import SceneDistribution, structured_target
from roadscene.schema import SceneAnnotation


class RenderedScenes:
    """A sequence of `length` freshly rendered scenes as examples (prompt + structured answer).

    `stream` separates independent streams drawn from the same seed (e.g. training vs the test
    set written to disk), so they never share an image.
    """

    def __init__(
        self,
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
        self.distribution = distribution
        self.length = length
        self.prompt = prompt
        self.seed = seed
        self.stream = stream
        self.options = options or RenderOptions()
        self.target = target

    @property
    def prompts(self) -> list[str]:
        """The prompts the examples carry (saved with a model trained on them)."""
        return [self.prompt]

    def __len__(self) -> int:
        return self.length

    def scene(self, index: int) -> SceneAnnotation:
        rng = np.random.default_rng([self.seed, self.stream, index, 1])
        return self.distribution.sample(rng, f"rendered_{self.stream}_{index:08d}.png")

    def __getitem__(self, index: int) -> VisionTextExample:
        from PIL import Image

        if not 0 <= index < self.length:
            raise IndexError(index)
        scene = self.scene(index)
        pixels = render_scene(scene, [self.seed, self.stream, index, 2], self.options)
        return VisionTextExample(
            images=[Image.fromarray(pixels)],
            prompt=self.prompt,
            answer=self.target(scene),
            image_ref=scene.image,
        )
