"""Qwen3-VL (`Qwen/Qwen3-VL-2B-Instruct`) through transformers: what the family is, tiny
checkpoints, encoding, the image part of a batch, and its costs for the real-size benchmark.

Architecture: a ViT (patch 16, 2-frame temporal patches, 2D rotary positions) whose 2 x 2
neighbouring patches are merged into one language token, DeepStack features of some vision
layers added to the first language layers, and a Qwen3 language model with interleaved
multimodal rotary positions (t, h, w). An image of H x W pixels costs (H/32) x (W/32) tokens,
so token counts follow the image's own aspect ratio.

Chat format (the Qwen3-VL Instruct template; no default system prompt): the generation prompt is
`<|im_start|>user\\n<|vision_start|><|image_pad|><|vision_end|>{prompt}<|im_end|>\\n<|im_start|>
assistant\\n` with `<|image_pad|>` expanded by the processor to one token per merged patch; the
supervised answer is `{answer}<|im_end|>`, exactly what the template renders for an assistant
turn. A clip goes through the processor's own video path: `<|vision_start|><|video_pad|>
<|vision_end|>` in the prompt and the sampled frames with their metadata (`video_metadata`,
`do_sample_frames=False`); each pair of frames is one temporal patch group with its `<t seconds>`
timestamp (an odd frame count repeats the last frame, as the processor does; a one-frame clip,
the last-frame control, fills its one group with that frame twice, as a still image does). Tiny
checkpoints use the same classes (`Qwen3VLForConditionalGeneration`, `Qwen3VLProcessor` with
`Qwen2VLImageProcessor`, `Qwen2Tokenizer`) and load through the base class's
`AutoModelForImageTextToText` / `AutoProcessor` path.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, model_validator

from roadscene.models.base import IGNORE_INDEX, TINY_MARKER, ModelFamily, Sizes, is_model_output
from roadscene.models.costs import (
    BenchModel,
    SequenceShape,
    attention_flops,
    matmul_weight_count,
    parameter_bytes,
    unwrap,
)

if TYPE_CHECKING:
    import torch

    from roadscene.data.examples import VisionTextExample
    from roadscene.models.arch import ArchSpec

DEFAULT_MODEL_ID = "Qwen/Qwen3-VL-2B-Instruct"
IM_END = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"
# Qwen's special tokens in the real vocabulary's order (ids 151643..151656 there, 0..13 here).
SPECIAL_TOKENS = [
    END_OF_TEXT,
    "<|im_start|>",
    IM_END,
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# Qwen2/3's pre-tokenizer: words, single digits, punctuation runs and newlines split apart.
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# The Qwen3-VL Instruct chat template without its tool-calling branches.
CHAT_TEMPLATE = (
    "{%- if messages[0].role == 'system' %}{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0].content is string %}{{- messages[0].content }}"
    "{%- else %}{%- for content in messages[0].content %}"
    "{%- if 'text' in content %}{{- content.text }}{%- endif %}{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'user' or message.role == 'assistant' %}"
    "{{- '<|im_start|>' + message.role + '\\n' }}"
    "{%- if message.content is string %}{{- message.content }}"
    "{%- else %}{%- for content in message.content %}"
    "{%- if content.type == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif content.type == 'video' or 'video' in content %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{%- elif 'text' in content %}{{- content.text }}{%- endif %}"
    "{%- endfor %}{%- endif %}{{- '<|im_end|>\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
# Built-in corpus for the tiny tokenizer: chat roles and the target format's vocabulary.
_BUILTIN_CORPUS = [
    "user\nassistant\nsystem\nDescribe this road scene.",
    "Sidewalk: left. Road: right. RoadVsSidewalk: right_of. Nearby: no important close objects "
    "visible.",
    "Sidewalk: center. Road: front. RoadVsSidewalk: crossing_front. Nearby: a person close on the "
    "left; 2 cars close on the left and right. Far: an obstacle farther away on the center.",
    "Sidewalk: right. Road: left. RoadVsSidewalk: left_of. Nearby: a bicycle close on the right; "
    "3 obstacles close across the left, center, and right. Far: a traffic sign farther away on "
    "the left; 2 traffic lights farther away on the right.",
    "Sidewalk: unknown. Road: unknown. RoadVsSidewalk: unknown. Context: A street with people, "
    "bicycles, cars, traffic signs and traffic lights.",
]
PATCH = 16  # vision patch size (pixels)
MERGE = 2  # spatial merge: MERGE x MERGE patches -> one language token
TEMPORAL = 2  # frames per temporal patch group
IMAGE_MEAN = [0.5, 0.5, 0.5]


class Qwen3VLSizes(Sizes):
    """A tiny Qwen3-VL. Images are resized to about `image_size`^2 pixels (aspect ratio kept,
    sides multiples of 32), so a square image costs (image_size / 32)^2 tokens."""

    image_size: int = Field(64, ge=32, description="Image side in pixels (multiple of 32).")
    vision_hidden_size: int = Field(64, ge=16, description="Vision encoder width.")
    vision_layers: int = Field(2, ge=1, description="Vision encoder layers.")
    vision_heads: int = Field(2, ge=1, description="Vision attention heads.")
    text_hidden_size: int = Field(64, ge=16, description="Language model width.")
    text_layers: int = Field(2, ge=1, description="Language model layers.")
    num_attention_heads: int = Field(2, ge=1, description="Language attention heads.")
    num_key_value_heads: int = Field(1, ge=1, description="Language key/value heads.")
    vocab_size: int = Field(1000, ge=100, description="Upper bound on the BPE vocabulary.")

    @model_validator(mode="after")
    def _consistent(self) -> Qwen3VLSizes:
        if self.image_size % (PATCH * MERGE):
            raise ValueError(f"image_size must be a multiple of {PATCH * MERGE}")
        if (self.vision_hidden_size // self.vision_heads) % 4:
            raise ValueError("vision head size (width / heads) must be a multiple of 4")
        if (
            self.text_hidden_size % self.num_attention_heads
            or (self.text_hidden_size // self.num_attention_heads) % 4
        ):
            raise ValueError("text head size (width / heads) must be a whole multiple of 4")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        return self


def mrope_section(head_dim: int) -> list[int]:
    """How the rotary frequencies of one head are shared by time, height and width: the real
    model's 24:20:20 split of its 64 frequency pairs, scaled to `head_dim` (must sum to
    head_dim / 2; transformers does not check it)."""
    pairs = head_dim // 2
    spatial = round(pairs * 20 / 64)
    return [pairs - 2 * spatial, spatial, spatial]


class Qwen3VLFamily(ModelFamily):
    """Qwen3-VL via `AutoModelForImageTextToText`. LoRA by default on the language model's q/v."""

    name = "qwen3vl"
    default_model_id = DEFAULT_MODEL_ID
    model_types = ("qwen3_vl",)
    tiny_sizes = Qwen3VLSizes
    # 96 px scenes -> 9 image tokens; widths like the SmolVLM demo model's.
    demo_sizes: ClassVar[dict[str, Any]] = {
        "image_size": 96,
        "vision_hidden_size": 128,
        "vision_layers": 3,
        "vision_heads": 4,
        "text_hidden_size": 192,
        "text_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 600,
    }
    image_keys = ("pixel_values", "pixel_values_videos")
    token_keys = ("mm_token_type_ids",)
    supports_clips = True
    # Full match: only the language model's attention q/v, never the vision tower's `attn.qkv`.
    lora_target_modules = r"model\.language_model\.layers\.\d+\.self_attn\.(q_proj|v_proj)"
    vision_module_name = "model.visual"
    fsdp_wrap_classes = ("Qwen3VLVisionBlock", "Qwen3VLTextDecoderLayer")
    recipe = "qwen3-vl-2b-bvpi-lora.yaml"
    bench_archs: ClassVar[dict[str, str]] = {"real": "qwen3-vl-2b", "tiny": "qwen3-vl-tiny"}

    # ----------------------------------------------------------------------------- tiny model
    def build_tiny(
        self,
        out_dir: str | Path,
        *,
        corpus: Sequence[str] | None = None,
        seed: int = 0,
        sizes: Mapping[str, Any] | None = None,
    ) -> Path:
        """Random-init Qwen3-VL with a BPE tokenizer (Qwen's pre-tokenizer) trained on `corpus`
        plus a built-in corpus of the chat roles and target vocabulary (see `Qwen3VLSizes`)."""
        import torch
        from transformers import (
            GenerationConfig,
            Qwen2Tokenizer,
            Qwen3VLConfig,
            Qwen3VLForConditionalGeneration,
        )

        from roadscene.io import atomic_dir, write_json
        from roadscene.models.tokenizer import train_bpe

        size = self.sizes(sizes)
        torch.manual_seed(seed)
        texts = [*_BUILTIN_CORPUS, *(corpus or [])]
        bpe = train_bpe(
            texts,
            vocab_size=size.vocab_size,
            special_tokens=SPECIAL_TOKENS,
            split_pattern=SPLIT_PATTERN,
        )
        model_json = json.loads(bpe.to_str())["model"]
        merges = [
            tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model_json["merges"]
        ]
        tokenizer = Qwen2Tokenizer(
            vocab=model_json["vocab"],
            merges=merges,
            unk_token=None,
            bos_token=None,
            eos_token=IM_END,
            pad_token=END_OF_TEXT,
            extra_special_tokens=[t for t in SPECIAL_TOKENS if t not in (END_OF_TEXT, IM_END)],
            model_max_length=32768,
        )
        pixels = size.image_size**2
        processor = _processor(tokenizer, min_pixels=pixels, max_pixels=pixels)
        text_head = size.text_hidden_size // size.num_attention_heads
        ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
        config = Qwen3VLConfig(
            image_token_id=ids["<|image_pad|>"],
            video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"],
            vision_end_token_id=ids["<|vision_end|>"],
            tie_word_embeddings=True,
            text_config={
                "vocab_size": len(tokenizer),
                "hidden_size": size.text_hidden_size,
                "intermediate_size": 3 * size.text_hidden_size,
                "num_hidden_layers": size.text_layers,
                "num_attention_heads": size.num_attention_heads,
                "num_key_value_heads": size.num_key_value_heads,
                "head_dim": text_head,
                "max_position_embeddings": 32768,
                "tie_word_embeddings": True,
                "bos_token_id": ids[END_OF_TEXT],
                "eos_token_id": ids[IM_END],
                "pad_token_id": ids[END_OF_TEXT],
                "rope_parameters": {
                    "rope_type": "default",
                    "rope_theta": 5000000,
                    "mrope_section": mrope_section(text_head),
                    "mrope_interleaved": True,
                },
            },
            vision_config={
                "depth": size.vision_layers,
                "hidden_size": size.vision_hidden_size,
                "intermediate_size": 2 * size.vision_hidden_size,
                "num_heads": size.vision_heads,
                "patch_size": PATCH,
                "spatial_merge_size": MERGE,
                "temporal_patch_size": TEMPORAL,
                "out_hidden_size": size.text_hidden_size,
                # a square grid of learned positions, resampled to each image's patch grid
                "num_position_embeddings": (size.image_size // PATCH) ** 2,
                # DeepStack: features of the last vision layers go into the first text layers
                "deepstack_visual_indexes": list(
                    range(max(size.vision_layers - size.text_layers, 0), size.vision_layers)
                )[: size.text_layers],
            },
        )
        model = Qwen3VLForConditionalGeneration(config)
        model.generation_config = GenerationConfig(
            bos_token_id=ids[END_OF_TEXT],
            eos_token_id=[ids[IM_END], ids[END_OF_TEXT]],
            pad_token_id=ids[END_OF_TEXT],
            do_sample=False,
        )
        out_dir = Path(out_dir)
        with atomic_dir(out_dir, ours=is_model_output, what="a model folder") as tmp:
            model.save_pretrained(tmp)
            processor.save_pretrained(tmp)
            write_json(
                tmp / TINY_MARKER,
                {
                    "family": self.name,
                    "seed": seed,
                    **size.model_dump(),
                    "image_tokens": (size.image_size // (PATCH * MERGE)) ** 2,
                    "vocab_size": len(tokenizer),
                    "corpus_lines": len(texts),
                },
            )
        return out_dir

    # ----------------------------------------------------------------------------- tensors
    def prompt_text(self, processor: Any, example: VisionTextExample) -> str:
        """The chat-formatted generation prompt (`<|image_pad|>` / `<|video_pad|>` not yet
        expanded)."""
        content: list[dict[str, str]] = [{"type": "image"} for _ in example.images]
        if example.clip is not None:
            content.append({"type": "video"})
        content.append({"type": "text", "text": example.prompt})
        return processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True
        )

    def encode(self, processor: Any, example: VisionTextExample) -> dict[str, torch.Tensor]:
        """input_ids / attention_mask / mm_token_type_ids (T,), labels (T,) on `answer<|im_end|>`
        only; pixel_values (patches, 3 * 2 * 16 * 16) and image_grid_thw (N_img, 3), or for a
        clip pixel_values_videos and video_grid_thw (1, 3)."""
        import torch

        clip = example.clip
        if clip is not None and len(clip.frames) < TEMPORAL:
            # The video processor refuses fewer frames than one temporal group; its image
            # processor fills the group of a still image with that image, and so does this.
            clip = replace(
                clip,
                frames=clip.frames * TEMPORAL,
                timestamps=clip.timestamps * TEMPORAL,
                indices=clip.indices * TEMPORAL,
            )
        encoded = processor(
            text=[self.prompt_text(processor, example)],
            images=list(example.images) or None,
            videos=[list(clip.frames)] if clip is not None else None,
            video_metadata=[clip.metadata()] if clip is not None else None,
            do_sample_frames=False,
            return_tensors="pt",
        )
        input_ids = encoded["input_ids"][0]
        token_types = encoded["mm_token_type_ids"][0]
        features: dict[str, torch.Tensor] = {}
        if example.images:
            features["pixel_values"] = encoded["pixel_values"]  # (patches, 1536)
            features["image_grid_thw"] = encoded["image_grid_thw"]  # (N_img, 3)
        if clip is not None:
            features["pixel_values_videos"] = encoded["pixel_values_videos"]  # (patches, 1536)
            features["video_grid_thw"] = encoded["video_grid_thw"]  # (1, 3)
        if example.answer is not None:
            # Exactly what the chat template renders after "<|im_start|>assistant\n" (the
            # newline after <|im_end|> belongs to the next turn and is not supervised).
            answer_ids = processor.tokenizer(
                example.answer + IM_END, add_special_tokens=False, return_tensors="pt"
            )["input_ids"][0]
            features["labels"] = torch.cat([torch.full_like(input_ids, IGNORE_INDEX), answer_ids])
            input_ids = torch.cat([input_ids, answer_ids])
            token_types = torch.cat([token_types, torch.zeros_like(answer_ids)])
        features["input_ids"] = input_ids
        features["attention_mask"] = torch.ones_like(input_ids)
        features["mm_token_type_ids"] = token_types
        return features

    def collate_images(
        self, processor: Any, features: Sequence[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """Patches of every image (and clip) of the batch, concatenated in example order, with
        their grids (the model splits them back by `image_grid_thw` / `video_grid_thw`)."""
        import torch

        batch: dict[str, torch.Tensor] = {}
        for pixels, grid in (
            ("pixel_values", "image_grid_thw"),
            ("pixel_values_videos", "video_grid_thw"),
        ):
            having = [f for f in features if pixels in f]
            if having:
                batch[pixels] = torch.cat([f[pixels] for f in having])
                batch[grid] = torch.cat([f[grid] for f in having])
        return batch

    def stop_token_ids(self, processor: Any) -> list[int]:
        tokenizer = processor.tokenizer
        return [
            tokenizer.convert_tokens_to_ids(IM_END),
            tokenizer.convert_tokens_to_ids(END_OF_TEXT),
        ]

    def lora_targets(self, names: Sequence[str] | str | None, *, text_only: bool = True) -> Any:
        """PEFT `target_modules`: the default regex, `all-linear`, or `names` restricted to the
        language model when `text_only` (names are leaf module names such as `q_proj`)."""
        if names is None:
            return self.lora_target_modules
        if isinstance(names, str) or not text_only:
            return names if isinstance(names, str) else list(names)
        alternatives = "|".join(re.escape(name) for name in names)
        return rf"model\.language_model\..*\.({alternatives})"

    # ----------------------------------------------------------------------------- benchmark
    def model_from_arch(
        self,
        arch: ArchSpec,
        *,
        tokenizer: Any = None,
        device: torch.device | str = "meta",
        dtype: torch.dtype | None = None,
    ) -> Any:
        import torch
        from transformers import AutoModelForImageTextToText, Qwen3VLConfig

        values = copy.deepcopy(arch.model)
        if tokenizer is not None:
            text = values["text_config"]
            if len(tokenizer) > text["vocab_size"]:
                raise ValueError(
                    f"tokenizer has {len(tokenizer)} tokens but the architecture's vocab_size is "
                    f"{text['vocab_size']}"
                )
            ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
            values.update(
                image_token_id=ids["<|image_pad|>"],
                video_token_id=ids["<|video_pad|>"],
                vision_start_token_id=ids["<|vision_start|>"],
                vision_end_token_id=ids["<|vision_end|>"],
            )
            text.update(
                bos_token_id=ids[END_OF_TEXT],
                eos_token_id=ids[IM_END],
                pad_token_id=ids[END_OF_TEXT],
            )
        config = Qwen3VLConfig(**values)
        with torch.device(device):
            model = AutoModelForImageTextToText.from_config(config, dtype=dtype or torch.float32)
        return model.to(device).eval()

    def bench_model(
        self, arch: ArchSpec, *, device: torch.device, dtype: torch.dtype, workdir: Path
    ) -> BenchModel:
        import torch

        tokenizer = self.offline_processor(workdir).tokenizer
        settings = arch.processor
        processor = _processor(
            tokenizer, min_pixels=settings["min_pixels"], max_pixels=settings["max_pixels"]
        )
        torch.manual_seed(0)
        model = self.model_from_arch(arch, tokenizer=tokenizer, device=device, dtype=dtype)
        return BenchModel(
            model=model,
            processor=processor,
            vision_module=model.model.visual,
            image_token_id=model.config.image_token_id,
            prefill_flops=prefill_flops,
            decode_step=decode_step,
            train_flops=lora_train_flops,
            processors={"default": (processor, None)},
            clip_token_id=model.config.video_token_id,
        )

    def sequence_shape(self, features: dict[str, torch.Tensor]) -> SequenceShape:
        # `tiles` counts the vision encoder's inputs per image: its 16 px patches (a clip is
        # one image of all its temporal patch groups).
        grids = features.get("image_grid_thw", features.get("video_grid_thw"))  # (N, 3)
        images = int(grids.shape[0])
        return SequenceShape(
            tokens=int(features["input_ids"].shape[0]),
            images=images,
            tiles=int(grids.prod(dim=-1).sum()) // max(images, 1),
        )


def _processor(tokenizer: Any, *, min_pixels: int, max_pixels: int) -> Any:
    """Qwen3-VL's processor: images resized (aspect ratio kept, sides multiples of 32) to a pixel
    count within [min_pixels, max_pixels], 16 px patches in 2-frame temporal groups, mean/std
    0.5; video frames passed as given (no resampling of frames)."""
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    common = {
        "patch_size": PATCH,
        "temporal_patch_size": TEMPORAL,
        "merge_size": MERGE,
        "image_mean": IMAGE_MEAN,
        "image_std": IMAGE_MEAN,
    }
    image_processor = Qwen2VLImageProcessor(
        **common, size={"shortest_edge": min_pixels, "longest_edge": max_pixels}
    )
    video_processor = Qwen3VLVideoProcessor(
        **common,
        size={"shortest_edge": min_pixels, "longest_edge": 8 * max_pixels},
        do_sample_frames=False,
        cap_pixels_per_frame=False,
        fps=2,
    )
    return Qwen3VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )


# ----------------------------------------------------------------------------- costs


def prefill_flops(
    model: Any, shape: SequenceShape, *, causal: bool = True, logits_tokens: int = 1
) -> dict[str, float]:
    """FLOPs of one forward over one sequence, by part (`shape.tiles` = patches per image)."""
    base = unwrap(model)
    inner = base.model
    config = base.config
    vision = config.vision_config
    text = config.text_config
    patches = shape.tiles * shape.images
    mergers = [inner.visual.merger, *inner.visual.deepstack_merger_list]
    blocks_flops = 2.0 * patches * matmul_weight_count(inner.visual, exclude=tuple(mergers))
    # attention runs within each image (full, not causal) over its own patches
    vision_attention = (
        shape.images
        * vision.depth
        * attention_flops(shape.tiles, shape.tiles, vision.hidden_size, causal=False)
    )
    merged = patches // (vision.spatial_merge_size**2)
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    return {
        "vision": blocks_flops + vision_attention,
        "connector": 2.0 * merged * sum(matmul_weight_count(m) for m in mergers),
        "text": 2.0 * shape.tokens * matmul_weight_count(inner.language_model)
        + text.num_hidden_layers
        * attention_flops(
            shape.tokens, shape.tokens, text.num_attention_heads * head_dim, causal=causal
        ),
        "logits": 2.0 * logits_tokens * base.lm_head.weight.numel(),
    }


def decode_step(model: Any, *, batch: int, context: int) -> dict[str, float]:
    """Bytes read and FLOPs of one decode step for `batch` sequences of `context` cached tokens."""
    base = unwrap(model)
    text = base.config.text_config
    language = base.model.language_model
    element = next(language.parameters()).element_size()
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    kv_width = text.num_key_value_heads * head_dim
    # The tied embedding is read whole by the logits; its lookup row is negligible.
    weight_bytes = parameter_bytes(language)
    kv_bytes = 2 * text.num_hidden_layers * kv_width * context * element * batch
    matmul = matmul_weight_count(language) + base.lm_head.weight.numel()
    flops = batch * (
        2.0 * matmul
        + text.num_hidden_layers
        * attention_flops(1, context, text.num_attention_heads * head_dim, causal=False)
    )
    return {"bytes": float(weight_bytes + kv_bytes), "flops": flops}


def lora_train_flops(model: Any, shape: SequenceShape) -> float:
    """Forward everywhere, backward (input gradients) through the language model and the
    logits only: the vision tower and mergers are frozen and upstream of every LoRA layer."""
    forward = prefill_flops(model, shape, logits_tokens=shape.tokens)
    return sum(forward.values()) + forward["text"] + forward["logits"]
