"""Synthetic clips: a scene seen while walking forward, its close people, bicycles and cars each
approaching, moving away, crossing or standing still.

A clip is `ClipOptions.frames` frames (16 at 8 fps: 2 s) of one scene rendered at times 0 ... 1
(`render_scene(..., at=t)`); its last frame is the still image of the scene, so a model shown
only that frame sees where everything is but not how it moves. The motion of each close moving
class (`MOVING_CLASSES`) is drawn uniformly from the four `MOTIONS` (standing still, approaching,
moving away, crossing) and named in the clip's answer, on its own random stream: the scene and
its pixels at the last frame are those of the still image.
`RenderedClips` renders clips on the fly for training, only the frames a model is shown, with the
timing `roadscene.data.clips` reads from a written clip, so training and prediction see the same
frames and timestamps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from roadscene.data.clips import Clip, ClipSettings, sample_indices
from roadscene.data.examples import VisionTextExample
from roadscene.data.synth.render import RenderOptions, render_scene
from roadscene.data.synth.rendered import RenderedScenes
from roadscene.data.synth.scenes import SceneDistribution, structured_target
from roadscene.schema import MOTIONS, MOVING_CLASSES, SceneAnnotation

#: What a close moving object may do: each has its motion word in a clip's answer.
CLIP_MOTIONS: tuple[str, ...] = MOTIONS


class ClipOptions(BaseModel):
    """How long synthetic clips are."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    frames: int = Field(16, ge=2, le=120, description="Frames per clip.")
    fps: int = Field(8, ge=1, le=60, description="Frames per second.")


def sample_motion(scene: SceneAnnotation, rng: np.random.Generator) -> SceneAnnotation:
    """The scene with a motion for each close moving class, uniform over `CLIP_MOTIONS`."""
    motion = {}
    for cls in MOVING_CLASSES:
        if scene.near.get(cls):
            motion[cls] = CLIP_MOTIONS[int(rng.integers(len(CLIP_MOTIONS)))]
    return SceneAnnotation.build(
        image=scene.image,
        sidewalk=scene.sidewalk,
        road=scene.road,
        near=scene.near,
        far=scene.far,
        motion=motion,
    )


def motion_seed(seed: int, index: int) -> list[int]:
    """Seed of clip `index` 's motions (apart from the scene and pixel streams)."""
    return [seed, index, 3]


def frame_time(index: int, total: int) -> float:
    """Where frame `index` of `total` lies in the clip: 0 at the first frame, 1 at the last."""
    return index / (total - 1)


def render_clip(
    scene: SceneAnnotation,
    seed: int | Sequence[int],
    options: RenderOptions | None = None,
    clip: ClipOptions | None = None,
    indices: Sequence[int] | None = None,
) -> list[np.ndarray]:
    """The clip's frames (all, or those numbered `indices`) as (S, S, 3) uint8 arrays."""
    clip = clip or ClipOptions()
    numbers = range(clip.frames) if indices is None else indices
    return [render_scene(scene, seed, options, at=frame_time(i, clip.frames)) for i in numbers]


class RenderedClips(RenderedScenes):
    """A sequence of `length` freshly rendered clips as examples (prompt + structured answer
    with motion words), sampled as `settings` says (the frames a written clip would give)."""

    clips = True  # what training checks before asking a model to take clips

    def __init__(
        self,
        distribution: SceneDistribution,
        *,
        length: int,
        prompt: str,
        seed: int = 0,
        stream: int = 7,
        options: RenderOptions | None = None,
        clip: ClipOptions | None = None,
        settings: ClipSettings | None = None,
        target: Callable[[SceneAnnotation], str] = structured_target,
    ) -> None:
        super().__init__(
            distribution,
            length=length,
            prompt=prompt,
            seed=seed,
            stream=stream,
            options=options,
            target=target,
        )
        self.clip = clip or ClipOptions()
        self.settings = settings or ClipSettings()
        self.indices = sample_indices(self.clip.frames, self.settings.frames)

    def scene(self, index: int) -> SceneAnnotation:
        rng = np.random.default_rng([self.seed, self.stream, index, 1])
        scene = self.distribution.sample(rng, f"rendered_{self.stream}_{index:08d}.webm")
        return sample_motion(scene, np.random.default_rng([self.seed, self.stream, index, 3]))

    def __getitem__(self, index: int) -> VisionTextExample:
        from PIL import Image

        if not 0 <= index < self.length:
            raise IndexError(index)
        scene = self.scene(index)
        seed = [self.seed, self.stream, index, 2]
        indices = self.indices[-1:] if self.settings.seen == "last" else self.indices
        frames = render_clip(scene, seed, self.options, self.clip, indices)
        fps = float(self.clip.fps)
        clip = Clip(
            frames=tuple(Image.fromarray(pixels) for pixels in frames),
            timestamps=tuple(i / fps for i in indices),
            indices=tuple(indices),
            fps=fps,
            total_frames=self.clip.frames,
        )
        return VisionTextExample(
            images=[],
            clip=clip,
            prompt=self.prompt,
            answer=self.target(scene),
            image_ref=scene.image,
        )
