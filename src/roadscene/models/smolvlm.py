"""SmolVLM2 (Idefics3 architecture) through transformers: what the family is, tiny checkpoints,
encoding, the image part of a batch, and its costs for the real-size benchmark.

The real model is `HuggingFaceTB/SmolVLM2-2.2B-Instruct`. Tiny checkpoints built by `build_tiny`
use the same classes (`SmolVLMForConditionalGeneration`, `SmolVLMProcessor`) and load through
`AutoModelForImageTextToText` / `AutoProcessor` (the base class's `load`), so tests exercise the
real code path.

Chat format (the SmolVLM2 template): the generation prompt is
`<|im_start|>User:<image>{prompt}<end_of_utterance>\\nAssistant:` with `<image>` expanded by the
processor into `<fake_token_around_image><global-img><image>*N<fake_token_around_image>`; the
supervised answer is ` {answer}<end_of_utterance>`, exactly what the template renders for an
assistant turn, so training and generation see the same prompt tokens.

Clips go through the processor's own video path: `<video>` in the prompt and the sampled frames
with their metadata (`video_metadata`, `do_sample_frames=False`, so exactly those frames are
used); the processor expands `<video>` into an intro line and one `Frame from MM:SS:` block of
image tokens per frame. Frames are single tiles (never split).
"""

from __future__ import annotations

import copy
import random
import re
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from roadscene.errors import InputError
from roadscene.models.base import (
    IGNORE_INDEX,
    TINY_MARKER,
    ModelFamily,
    Sizes,
    is_model_output,
    pad_images,
)
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

DEFAULT_MODEL_ID = "HuggingFaceTB/SmolVLM2-2.2B-Instruct"
END_OF_UTTERANCE = "<end_of_utterance>"
_PROMPT_CACHE_SIZE = 4096

# SmolVLM2's chat template (as shipped with the Instruct checkpoints) with the `<video>` item
# of transformers' SmolVLM processor template (images and text render the same).
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}"
    "{% elif line['type'] == 'video' %}{{ '<video>' }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

# Special tokens the SmolVLM processor and chat template rely on.
SPECIAL_TOKENS = [
    "<|pad|>",
    "<|im_start|>",
    END_OF_UTTERANCE,
    "<image>",
    "<fake_token_around_image>",
    "<global-img>",
    "<video>",
    *[f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)],
]

# Built-in corpus for the tiny tokenizer when none is given: chat roles, the default prompts and
# every field value / object name of the target format.
_BUILTIN_CORPUS = [
    "User: Assistant: Describe this road scene.",
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


class SmolVLMSizes(Sizes):
    """A tiny SmolVLM: one square image tile of `image_size` px, no splitting;
    image tokens per image = (image_size / patch_size)^2 / scale_factor^2."""

    image_size: int = Field(96, ge=8, description="Image side in pixels (one tile).")
    patch_size: int = Field(12, ge=1, description="Vision patch size in pixels.")
    scale_factor: int = Field(2, ge=1, description="Pixel-shuffle factor of the connector.")
    vision_hidden_size: int = Field(64, ge=8, description="Vision encoder width.")
    vision_layers: int = Field(2, ge=1, description="Vision encoder layers.")
    text_hidden_size: int = Field(64, ge=8, description="Language model width.")
    text_layers: int = Field(2, ge=1, description="Language model layers.")
    num_attention_heads: int = Field(4, ge=1, description="Attention heads (vision and text).")
    vocab_size: int = Field(1000, ge=100, description="Upper bound on the BPE vocabulary.")


class SmolVLMFamily(ModelFamily):
    """SmolVLM2 via `AutoModelForImageTextToText`. LoRA by default on the text model's q/v."""

    name = "smolvlm"
    default_model_id = DEFAULT_MODEL_ID
    model_types = ("smolvlm", "idefics3")
    tiny_sizes = SmolVLMSizes
    # 16 image tokens (96 px, patch 12, scale 2), vision 128 x 3, text 192 x 3: fast enough to
    # learn the synthetic scenes from scratch on two CPU cores (docs/demo.md).
    demo_sizes: ClassVar[dict[str, Any]] = {
        "vision_hidden_size": 128,
        "vision_layers": 3,
        "text_hidden_size": 192,
        "text_layers": 3,
        "vocab_size": 600,
    }
    image_keys = ("pixel_values",)
    supports_clips = True
    # Full-match regex: only the language model's attention q/v projections, never the vision
    # tower's (`model.vision_model.encoder.layers.N.self_attn.q_proj` has the same leaf names).
    lora_target_modules = r".*\.text_model\..*\.(q_proj|v_proj)"
    vision_module_name = "model.vision_model"
    # The SigLIP encoder's layers and the Llama text model's. The model's `_no_split_modules`
    # names the vision layers' attention only, which would leave their MLPs unsharded.
    fsdp_wrap_classes = ("SmolVLMEncoderLayer", "LlamaDecoderLayer")
    recipe = "smolvlm2-2.2b-bvpi-lora.yaml"
    bench_archs: ClassVar[dict[str, str]] = {"real": "smolvlm2-2.2b", "tiny": "smolvlm2-tiny"}

    def __init__(self) -> None:
        # processor -> {(prompt text, image count): expanded prompt ids}, for one-tile processors
        self._prompt_ids: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers may pickle the dataset (and this family); the cache is rebuilt there.
        return {k: v for k, v in self.__dict__.items() if k != "_prompt_ids"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._prompt_ids = weakref.WeakKeyDictionary()

    # ----------------------------------------------------------------------------- tiny model
    def build_tiny(
        self,
        out_dir: str | Path,
        *,
        corpus: Sequence[str] | None = None,
        seed: int = 0,
        sizes: Mapping[str, Any] | None = None,
    ) -> Path:
        """Random-init SmolVLM with a BPE tokenizer trained on `corpus` (plus a built-in corpus
        covering the chat roles and target vocabulary), one image tile (see `SmolVLMSizes`)."""
        import torch
        from transformers import (
            PreTrainedTokenizerFast,
            SmolVLMConfig,
            SmolVLMForConditionalGeneration,
            SmolVLMImageProcessor,
            SmolVLMProcessor,
        )
        from transformers.models.smolvlm.video_processing_smolvlm import SmolVLMVideoProcessor

        from roadscene.io import atomic_dir, write_json
        from roadscene.models.tokenizer import train_bpe

        size = self.sizes(sizes)
        patches_per_side = size.image_size // size.patch_size
        if size.image_size % size.patch_size or patches_per_side % size.scale_factor:
            raise InputError(
                f"image_size {size.image_size} must be a multiple of patch_size "
                f"{size.patch_size} and the patch grid ({patches_per_side}) a multiple of "
                f"scale_factor {size.scale_factor}",
                field="image_size",
            )
        image_seq_len = (patches_per_side // size.scale_factor) ** 2

        random.seed(seed)
        torch.manual_seed(seed)
        # Answers follow "Assistant:" with a space, so learn merges for that form too.
        texts = [f"Assistant: {text}" for text in [*_BUILTIN_CORPUS, *(corpus or [])]]
        bpe = train_bpe(texts, vocab_size=size.vocab_size, special_tokens=SPECIAL_TOKENS)
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=bpe,
            bos_token="<|im_start|>",
            eos_token=END_OF_UTTERANCE,
            pad_token="<|pad|>",
            model_max_length=4096,
            extra_special_tokens={
                "image_token": "<image>",
                "fake_image_token": "<fake_token_around_image>",
                "global_image_token": "<global-img>",
                "end_of_utterance_token": END_OF_UTTERANCE,
            },
        )
        # One tile, no splitting: every image is resized to image_size x image_size.
        tile = {"longest_edge": size.image_size}
        image_processor = SmolVLMImageProcessor(
            size=tile, max_image_size=tile, do_image_splitting=False
        )
        video_processor = SmolVLMVideoProcessor(size=tile, max_image_size=tile)
        processor = SmolVLMProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=video_processor,
            image_seq_len=image_seq_len,
            chat_template=CHAT_TEMPLATE,
        )
        text_config = {
            "model_type": "llama",
            "vocab_size": len(tokenizer),
            "hidden_size": size.text_hidden_size,
            "intermediate_size": 4 * size.text_hidden_size,
            "num_hidden_layers": size.text_layers,
            "num_attention_heads": size.num_attention_heads,
            "num_key_value_heads": size.num_attention_heads,
            "max_position_embeddings": 4096,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "tie_word_embeddings": False,
        }
        vision_config = {
            "hidden_size": size.vision_hidden_size,
            "intermediate_size": 4 * size.vision_hidden_size,
            "num_hidden_layers": size.vision_layers,
            "num_attention_heads": size.num_attention_heads,
            "image_size": size.image_size,
            "patch_size": size.patch_size,
        }
        config = SmolVLMConfig(
            vision_config=vision_config,
            text_config=text_config,
            scale_factor=size.scale_factor,
            image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
            pad_token_id=tokenizer.pad_token_id,
        )
        model = SmolVLMForConditionalGeneration(config)
        _set_generation_tokens(model, tokenizer)

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
                    "image_seq_len": image_seq_len,
                    "vocab_size": len(tokenizer),
                    "corpus_lines": len(texts),
                },
            )
        return out_dir

    # ----------------------------------------------------------------------------- tensors
    def prompt_text(self, processor: Any, example: VisionTextExample) -> str:
        """The chat-formatted generation prompt (`<image>` / `<video>` not yet expanded)."""
        content: list[dict[str, str]] = [{"type": "image"} for _ in example.images]
        if example.clip is not None:
            content.append({"type": "video"})
        content.append({"type": "text", "text": example.prompt})
        return processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True
        )

    def _clip_inputs(
        self, processor: Any, example: VisionTextExample, prompt: str
    ) -> tuple[Any, Any]:
        """(expanded prompt ids, video processor output) of a clip example. The expanded text
        depends only on the prompt and the clip's timing (frame count, frame numbers, rate,
        length), so it is tokenised once per timing and reused; the pixels always go through
        the processor's own video processor. Checked against the full processor in tests."""
        clip = example.clip
        assert clip is not None
        frames, metadata = [list(clip.frames)], [clip.metadata()]
        cache = self._prompt_ids.setdefault(processor, {})
        key = (prompt, "clip", clip.indices, clip.fps, clip.total_frames)
        input_ids = cache.get(key)
        if input_ids is None:
            encoded = processor(
                text=[prompt],
                videos=frames,
                video_metadata=metadata,
                do_sample_frames=False,
                return_tensors="pt",
            )
            if len(cache) >= _PROMPT_CACHE_SIZE:
                cache.clear()
            cache[key] = encoded["input_ids"][0]
            return encoded["input_ids"][0], encoded
        pixels = processor.video_processor(
            videos=frames, video_metadata=metadata, do_sample_frames=False, return_tensors="pt"
        )
        return input_ids.clone(), pixels

    def clip_prompt_texts(self, frames: int, seconds: float) -> list[str]:
        from datetime import timedelta

        from num2words import num2words
        from transformers.models.smolvlm.processing_smolvlm import (
            DEFAULT_VIDEO_INTRO,
            FRAME_TIMESTAMP_MESSAGE,
        )

        intro = DEFAULT_VIDEO_INTRO.format(
            frame_count=num2words(frames), video_duration=str(timedelta(seconds=int(seconds)))
        )
        stamps = "".join(
            FRAME_TIMESTAMP_MESSAGE.format(
                timestamp=f"00:{int(i * seconds / max(frames - 1, 1)):02d}"
            )
            for i in range(frames)
        )
        return [f"User: {intro}{stamps}"]

    def encode(self, processor: Any, example: VisionTextExample) -> dict[str, torch.Tensor]:
        import torch

        prompt = self.prompt_text(processor, example)
        image_processor = processor.image_processor
        if example.clip is not None:
            input_ids, encoded = self._clip_inputs(processor, example, prompt)
        elif getattr(image_processor, "do_image_splitting", True):
            # Tiles per image depend on its size: the processor expands `<image>` per example.
            encoded = processor(text=[prompt], images=[example.images], return_tensors="pt")
            input_ids = encoded["input_ids"][0]
        else:
            # One square tile per image: the expanded prompt depends only on the text and the
            # number of images, so it is tokenised once and reused (the processor call is most
            # of the per-example cost at small image sizes); pixels still go through the
            # processor's own image processor. Checked against the full processor in tests.
            cache = self._prompt_ids.setdefault(processor, {})
            key = (prompt, len(example.images))
            input_ids = cache.get(key)
            if input_ids is None:
                encoded = processor(text=[prompt], images=[example.images], return_tensors="pt")
                input_ids = encoded["input_ids"][0]
                if len(cache) >= _PROMPT_CACHE_SIZE:
                    cache.clear()
                cache[key] = input_ids
            else:
                input_ids = input_ids.clone()
                encoded = image_processor([example.images], return_tensors="pt")
        features: dict[str, torch.Tensor] = {
            "pixel_values": encoded["pixel_values"][0],  # (N_img or N_frames, 3, H, W)
            "pixel_attention_mask": encoded["pixel_attention_mask"][0].bool(),  # (N, H, W)
        }
        if example.answer is not None:
            tokenizer = processor.tokenizer
            # Exactly what the chat template renders after "Assistant:" for an assistant turn.
            answer_ids = tokenizer(
                " " + example.answer + END_OF_UTTERANCE,
                add_special_tokens=False,
                return_tensors="pt",
            )["input_ids"][0]
            features["labels"] = torch.cat([torch.full_like(input_ids, IGNORE_INDEX), answer_ids])
            input_ids = torch.cat([input_ids, answer_ids])
        features["input_ids"] = input_ids
        features["attention_mask"] = torch.ones_like(input_ids)
        return features

    def collate_images(
        self, processor: Any, features: Sequence[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        return {
            "pixel_values": pad_images([f["pixel_values"] for f in features]),
            "pixel_attention_mask": pad_images([f["pixel_attention_mask"] for f in features]),
        }

    def stop_token_ids(self, processor: Any) -> list[int]:
        tokenizer = processor.tokenizer
        ids = [tokenizer.convert_tokens_to_ids(END_OF_UTTERANCE)]
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
            ids.append(tokenizer.eos_token_id)
        return ids

    def lora_targets(self, names: Sequence[str] | str | None, *, text_only: bool = True) -> Any:
        """PEFT `target_modules`: the default regex, `all-linear`, or `names` restricted to the
        text model when `text_only` (names are leaf module names such as `q_proj`)."""
        if names is None:
            return self.lora_target_modules
        if isinstance(names, str):
            return names  # "all-linear" or a user regex, passed to PEFT as is
        if not text_only:
            return list(names)
        alternatives = "|".join(re.escape(name) for name in names)
        return rf".*\.text_model\..*\.({alternatives})"

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
        from transformers import AutoModelForImageTextToText, SmolVLMConfig

        values = copy.deepcopy(arch.model)
        if tokenizer is not None:
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
        config = SmolVLMConfig(**values)
        with torch.device(device):  # initialised where it will run: no host copy of 4.5 GB
            model = AutoModelForImageTextToText.from_config(config, dtype=dtype or torch.float32)
        if tokenizer is not None:
            _set_generation_tokens(model, tokenizer)
        return model.to(device).eval()

    def bench_model(
        self, arch: ArchSpec, *, device: torch.device, dtype: torch.dtype, workdir: Path
    ) -> BenchModel:
        import torch

        base = self.offline_processor(workdir)
        processor = _arch_processor(base, arch)
        torch.manual_seed(0)
        model = self.model_from_arch(
            arch, tokenizer=processor.tokenizer, device=device, dtype=dtype
        )
        reduced = int(arch.bench["reduced_longest_edge"])
        return BenchModel(
            model=model,
            processor=processor,
            vision_module=model.model.vision_model,
            image_token_id=model.config.image_token_id,
            prefill_flops=prefill_flops,
            decode_step=decode_step,
            train_flops=lora_train_flops,
            processors={
                "default": (processor, int(arch.processor["longest_edge"])),
                "reduced": (_arch_processor(base, arch, reduced), reduced),
            },
        )

    def sequence_shape(self, features: dict[str, torch.Tensor]) -> SequenceShape:
        # pixel_values (N_tiles, 3, H, W) for the one image
        return SequenceShape(
            tokens=int(features["input_ids"].shape[0]),
            images=1,
            tiles=int(features["pixel_values"].shape[0]),
        )


def _set_generation_tokens(model: Any, tokenizer: Any) -> None:
    generation = model.generation_config
    generation.eos_token_id = tokenizer.eos_token_id
    generation.pad_token_id = tokenizer.pad_token_id
    generation.bos_token_id = tokenizer.bos_token_id


def _arch_processor(base_processor: Any, arch: ArchSpec, longest_edge: int | None = None) -> Any:
    """The processor with the architecture's image settings: images resized so their longest
    edge is `longest_edge` (default: the architecture's), rounded up to whole tiles, split into
    tiles plus one global tile; `image_seq_len` tokens per tile. Video frames: one tile each,
    as the real processor makes them (resized to `longest_edge`, then squashed to the tile)."""
    from transformers import SmolVLMImageProcessor
    from transformers.models.smolvlm.video_processing_smolvlm import SmolVLMVideoProcessor

    vision = arch.model["vision_config"]
    patches_per_side = vision["image_size"] // vision["patch_size"]
    settings = arch.processor
    processor = copy.copy(base_processor)
    processor.image_processor = SmolVLMImageProcessor(
        size={"longest_edge": longest_edge or settings["longest_edge"]},
        max_image_size={"longest_edge": settings["tile_size"]},
        do_image_splitting=settings.get("do_image_splitting", True),
    )
    processor.video_processor = SmolVLMVideoProcessor(
        size={"longest_edge": longest_edge or settings["longest_edge"]},
        max_image_size={"longest_edge": settings["tile_size"]},
    )
    processor.image_seq_len = patches_per_side**2 // arch.model["scale_factor"] ** 2
    return processor


# ----------------------------------------------------------------------------- costs


def prefill_flops(
    model: Any, shape: SequenceShape, *, causal: bool = True, logits_tokens: int = 1
) -> dict[str, float]:
    """FLOPs of one forward over one sequence, by part (`logits_tokens` rows of logits)."""
    base = unwrap(model)
    inner = base.model
    config = base.config
    vision = config.vision_config
    text = config.text_config
    patches = (vision.image_size // vision.patch_size) ** 2  # per tile
    tokens_per_tile = patches // config.scale_factor**2
    tiles = shape.tiles * shape.images
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    return {
        "vision": tiles
        * (
            2.0 * patches * matmul_weight_count(inner.vision_model)
            + vision.num_hidden_layers
            * attention_flops(patches, patches, vision.hidden_size, causal=False)
        ),
        "connector": 2.0 * tiles * tokens_per_tile * matmul_weight_count(inner.connector),
        "text": 2.0 * shape.tokens * matmul_weight_count(inner.text_model)
        + text.num_hidden_layers
        * attention_flops(
            shape.tokens, shape.tokens, text.num_attention_heads * head_dim, causal=causal
        ),
        "logits": 2.0 * logits_tokens * matmul_weight_count(base.lm_head),
    }


def decode_step(model: Any, *, batch: int, context: int) -> dict[str, float]:
    """Bytes read and FLOPs of one decode step for `batch` sequences of `context` cached tokens."""
    base = unwrap(model)
    text = base.config.text_config
    text_model = base.model.text_model
    element = next(text_model.parameters()).element_size()
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    kv_width = text.num_key_value_heads * head_dim
    weight_bytes = parameter_bytes(text_model, exclude=(text_model.embed_tokens,)) + (
        parameter_bytes(base.lm_head)
    )
    kv_bytes = 2 * text.num_hidden_layers * kv_width * context * element * batch
    embedding_rows = batch * text.hidden_size * element
    matmul = matmul_weight_count(text_model) + matmul_weight_count(base.lm_head)
    flops = batch * (
        2.0 * matmul
        + text.num_hidden_layers
        * attention_flops(1, context, text.num_attention_heads * head_dim, causal=False)
    )
    return {"bytes": float(weight_bytes + kv_bytes + embedding_rows), "flops": flops}


def lora_train_flops(model: Any, shape: SequenceShape) -> float:
    """Forward everywhere, backward (input gradients) through the text model and the logits
    only: the vision tower and connector are frozen and upstream of every LoRA layer. LoRA's own
    weight gradients are counted within the text model's matmul weights."""
    forward = prefill_flops(model, shape, logits_tokens=shape.tokens)
    return sum(forward.values()) + forward["text"] + forward["logits"]
