"""Synthetic street scenes: a scene sampler (`scenes`), a cheap deterministic renderer (`render`),
a dataset writer (`writer`), scenes rendered on the fly for training (`rendered`) and short clips
of them with moving objects (`clips`)."""

from roadscene.data.synth.clips import (
    CLIP_MOTIONS,
    ClipOptions,
    RenderedClips,
    render_clip,
    sample_motion,
)
from roadscene.data.synth.render import OBJECT_STYLES, ObjectStyle, RenderOptions, render_scene
from roadscene.data.synth.rendered import RenderedScenes
from roadscene.data.synth.scenes import (
    ClassDistribution,
    SceneDistribution,
    image_seed,
    sample_scenes,
    scene_caption,
    structured_target,
)
from roadscene.data.synth.writer import (
    SYNTH_SPLITS,
    SynthResult,
    annotation_row,
    annotations_csv_text,
    split_sizes,
    write_synth_dataset,
)

__all__ = [
    "CLIP_MOTIONS",
    "ClipOptions",
    "RenderedClips",
    "render_clip",
    "sample_motion",
    "OBJECT_STYLES",
    "SYNTH_SPLITS",
    "ClassDistribution",
    "ObjectStyle",
    "RenderOptions",
    "RenderedScenes",
    "SceneDistribution",
    "SynthResult",
    "annotation_row",
    "annotations_csv_text",
    "image_seed",
    "render_scene",
    "sample_scenes",
    "scene_caption",
    "split_sizes",
    "structured_target",
    "write_synth_dataset",
]
