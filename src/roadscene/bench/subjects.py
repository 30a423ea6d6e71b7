"""Models under test: a family's model built at a stored architecture with random weights, its
processor, inputs, and the cost formulas that go with it.

Everything that runs goes through the family code the real checkpoints use: the model classes
that `family.load` instantiates, and `family.encode` / `collate` / `generate` for inputs and
generation (the `roadscene predict` path). Only the weights differ: random instead of loaded.

The tokenizer is the family's locally trained tiny tokenizer (nothing comes from the hub), with
the architecture's special-token ids remapped to it; the embedding tables keep their real size,
so weights, FLOPs and memory are the real model's. Prompt lengths in text tokens differ slightly
from the real tokenizer's (about one token per word here); image token counts (which dominate
SmolVLM's prompt) are exact.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from roadscene.bench import costs
from roadscene.models import get_family
from roadscene.models.arch import ArchSpec
from roadscene.models.base import ModelFamily, VisionTextExample

#: A typical structured answer (published target format), used as the training target.
TRAINING_ANSWER = (
    "Sidewalk: center. Road: left. RoadVsSidewalk: left_of. Nearby: a person close on the left; "
    "2 cars close on the left and right. Far: a traffic light farther away on the center. "
    "Context: A narrow street with parked cars, a crossing ahead and shops on the right."
)


def bench_image(size: int, seed: int = 0) -> Any:
    """A deterministic size x size RGB noise image (content does not change the cost)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), mode="RGB")


def _family_processor(family: ModelFamily, workdir: Path) -> Any:
    """The family's own offline processor (locally trained tokenizer, chat template): built with
    `build_tiny` and read back through `family.load`, as a user's saved model would be."""
    from roadscene.targets import CAPTION_PROMPT, DEFAULT_PROMPT

    # Trained on the benchmark's own texts, the BPE merges reach about one token per word, like
    # the real tokenizers, so prompt lengths stay close to the real ones.
    corpus = [DEFAULT_PROMPT, CAPTION_PROMPT, TRAINING_ANSWER] * 8
    folder = family.build_tiny(workdir / f"{family.name}-tokenizer", seed=0, corpus=corpus)
    return family.load(folder, device="cpu", dtype=torch.float32).processor


@dataclass
class Subject:
    """One model under test and everything needed to drive and cost it."""

    arch: ArchSpec
    family: ModelFamily
    model: nn.Module
    processor: Any
    device: torch.device
    dtype: torch.dtype
    image_size: int
    #: the vision tower (timed separately inside generation)
    vision_module: nn.Module
    prefill_flops: Callable[..., dict[str, float]]
    decode_step: Callable[..., dict[str, float]]
    train_flops: Callable[..., float]
    image_token_id: int

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

    def sequence_shape(self, features: dict[str, torch.Tensor]) -> costs.SequenceShape:
        """Token / image / tile counts of one encoded example (`family.encode` output)."""
        if "pixel_values" in features:  # SmolVLM: (N_tiles, 3, H, W) for the one image
            return costs.SequenceShape(
                tokens=int(features["input_ids"].shape[0]),
                images=1,
                tiles=int(features["pixel_values"].shape[0]),
            )
        return costs.SequenceShape(  # Flamingo: vision_x (T_img, 1, 3, H, W)
            tokens=int(features["input_ids"].shape[0]),
            images=int(features["vision_x"].shape[0]),
            tiles=1,
        )

    def image_tokens(self, features: dict[str, torch.Tensor]) -> int:
        return int((features["input_ids"] == self.image_token_id).sum())

    def with_processor(self, processor: Any) -> Subject:
        return replace(self, processor=processor)


# ----------------------------------------------------------------------------- SmolVLM


def smolvlm_processor(base_processor: Any, arch: ArchSpec, longest_edge: int | None = None) -> Any:
    """The family's processor with the architecture's image settings: images resized so their
    longest edge is `longest_edge` (default: the architecture's), rounded up to whole tiles, split
    into tiles plus one global tile; `image_seq_len` tokens per tile."""
    import copy

    from transformers import SmolVLMImageProcessor

    vision = arch.model["vision_config"]
    patches_per_side = vision["image_size"] // vision["patch_size"]
    image_seq_len = patches_per_side**2 // arch.model["scale_factor"] ** 2
    settings = arch.processor
    processor = copy.copy(base_processor)
    processor.image_processor = SmolVLMImageProcessor(
        size={"longest_edge": longest_edge or settings["longest_edge"]},
        max_image_size={"longest_edge": settings["tile_size"]},
        do_image_splitting=settings.get("do_image_splitting", True),
    )
    processor.image_seq_len = image_seq_len
    return processor


def smolvlm_config(arch: ArchSpec, tokenizer: Any) -> Any:
    """`SmolVLMConfig` of the architecture with the tokenizer's special-token ids."""
    import copy

    from transformers import SmolVLMConfig

    values = copy.deepcopy(arch.model)
    text = values["text_config"]
    if len(tokenizer) > text["vocab_size"]:
        raise ValueError(
            f"tokenizer has {len(tokenizer)} tokens but the architecture's vocab_size is "
            f"{text['vocab_size']}"
        )
    text.update(
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    values["image_token_id"] = tokenizer.convert_tokens_to_ids("<image>")
    values["pad_token_id"] = tokenizer.pad_token_id
    return SmolVLMConfig(**values)


def build_smolvlm_model(config: Any, *, device: torch.device | str, dtype: torch.dtype) -> Any:
    """Random-init model of the class `SmolVLMFamily.load` instantiates
    (`AutoModelForImageTextToText`), created directly on `device` ("meta": no memory)."""
    from transformers import AutoModelForImageTextToText

    with torch.device(device):  # initialised where it will run: no host copy of 4.5 GB
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    return model.to(device).eval()


def smolvlm_subject(
    arch: ArchSpec, *, device: torch.device, dtype: torch.dtype, workdir: Path
) -> Subject:
    family = get_family("smolvlm")
    processor = smolvlm_processor(_family_processor(family, workdir), arch)
    tokenizer = processor.tokenizer
    config = smolvlm_config(arch, tokenizer)
    torch.manual_seed(0)
    model = build_smolvlm_model(config, device=device, dtype=dtype)
    generation = model.generation_config
    generation.eos_token_id = tokenizer.eos_token_id
    generation.pad_token_id = tokenizer.pad_token_id
    generation.bos_token_id = tokenizer.bos_token_id
    return Subject(
        arch=arch,
        family=family,
        model=model,
        processor=processor,
        device=device,
        dtype=dtype,
        image_size=int(arch.bench.get("image_size", 512)),
        vision_module=model.model.vision_model,
        prefill_flops=costs.smolvlm_prefill_flops,
        decode_step=costs.smolvlm_decode_step,
        train_flops=costs.smolvlm_lora_train_flops,
        image_token_id=config.image_token_id,
    )


# ----------------------------------------------------------------------------- Flamingo


def flamingo_config(arch: ArchSpec, tokenizer: Any | None = None) -> Any:
    """`FlamingoConfig` of the architecture, with the tokenizer's special-token ids if given."""
    import copy

    from roadscene.models.flamingo.configuration_flamingo import FlamingoConfig

    values = copy.deepcopy(arch.model)
    if tokenizer is not None:
        if len(tokenizer) > values["text_config"]["vocab_size"]:
            raise ValueError(
                f"tokenizer has {len(tokenizer)} tokens but the architecture's vocab_size is "
                f"{values['text_config']['vocab_size']}"
            )
        endofchunk = tokenizer.convert_tokens_to_ids("<|endofchunk|>")
        values.update(
            media_token_id=tokenizer.convert_tokens_to_ids("<image>"),
            endofchunk_token_id=endofchunk,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=endofchunk,
        )
    return FlamingoConfig(**values)


def build_flamingo_model(config: Any, *, device: torch.device | str, dtype: torch.dtype) -> Any:
    """Random-init `FlamingoForConditionalGeneration` (the class `FlamingoFamily.load` reads
    checkpoints into), created directly on `device` ("meta": no memory)."""
    from roadscene.models.flamingo.modeling_flamingo import FlamingoForConditionalGeneration

    with torch.device(device):
        model = FlamingoForConditionalGeneration(config)
    return model.to(dtype).eval()


def flamingo_subject(
    arch: ArchSpec, *, device: torch.device, dtype: torch.dtype, workdir: Path
) -> Subject:
    from roadscene.models.flamingo.processing_flamingo import (
        FlamingoProcessor,
        clip_image_processor,
    )

    family = get_family("flamingo")
    base = _family_processor(family, workdir)
    processor = FlamingoProcessor(
        base.tokenizer, clip_image_processor(int(arch.processor["image_size"]))
    )
    config = flamingo_config(arch, processor.tokenizer)
    torch.manual_seed(0)
    model = build_flamingo_model(config, device=device, dtype=dtype)
    return Subject(
        arch=arch,
        family=family,
        model=model,
        processor=processor,
        device=device,
        dtype=dtype,
        image_size=int(arch.bench.get("image_size", 512)),
        vision_module=model.vision_encoder,
        prefill_flops=costs.flamingo_prefill_flops,
        decode_step=costs.flamingo_decode_step,
        train_flops=costs.flamingo_recipe_train_flops,
        image_token_id=config.media_token_id,
    )


def build_subject(
    arch: ArchSpec, *, device: torch.device, dtype: torch.dtype, workdir: Path | None = None
) -> Subject:
    builders = {"smolvlm": smolvlm_subject, "flamingo": flamingo_subject}
    if arch.family not in builders:
        raise ValueError(
            f"no benchmark subject for family '{arch.family}'; supported: {', '.join(builders)}"
        )
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="roadscene-bench-"))
    return builders[arch.family](arch, device=device, dtype=dtype, workdir=workdir)


def meta_model(arch: ArchSpec, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The architecture on the meta device (no memory): for parameter counts and costs."""
    if arch.family == "smolvlm":
        from transformers import SmolVLMConfig

        return build_smolvlm_model(SmolVLMConfig(**arch.model), device="meta", dtype=dtype)
    if arch.family == "flamingo":
        return build_flamingo_model(flamingo_config(arch), device="meta", dtype=dtype)
    raise ValueError(f"no meta model for family '{arch.family}'; supported: smolvlm, flamingo")
