"""OpenFlamingo as a roadscene model family: loading, tiny checkpoints, encoding (answer-only
labels, few-shot demonstrations), padding and generation.

Prompt formats (OpenFlamingo's conventions, shared/design/flamingo.md):
- caption task (the example's prompt is `targets.CAPTION_PROMPT`): `<image>Output:{caption}<|endofchunk|>`;
- every other prompt: `<image>User: {prompt}\\nAssistant: {answer}<|endofchunk|>`.
Few-shot: the demonstrations (image + answer, same format) joined by `\\n`, then the query.
`vision_x` holds the demonstration images in order, then the query's image(s).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from roadscene.errors import InputError
from roadscene.models.base import (
    IGNORE_INDEX,
    LoadedModel,
    ModelFamily,
    Quantization,
    VisionTextExample,
    default_dtype,
    pad_sequences,
)
from roadscene.models.flamingo.recipe import FlamingoTrainingSection

if TYPE_CHECKING:
    import torch

    from roadscene.models.flamingo.processing_flamingo import FlamingoProcessor

DEMONSTRATION_SEPARATOR = "\n"


def _prompt_parts(example: VisionTextExample) -> tuple[str, str | None]:
    """(text up to where the answer starts, answer text including the end-of-chunk token)."""
    from roadscene.models.flamingo.processing_flamingo import ENDOFCHUNK, MEDIA_TOKEN
    from roadscene.targets import CAPTION_PROMPT

    media = MEDIA_TOKEN * len(example.images)
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


class FlamingoFamily(ModelFamily):
    """OpenFlamingo-3B (CLIP ViT-L/14 + MPT-1B), native. Trains the perceiver, the gated
    cross-attention and the two new token rows (see `roadscene.models.flamingo.training`)."""

    name = "flamingo"
    # No hub repository holds the assembled model: `roadscene model convert-openflamingo`.
    default_model_id = "models/openflamingo-3b"
    lora_target_modules = ""
    #: The recipe's `family_options` section.
    options_model = FlamingoTrainingSection
    #: Few-shot prompts: `VisionTextExample.demonstrations` go before the query.
    supports_demonstrations = True

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
        import torch

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
        if adapter is not None:
            raise InputError(
                "the flamingo family trains its own modules, not PEFT adapters; pass the run's "
                "output folder as --model",
                path=adapter,
            )
        if quantization != "none":
            raise InputError(
                f"quantization '{quantization}' is not supported by the flamingo family; allowed: none",
                field="quantization",
            )
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype is None:
            dtype = default_dtype(device)
        model = FlamingoForConditionalGeneration.from_pretrained(str(source), dtype=dtype)
        processor = FlamingoProcessor.from_pretrained(source)
        model.to(device).eval()
        return LoadedModel(model=model, processor=processor, source=str(source))

    def build_tiny(
        self,
        out_dir: str | Path,
        *,
        corpus: Sequence[str] | None = None,
        seed: int = 0,
        gate_init: float = 0.0,
        **sizes: Any,
    ) -> Path:
        """Tiny CLIP vision (32 px by default), tiny MosaicGPT, tiny perceiver; BPE tokenizer
        trained on the built-in corpus plus `corpus`. `sizes`: see `tiny.TINY_SIZES`."""
        from roadscene.models.flamingo.tiny import TINY_SIZES, save_tiny_flamingo

        unknown = sorted(set(sizes) - set(TINY_SIZES))
        if unknown:
            raise InputError(
                f"unknown tiny Flamingo size option(s) {', '.join(unknown)}; allowed: "
                f"{', '.join(TINY_SIZES)}"
            )
        return save_tiny_flamingo(out_dir, seed=seed, gate_init=gate_init, corpus=corpus, **sizes)

    def image_embedder(self, model: Any, processor: FlamingoProcessor) -> Any:
        """Image -> embedding function for `--shot-selection similar` (the frozen CLIP tower)."""
        from roadscene.models.flamingo.fewshot import clip_image_embedder

        return clip_image_embedder(model, processor)

    # ----------------------------------------------------------------------------- training
    def prepare_for_training(self, model: Any, config: Any) -> Any:
        """Freeze all but the perceiver, the gated cross-attention and the two new token rows
        (the `finetune` section does not apply: the Flamingo recipe fixes what trains)."""
        import torch

        from roadscene.models.flamingo.training import prepare_for_training

        if config.finetune.model_fields_set:
            raise InputError(
                "the flamingo family ignores the finetune section (it always trains the "
                "perceiver, the gated cross-attention and the two new token rows); remove "
                f"finetune.{', finetune.'.join(sorted(config.finetune.model_fields_set))}",
                field="finetune",
            )
        if model.perceiver.latents.dtype != torch.float32:
            raise InputError(
                f"Flamingo training keeps fp32 master weights (bf16 autocast on GPU), but the "
                f"model was loaded as {model.perceiver.latents.dtype}; set model.dtype: float32",
                field="model.dtype",
            )
        return prepare_for_training(
            model, FlamingoTrainingSection.model_validate(config.family_options)
        )

    def make_trainer(self, config: Any, **trainer_kwargs: Any) -> Any:
        """The HF Trainer subclass carrying the recipe's optimizer groups, gate regularisation
        and text dropout."""
        from roadscene.models.flamingo.training import FlamingoTrainer

        recipe = FlamingoTrainingSection.model_validate(config.family_options)
        return FlamingoTrainer(recipe=recipe, **trainer_kwargs)

    # ----------------------------------------------------------------------------- tensors
    def encode(
        self, processor: FlamingoProcessor, example: VisionTextExample
    ) -> dict[str, torch.Tensor]:
        """input_ids/attention_mask (T,), labels (T,) (answer + `<|endofchunk|>` only) when the
        example has an answer, vision_x (T_img, 1, 3, H, W): demonstration images, then the query's."""
        import torch

        demonstrations = demonstrations_of(example)
        tokenizer = processor.tokenizer
        prompt_ids = tokenizer(prompt_text(example), add_special_tokens=False, return_tensors="pt")[
            "input_ids"
        ][0]
        images = [image for d in demonstrations for image in d.images] + list(example.images)
        pixels = processor.pixels(images)  # (T_img, 3, H, W)
        features: dict[str, torch.Tensor] = {"vision_x": pixels.unsqueeze(1)}  # (T_img, 1, 3, H, W)
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

    def collate(
        self,
        processor: FlamingoProcessor,
        features: Sequence[dict[str, torch.Tensor]],
        *,
        padding_side: Literal["left", "right"] = "right",
        pad_to_length: int | None = None,
    ) -> dict[str, torch.Tensor]:
        import torch

        image_counts = sorted({f["vision_x"].shape[0] for f in features})
        if len(image_counts) != 1:
            raise ValueError(
                f"a Flamingo batch needs the same number of images per example, got {image_counts}"
            )
        pad_id = processor.tokenizer.pad_token_id
        batch = {
            "input_ids": pad_sequences(
                [f["input_ids"] for f in features],
                pad_id,
                padding_side=padding_side,
                length=pad_to_length,
            ),
            "attention_mask": pad_sequences(
                [f["attention_mask"] for f in features],
                0,
                padding_side=padding_side,
                length=pad_to_length,
            ),
            "vision_x": torch.stack([f["vision_x"] for f in features]),  # (B, T_img, 1, 3, H, W)
        }
        if all("labels" in f for f in features):
            batch["labels"] = pad_sequences(
                [f["labels"] for f in features],
                IGNORE_INDEX,
                padding_side=padding_side,
                length=pad_to_length,
            )
        return batch

    def stop_token_ids(self, processor: FlamingoProcessor) -> list[int]:
        return [processor.endofchunk_token_id]

    def generate(
        self,
        model: Any,
        processor: FlamingoProcessor,
        examples: Sequence[VisionTextExample],
        **generation_kwargs: Any,
    ) -> list[str]:
        """Answers (greedy by default; OpenFlamingo's evaluation used num_beams=3). Stops at
        `<|endofchunk|>`; batches are left-padded; images are encoded once per call."""
        import torch

        features = [self.encode(processor, replace(example, answer=None)) for example in examples]
        batch = self.collate(processor, features, padding_side="left")
        device = next(model.parameters()).device
        dtype = next(model.perceiver.parameters()).dtype
        batch = {key: value.to(device) for key, value in batch.items()}
        batch["vision_x"] = batch["vision_x"].to(dtype)
        kwargs: dict[str, Any] = {"max_new_tokens": 128, "do_sample": False, "num_beams": 1}
        kwargs.update(generation_kwargs)
        kwargs.setdefault("eos_token_id", self.stop_token_ids(processor))
        kwargs.setdefault("pad_token_id", processor.tokenizer.pad_token_id)
        with torch.inference_mode():
            output = model.generate(**batch, **kwargs)
        new_tokens = output[:, batch["input_ids"].shape[1] :]  # (B, generated)
        texts = processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [text.strip() for text in texts]
