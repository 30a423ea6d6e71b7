"""Models under test: a family's model built at a stored architecture with random weights
(`family.bench_model`), its processor, inputs, and the cost formulas that go with it.

Everything that runs goes through the family code the real checkpoints use: the model classes
that `family.load` instantiates, and `family.encode` / `collate` / `generate` for inputs and
generation (the `roadscene predict` path). Only the weights differ: random instead of loaded.
The tokenizer is the family's locally trained tiny tokenizer (nothing comes from the hub), with
the architecture's special-token ids remapped to it; the embedding tables keep their real size,
so weights, FLOPs and memory are the real model's. Prompt lengths in text tokens differ slightly
from the real tokenizer's (about one token per word here); image token counts are exact.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from roadscene.data.examples import VisionTextExample
from roadscene.models import get_family
from roadscene.models.arch import ArchSpec
from roadscene.models.base import ModelFamily
from roadscene.models.costs import BenchModel, SequenceShape


def bench_image(size: int, seed: int = 0) -> Any:
    """A deterministic size x size RGB noise image (content does not change the cost)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), mode="RGB")


@dataclass
class Subject:
    """One model under test and everything needed to drive and cost it."""

    arch: ArchSpec
    family: ModelFamily
    built: BenchModel
    device: torch.device
    dtype: torch.dtype
    image_size: int

    @property
    def model(self) -> Any:
        return self.built.model

    @property
    def processor(self) -> Any:
        return self.built.processor

    def examples(
        self, count: int, *, prompt: str, answer: str | None = None
    ) -> list[VisionTextExample]:
        return [
            VisionTextExample(
                images=[bench_image(self.image_size, seed=index)],
                prompt=prompt,
                answer=answer,
                image_ref=f"bench-{index}.png",
            )
            for index in range(count)
        ]

    def clip_examples(
        self, count: int, frames: int, *, prompt: str, fps: float = 8.0
    ) -> list[VisionTextExample]:
        """`count` clips of `frames` noise frames, sampled evenly from 2 s at `fps`."""
        from roadscene.data.clips import Clip, sample_indices

        total = round(2 * fps)
        indices = tuple(sample_indices(total, frames))
        return [
            VisionTextExample(
                images=[],
                clip=Clip(
                    frames=tuple(
                        bench_image(self.image_size, seed=1000 * index + i) for i in range(frames)
                    ),
                    timestamps=tuple(i / fps for i in indices),
                    indices=indices,
                    fps=fps,
                    total_frames=total,
                ),
                prompt=prompt,
                image_ref=f"bench-clip-{index}.webm",
            )
            for index in range(count)
        ]

    def sequence_shape(self, features: dict[str, torch.Tensor]) -> SequenceShape:
        return self.family.sequence_shape(features)

    def image_tokens(self, features: dict[str, torch.Tensor], *, clip: bool = False) -> int:
        token = self.built.clip_token_id if clip else None
        token = self.built.image_token_id if token is None else token
        return int((features["input_ids"] == token).sum())

    def with_processor(self, processor: Any) -> Subject:
        return replace(self, built=replace(self.built, processor=processor))


def build_subject(
    arch: ArchSpec, *, device: torch.device, dtype: torch.dtype, workdir: Path | None = None
) -> Subject:
    family = get_family(arch.family)
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="roadscene-bench-"))
    built = family.bench_model(arch, device=device, dtype=dtype, workdir=workdir)
    return Subject(
        arch=arch,
        family=family,
        built=built,
        device=device,
        dtype=dtype,
        image_size=int(arch.bench.get("image_size", 512)),
    )


def meta_model(arch: ArchSpec, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """The architecture on the meta device (no memory): for parameter counts and costs."""
    return get_family(arch.family).model_from_arch(arch, device="meta", dtype=dtype)
