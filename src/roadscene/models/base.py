"""The interface every model family implements, and the padding helpers they share.

A family (SmolVLM2, OpenFlamingo, ...) knows how to load its model and processor, build a tiny
random-init checkpoint for tests, turn one example into tensors (answer-only labels), pad a batch
of those tensors, and generate answer text. `roadscene.train` and `roadscene.predict` only talk to
this interface, so adding a family is one module, one registry line and one recipe.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch
    from PIL import Image

#: Label value ignored by the cross-entropy loss (prompt, image tokens and padding).
IGNORE_INDEX = -100

Quantization = Literal["none", "4bit"]


@dataclass
class VisionTextExample:
    """One item: its image(s), the user prompt and (for training / scoring) the answer.

    `image_ref` is the image path as written in the data file (echoed into predictions);
    `meta` carries extra fields from the data file (line number, target fields...);
    `demonstrations` are solved examples shown before this one (few-shot, for families with
    `supports_demonstrations`).
    """

    images: list[Image.Image]
    prompt: str
    answer: str | None = None
    image_ref: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    demonstrations: list[VisionTextExample] = field(default_factory=list)


@dataclass
class LoadedModel:
    """What `ModelFamily.load` returns: the model (adapter attached when given), its processor,
    and where they came from."""

    model: Any
    processor: Any
    source: str
    adapter: str | None = None


class ModelFamily(abc.ABC):
    """A vision-language model family.

    Encoded features (`encode`) are a dict of unpadded tensors for ONE example:
    `input_ids` (T,), `attention_mask` (T,), `labels` (T,) when an answer is given (IGNORE_INDEX
    everywhere except the answer tokens and the end-of-answer token), plus the family's image
    tensors (e.g. SmolVLM `pixel_values` (N_img, 3, H, W)). `collate` pads a list of them into a
    batch; training pads on the right, generation on the left.
    """

    #: Registry name (`roadscene.models.get_family(name)`).
    name: str = ""
    #: Hub id used when a config names no model.
    default_model_id: str = ""
    #: PEFT `target_modules` used when the config names none: a regex (full match) or a list.
    lora_target_modules: str | list[str] = ""
    #: Whether `encode` puts `VisionTextExample.demonstrations` (few-shot) before the query.
    supports_demonstrations: bool = False

    @abc.abstractmethod
    def load(
        self,
        model_name_or_path: str | Path,
        *,
        adapter: str | Path | None = None,
        quantization: Quantization = "none",
        device: str | None = None,
        dtype: torch.dtype | None = None,
    ) -> LoadedModel:
        """Load model + processor from a hub id or a local folder (bf16 on CUDA, fp32 on CPU by
        default). An unavailable id/path raises `InputError` naming it and how to provide it."""

    @abc.abstractmethod
    def build_tiny(
        self, out_dir: str | Path, *, corpus: Sequence[str] | None = None, seed: int = 0, **sizes
    ) -> Path:
        """Write a tiny random-init checkpoint (config, weights, locally trained tokenizer,
        processor) to `out_dir` that `load` reads through the same code path as the real model."""

    @abc.abstractmethod
    def encode(self, processor: Any, example: VisionTextExample) -> dict[str, torch.Tensor]:
        """Tensors for one example (see class docstring). With `example.answer` None: the
        generation prompt only, no labels."""

    @abc.abstractmethod
    def collate(
        self,
        processor: Any,
        features: Sequence[dict[str, torch.Tensor]],
        *,
        padding_side: Literal["left", "right"] = "right",
        pad_to_length: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Pad encoded features into one batch (dynamic padding unless `pad_to_length`)."""

    @abc.abstractmethod
    def generate(
        self, model: Any, processor: Any, examples: Sequence[VisionTextExample], **generation_kwargs
    ) -> list[str]:
        """Answer text only (no prompt echo, no chat or special tokens), one string per example.

        `generation_kwargs` go to `model.generate`: at least `max_new_tokens`, `num_beams` and
        `logits_processor` (a `LogitsProcessorList`) are honoured; greedy by default.
        """

    #: Pydantic model validating the recipe's `family_options` section (None: takes none).
    options_model: Any = None

    #: Dotted name of the vision encoder inside the model (e.g. `model.vision_model`), frozen by
    #: `finetune.freeze_vision` in full fine-tuning; None when the family has none to freeze.
    vision_module_name: str | None = None

    def prepare_for_training(self, model: Any, config: Any) -> Any:
        """Make the loaded model trainable as `config.finetune` (a `TrainConfig`) says.

        Default: PEFT LoRA / QLoRA adapters (targets from `lora_targets`) or full fine-tuning.
        Families with their own rules (e.g. only some blocks train) override this.
        """
        from roadscene.train.runner import prepare_model

        return prepare_model(model, config, self)

    def create_optimizer(self, model: Any, config: Any) -> Any | None:
        """An optimizer for the Trainer (e.g. per-group learning rates), or None for the
        Trainer's default AdamW built from `config.train`."""
        return None

    def make_trainer(self, config: Any, **trainer_kwargs: Any) -> Any:
        """The HF Trainer that runs this family's training, built from `trainer_kwargs`
        (default: `transformers.Trainer`). Families with their own loss terms or batch handling
        return an instance of a Trainer subclass."""
        from transformers import Trainer

        return Trainer(**trainer_kwargs)

    def lora_targets(self, names: Sequence[str] | str | None, *, text_only: bool = True) -> Any:
        """PEFT `target_modules` for leaf names like `["q_proj", "v_proj"]` (None: the family
        default; a string such as `all-linear` passes through). `text_only` keeps adapters off
        the vision encoder."""
        return self.lora_target_modules if names is None else names

    def stop_token_ids(self, processor: Any) -> list[int]:
        """Token ids that end an answer (generation stops at the first of them)."""
        tokenizer = getattr(processor, "tokenizer", processor)
        return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []


def default_dtype(device: str) -> torch.dtype:
    """Weights dtype when the user names none: 16-bit on CUDA (`cuda_half_dtype`), fp32 on CPU."""
    import torch

    return cuda_half_dtype() if device.startswith("cuda") else torch.float32


def cuda_half_dtype() -> torch.dtype:
    """The 16-bit dtype for CUDA weights and compute: bf16 where the card supports it (Ampere and
    newer), else fp16 (T4, V100), where bf16 would be emulated or fail."""
    import torch

    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class TrainingCollator:
    """Collator for the HF Trainer: `family.encode(...)` features in, a padded batch out.

    Input: a list of dicts of unpadded tensors (`input_ids`, `attention_mask`, `labels`, image
    tensors). Output: `input_ids`/`attention_mask`/`labels` (B, T) padded on the right with
    pad id / 0 / -100 (so padding never carries loss), image tensors stacked. No tokenisation
    happens here; features are computed once per example by the dataset.
    """

    def __init__(
        self, family: ModelFamily, processor: Any, *, pad_to_length: int | None = None
    ) -> None:
        self.family = family
        self.processor = processor
        self.pad_to_length = pad_to_length

    def __call__(self, features: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return self.family.collate(
            self.processor, features, padding_side="right", pad_to_length=self.pad_to_length
        )


def pad_sequences(
    sequences: Sequence[torch.Tensor],
    pad_value: int,
    *,
    padding_side: Literal["left", "right"],
    length: int | None = None,
) -> torch.Tensor:
    """Stack 1-D tensors of different lengths into (B, L), L = max(longest, `length`)."""
    import torch

    target = max(len(seq) for seq in sequences)
    if length is not None:
        target = max(target, length)
    out = sequences[0].new_full((len(sequences), target), pad_value)
    for row, seq in enumerate(sequences):
        if padding_side == "right":
            out[row, : len(seq)] = seq
        else:
            out[row, target - len(seq) :] = seq
    return out if out.dtype != torch.bool else out.long()


def pad_images(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack per-example image tensors (N_i, ...) into (B, max N_i, ...), zero-filled.

    All-zero images are what SmolVLM/Idefics3 treat as padding images and drop.
    """
    import torch

    max_images = max(img.shape[0] for img in images)
    trailing = images[0].shape[1:]
    if any(img.shape[1:] != trailing for img in images):
        # Different tile sizes: pad spatial dims too (bottom/right), as the processor does.
        dims = [max(img.shape[d] for img in images) for d in range(1, images[0].dim())]
        trailing = torch.Size(dims)
    out = images[0].new_zeros((len(images), max_images, *trailing))
    for row, img in enumerate(images):
        index = (row, slice(0, img.shape[0])) + tuple(slice(0, s) for s in img.shape[1:])
        out[index] = img
    return out
