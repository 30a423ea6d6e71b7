"""OpenFlamingo as a roadscene model family: loading, tiny checkpoints, encoding (answer-only
labels, few-shot demonstrations), padding and generation.

Prompt formats (OpenFlamingo's conventions, docs/flamingo.md):
- caption task (the example's prompt is `targets.CAPTION_PROMPT`): `<image>Output:{caption}<|endofchunk|>`;
- every other prompt: `<image>User: {prompt}\\nAssistant: {answer}<|endofchunk|>`.
Few-shot: the demonstrations (image + answer, same format) joined by `\\n`, then the query.
`vision_x` holds the demonstration images in order, then the query's image(s).

A clip is one media of F frames (one `<image>` token, `vision_x` (1, F, 3, H, W)), as
OpenFlamingo takes video: the perceiver sees all its frames at once, told apart by learned frame
embeddings (`FlamingoConfig.max_num_frames`). A model without them (the published checkpoints)
cannot order a clip's frames and refuses clips (`check_clips`); training on clips adds them,
zero-initialised, so still images are encoded as before (`prepare_for_clips`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from roadscene.data.examples import VisionTextExample
from roadscene.errors import InputError
from roadscene.models.base import (
    IGNORE_INDEX,
    ImageEmbedder,
    LoadedModel,
    ModelFamily,
    Quantization,
    Sizes,
    loading_errors,
    resolve_device,
)
from roadscene.models.flamingo.recipe import FlamingoTrainingSection
from roadscene.targets import CAPTION_PROMPT

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from roadscene.models.arch import ArchSpec
    from roadscene.models.costs import BenchModel, SequenceShape
    from roadscene.models.finetune import FinetuneSection
    from roadscene.models.flamingo.processing_flamingo import FlamingoProcessor

DEMONSTRATION_SEPARATOR = "\n"


def _prompt_parts(example: VisionTextExample) -> tuple[str, str | None]:
    """(text up to where the answer starts, answer text including the end-of-chunk token)."""
    from roadscene.models.flamingo.processing_flamingo import ENDOFCHUNK, MEDIA_TOKEN

    media = MEDIA_TOKEN * (1 if example.clip is not None else len(example.images))
    if example.prompt.strip() == CAPTION_PROMPT:
        prefix = f"{media}Output:"
        answer = None if example.answer is None else f"{example.answer}{ENDOFCHUNK}"
    else:
        prefix = f"{media}User: {example.prompt}\nAssistant:"
        answer = None if example.answer is None else f" {example.answer}{ENDOFCHUNK}"
    return prefix, answer


def demonstrations_of(example: VisionTextExample) -> list[VisionTextExample]:
    demonstrations = list(getattr(example, "demonstrations", None) or [])
    for demonstration in demonstrations:
        if demonstration.answer is None:
            raise ValueError(f"demonstration {demonstration.image_ref!r} has no answer")
    return demonstrations


def prompt_text(example: VisionTextExample) -> str:
    """The full generation prompt: demonstrations, then the query without its answer."""
    pieces = []
    for demonstration in demonstrations_of(example):
        prefix, answer = _prompt_parts(demonstration)
        pieces.append(prefix + (answer or ""))
    pieces.append(_prompt_parts(replace(example, answer=None))[0])
    return DEMONSTRATION_SEPARATOR.join(pieces)


class FlamingoSizes(Sizes):
    """A tiny Flamingo: tiny CLIP vision tower, perceiver and MosaicGPT (random init)."""

    image_size: int = Field(32, ge=8, description="Image side in pixels.")
    patch_size: int = Field(8, ge=1, description="Vision patch size in pixels.")
    vision_hidden_size: int = Field(32, ge=8, description="Vision tower width.")
    vision_layers: int = Field(2, ge=1, description="Vision tower layers.")
    text_hidden_size: int = Field(64, ge=8, description="Language model width.")
    text_layers: int = Field(2, ge=1, description="Language model layers.")
    num_latents: int = Field(8, ge=1, description="Perceiver latents per image.")
    gate_init: float = Field(0.0, description="Initial value of every tanh gate.")
    max_frames: int | None = Field(
        None, ge=1, le=64, description="Frame embeddings for clips of up to this many frames."
    )


class FlamingoFamily(ModelFamily):
    """OpenFlamingo-3B (CLIP ViT-L/14 + MPT-1B), native. Trains the perceiver, the gated
    cross-attention and the two new token rows (see `roadscene.models.flamingo.training`)."""

    name = "flamingo"
    # No hub repository holds the assembled model: `roadscene model convert-openflamingo`.
    default_model_id = "models/openflamingo-3b"
    model_types = ("flamingo",)
    tiny_sizes = FlamingoSizes
    # The same 96 px scenes (8 x 8 patches of 12 px) into a small CLIP tower and perceiver; the
    # language model stays frozen as in the Flamingo recipe, so it is kept narrow (what learns
    # is the perceiver and the gated cross-attention).
    demo_sizes: ClassVar[dict[str, Any]] = {
        "image_size": 96,
        "patch_size": 12,
        "vision_hidden_size": 64,
        "vision_layers": 2,
        "text_hidden_size": 128,
        "text_layers": 2,
        "num_latents": 16,
    }
    demo_finetune = None  # the recipe decides what trains
    # With a `finetune` section: PEFT adapters (models/flamingo/adapters.py); without one, the
    # published recipe.
    finetune_methods = ("lora", "qlora")
    lora_modules_to_save = ("perceiver",)
    preference_limitation = (
        "TRL's DPOTrainer scores answers with a fused LM head that calls the model's backbone "
        "for `last_hidden_state` and its `lm_head` module, and needs a transformers "
        "ProcessorMixin; the native Flamingo computes its logits inside its own forward (tied "
        "to MosaicGPT's input embedding) and has its own processor, so driving it would mean "
        "patching TRL internals"
    )
    image_keys = ("vision_x",)
    #: The recipe's `family_options` section.
    options_model = FlamingoTrainingSection
    #: Few-shot prompts: `VisionTextExample.demonstrations` go before the query.
    supports_demonstrations = True
    supports_clips = True
    recipe = "openflamingo-3b-bvpi.yaml"
    recipe_trains_in_fp32 = True
    # CLIP's layers, the MPT blocks (each with its gated cross-attention) and the perceiver. The
    # model's `_no_split_modules` (gathered from CLIP's) names CLIP text embeddings this model
    # does not have, which stops accelerate, and leaves the perceiver out.
    fsdp_wrap_classes = ("CLIPEncoderLayer", "FlamingoDecoderBlock", "PerceiverResampler")
    bench_archs: ClassVar[dict[str, str]] = {"real": "openflamingo-3b", "tiny": "openflamingo-tiny"}

    # ----------------------------------------------------------------------------- loading
    def load(
        self,
        model_name_or_path: str | Path,
        *,
        adapter: str | Path | None = None,
        quantization: Quantization = "none",
        device: str | None = None,
        dtype: torch.dtype | None = None,
    ) -> LoadedModel:
        from roadscene.models.flamingo.modeling_flamingo import FlamingoForConditionalGeneration
        from roadscene.models.flamingo.processing_flamingo import FlamingoProcessor

        source = Path(model_name_or_path)
        if not (source / "config.json").is_file():
            raise InputError(
                "not a converted OpenFlamingo folder (no config.json); build one with `roadscene "
                "model convert-openflamingo` (docs/flamingo.md) or `roadscene model tiny "
                "--family flamingo`",
                path=source,
            )
        self.check_model_folder(source)
        device = resolve_device(device)
        kwargs = self.pretrained_kwargs(quantization, device, dtype)
        with loading_errors(source):
            model = FlamingoForConditionalGeneration.from_pretrained(str(source), **kwargs)
            processor = FlamingoProcessor.from_pretrained(source)
        return self.finish_load(model, processor, str(source), quantization, device, adapter)

    def quantization_config(self) -> Any:
        from roadscene.models.flamingo.adapters import quantization_config

        return quantization_config()

    def build_tiny(
        self,
        out_dir: str | Path,
        *,
        corpus: Sequence[str] | None = None,
        seed: int = 0,
        sizes: Mapping[str, Any] | None = None,
    ) -> Path:
        """Tiny CLIP vision (32 px by default), tiny MosaicGPT, tiny perceiver; BPE tokenizer
        trained on the built-in corpus plus `corpus` (see `FlamingoSizes`)."""
        from roadscene.models.flamingo.tiny import save_tiny_flamingo

        size = self.sizes(sizes).model_dump()
        gate_init = size.pop("gate_init")
        return save_tiny_flamingo(out_dir, seed=seed, gate_init=gate_init, corpus=corpus, **size)

    def image_embedder(self, model: Any, processor: FlamingoProcessor) -> ImageEmbedder:
        """The frozen CLIP vision tower: pooled (CLS, post-LayerNorm) features, for choosing
        similar demonstrations (RICES)."""
        import torch

        def embed(images: Sequence[Image.Image]) -> torch.Tensor:
            pixels = processor.pixels(list(images))  # (N, 3, H, W)
            vision = model.vision_encoder
            with torch.inference_mode():
                pooled = vision(pixel_values=pixels.to(vision.device, vision.dtype)).pooler_output
            return pooled.float().cpu()  # (N, D)

        return embed

    # ----------------------------------------------------------------------------- training
    def prepare_for_training(
        self,
        model: Any,
        finetune: FinetuneSection,
        options: Mapping[str, Any] | None = None,
        *,
        gradient_checkpointing: bool = False,
        adapter: str | Path | None = None,
    ) -> Any:
        """Without a `finetune` section, the published recipe: freeze all but the perceiver, the
        gated cross-attention and the two new token rows. With one (lora / qlora): PEFT
        adapters on the cross-attention, the perceiver training fully beside them
        (`roadscene.models.flamingo.adapters`)."""
        import torch

        from roadscene.models.flamingo.training import prepare_for_training

        if model.perceiver.latents.dtype != torch.float32:
            raise InputError(
                f"Flamingo training keeps fp32 master weights (bf16 autocast on GPU), but the "
                f"model was loaded as {model.perceiver.latents.dtype}; set model.dtype: float32",
                field="model.dtype",
            )
        recipe = FlamingoTrainingSection.model_validate(options or {})
        if not finetune.model_fields_set and adapter is None:
            return prepare_for_training(model, recipe)
        from roadscene.models.finetune import prepare_model
        from roadscene.models.flamingo.adapters import check_gates_open

        if recipe.gate_init is not None:
            raise InputError(
                "family_options.gate_init changes the frozen model's gates, which an adapter "
                "does not carry; leave it null with finetune.method lora / qlora",
                field="family_options.gate_init",
            )
        check_gates_open(model)
        return prepare_model(
            model, finetune, self, gradient_checkpointing=gradient_checkpointing, adapter=adapter
        )

    def lora_targets(self, names: Sequence[str] | str | None, *, text_only: bool = True) -> Any:
        """The gated cross-attention by default; leaf names are looked up inside the language
        model's blocks (`Wqkv`, `out_proj` adapt the frozen MosaicGPT's attention)."""
        from roadscene.models.flamingo.adapters import lora_targets

        return lora_targets(names)

    def make_trainer(self, options: Mapping[str, Any] | None = None, **trainer_kwargs: Any) -> Any:
        """The HF Trainer subclass carrying the recipe's optimizer groups, gate regularisation
        and text dropout."""
        from roadscene.models.flamingo.training import FlamingoTrainer

        recipe = FlamingoTrainingSection.model_validate(options or {})
        return FlamingoTrainer(recipe=recipe, **trainer_kwargs)

    def check_clips(self, model: Any, frames: int) -> None:
        """Clips need frame embeddings for at least `frames` frames: without them the perceiver
        would see a clip's frames as an unordered set (no motion)."""
        have = getattr(model.config, "max_num_frames", None)
        if have is None or have < frames:
            reason = "no frame embeddings" if have is None else f"frame embeddings for {have}"
            raise InputError(
                f"this Flamingo model has {reason}, so it cannot tell the order of a clip's "
                f"{frames} frames; train it on clips of {frames} frames first (training adds "
                "them: docs/flamingo.md)",
                field="model",
            )

    def prepare_for_clips(self, model: Any, frames: int) -> Any:
        """Frame embeddings for clips of `frames` frames (`max_num_frames`), zero-initialised
        where the model has none (or too few): still images are encoded as before, and the
        perceiver learns them with the rest of its weights."""
        from roadscene.models.flamingo.training import add_frame_embeddings

        if (model.config.max_num_frames or 0) < frames:
            add_frame_embeddings(model, frames)
        return model

    # ----------------------------------------------------------------------------- tensors
    def encode(
        self, processor: FlamingoProcessor, example: VisionTextExample
    ) -> dict[str, torch.Tensor]:
        """input_ids/attention_mask (T,), labels (T,) (answer + `<|endofchunk|>` only) when the
        example has an answer, vision_x (T_img, 1, 3, H, W): demonstration images, then the
        query's; a clip: vision_x (1, F, 3, H, W), its frames as one media."""
        import torch

        demonstrations = demonstrations_of(example)
        if example.clip is not None and demonstrations:
            raise ValueError("few-shot demonstrations are not combined with clips")
        tokenizer = processor.tokenizer
        prompt_ids = tokenizer(prompt_text(example), add_special_tokens=False, return_tensors="pt")[
            "input_ids"
        ][0]
        features: dict[str, torch.Tensor] = {}
        if example.clip is not None:
            images = [example.clip.frames[0]]  # one media
            pixels = processor.pixels(list(example.clip.frames))  # (F, 3, H, W)
            features["vision_x"] = pixels.unsqueeze(0)  # (1, F, 3, H, W)
        else:
            images = [image for d in demonstrations for image in d.images] + list(example.images)
            pixels = processor.pixels(images)  # (T_img, 3, H, W)
            features["vision_x"] = pixels.unsqueeze(1)  # (T_img, 1, 3, H, W)
        input_ids = prompt_ids
        _, answer = _prompt_parts(example)
        if answer is not None:
            answer_ids = tokenizer(answer, add_special_tokens=False, return_tensors="pt")[
                "input_ids"
            ][0]
            input_ids = torch.cat([prompt_ids, answer_ids])
            labels = torch.cat([torch.full_like(prompt_ids, IGNORE_INDEX), answer_ids])
            labels[labels == processor.media_token_id] = IGNORE_INDEX
            features["labels"] = labels
        if int((input_ids == processor.media_token_id).sum()) != len(images):
            raise ValueError(
                f"{int((input_ids == processor.media_token_id).sum())} <image> tokens for "
                f"{len(images)} images (a prompt or answer must not contain '<image>')"
            )
        features["input_ids"] = input_ids
        features["attention_mask"] = torch.ones_like(input_ids)
        return features

    def collate_images(
        self, processor: FlamingoProcessor, features: Sequence[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        import torch

        # Rows with fewer images (no demonstrations beside few-shot rows) get zero images after
        # their own: a text token attends only to the image its `<image>` count reaches, so no
        # token ever sees the padding. Rows with fewer frames (images beside clips) get zero
        # frames, masked out of the perceiver by `frame_mask`.
        media = max(f["vision_x"].shape[0] for f in features)
        frames = max(f["vision_x"].shape[1] for f in features)
        vision_x = features[0]["vision_x"].new_zeros(
            len(features), media, frames, *features[0]["vision_x"].shape[2:]
        )
        frame_mask = torch.zeros(len(features), media, frames, dtype=torch.bool)
        for row, feature in enumerate(features):
            count, length = feature["vision_x"].shape[:2]
            vision_x[row, :count, :length] = feature["vision_x"]
            frame_mask[row, :, :length] = True
        batch = {"vision_x": vision_x}  # (B, T_img, F, 3, H, W)
        if not bool(frame_mask.all()):
            batch["frame_mask"] = frame_mask
        return batch

    def stop_token_ids(self, processor: FlamingoProcessor) -> list[int]:
        return [processor.endofchunk_token_id]

    # ----------------------------------------------------------------------------- benchmark
    def model_from_arch(
        self,
        arch: ArchSpec,
        *,
        tokenizer: Any = None,
        device: torch.device | str = "meta",
        dtype: torch.dtype | None = None,
    ) -> Any:
        import copy

        import torch

        from roadscene.models.flamingo.configuration_flamingo import FlamingoConfig
        from roadscene.models.flamingo.modeling_flamingo import FlamingoForConditionalGeneration

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
        with torch.device(device):
            model = FlamingoForConditionalGeneration(FlamingoConfig(**values))
        return model.to(dtype or torch.float32).eval()

    def bench_model(
        self, arch: ArchSpec, *, device: torch.device, dtype: torch.dtype, workdir: Path
    ) -> BenchModel:
        import torch

        from roadscene.models.costs import BenchModel
        from roadscene.models.flamingo import costs
        from roadscene.models.flamingo.processing_flamingo import (
            FlamingoProcessor,
            clip_image_processor,
        )

        base = self.offline_processor(workdir)
        processor = FlamingoProcessor(
            base.tokenizer, clip_image_processor(int(arch.processor["image_size"]))
        )
        torch.manual_seed(0)
        model = self.model_from_arch(
            arch, tokenizer=processor.tokenizer, device=device, dtype=dtype
        )
        return BenchModel(
            model=model,
            processor=processor,
            vision_module=model.vision_encoder,
            image_token_id=model.config.media_token_id,
            prefill_flops=costs.prefill_flops,
            decode_step=costs.decode_step,
            train_flops=costs.recipe_train_flops,
            processors={"default": (processor, None)},
            training="perceiver + gated cross-attention + 2 token rows",
        )

    def recipe_trainable(self, model: Any) -> dict[str, int]:
        """The recipe's trainable set (perceiver, cross-attention, the embedding), and what
        effectively trains: only the two new token rows of the embedding get gradients."""
        from roadscene.models.costs import count_parameters
        from roadscene.models.flamingo.training import prepare_for_training

        model = prepare_for_training(model, FlamingoTrainingSection())
        trainable = count_parameters(model)["trainable"]
        embedding = model.get_input_embeddings().weight
        return {
            "trainable_recipe": trainable,
            "trainable_effective": trainable - embedding.numel() + 2 * embedding.shape[1],
        }

    def sequence_shape(self, features: dict[str, torch.Tensor]) -> SequenceShape:
        from roadscene.models.costs import SequenceShape

        # vision_x (T_img, F, 3, H, W): CLIP runs once per frame
        return SequenceShape(
            tokens=int(features["input_ids"].shape[0]),
            images=int(features["vision_x"].shape[0]),
            tiles=int(features["vision_x"].shape[1]),
        )
