"""The interface every model family implements, and the plumbing they share.

A family (SmolVLM2, Qwen3-VL, OpenFlamingo, ...) declares what it is -- its name, the model types
it loads, its tiny and demo sizes, the image tensors of its batches, its training hooks and what
the real-size benchmark needs -- and writes two things of its own: `encode` (one example ->
unpadded tensors with answer-only labels) and `collate_images` (the image part of a batch).
Loading through transformers' Auto classes, text padding, generation and clear errors for
models that cannot be loaded are written once, here. `roadscene.train` and `roadscene.predict`
talk only to this interface, so adding a family is one module, one registry line and one recipe.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from roadscene.errors import InputError
from roadscene.io import read_json
from roadscene.models.loading import loading_errors, quiet_optional_kernel_notices

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from roadscene.data.examples import VisionTextExample
    from roadscene.models.arch import ArchSpec
    from roadscene.models.costs import BenchModel, SequenceShape
    from roadscene.models.finetune import FinetuneSection

#: Label value ignored by the cross-entropy loss (prompt, image tokens and padding).
IGNORE_INDEX = -100

#: Files that mark a model folder roadscene wrote: `build_tiny`'s sizes, the converter's sources.
TINY_MARKER = "roadscene_tiny.json"
CONVERTED_MARKER = "roadscene_converted.json"


def is_model_output(folder: Path) -> bool:
    """Whether `folder` is a model folder `roadscene model tiny` or `convert-openflamingo`
    wrote (so writing a new one there may replace it)."""
    return (folder / TINY_MARKER).is_file() or (folder / CONVERTED_MARKER).is_file()


Quantization = Literal["none", "4bit"]

#: images -> (N, D) embeddings, for choosing similar few-shot demonstrations.
ImageEmbedder = Callable[[Sequence["Image.Image"]], "torch.Tensor"]


@dataclass
class LoadedModel:
    """What `ModelFamily.load` returns: the model (adapter attached when given), its processor,
    and where they came from."""

    model: Any
    processor: Any
    source: str
    adapter: str | None = None


class Sizes(BaseModel):
    """Base of a family's tiny-model sizes: unknown names are errors, never ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelFamily(abc.ABC):
    """A vision-language model family.

    Encoded features (`encode`) are a dict of unpadded tensors for ONE example:
    `input_ids` (T,), `attention_mask` (T,), `labels` (T,) when an answer is given (IGNORE_INDEX
    everywhere except the answer tokens and the end-of-answer token), plus the family's image
    tensors (e.g. SmolVLM `pixel_values` (N_img, 3, H, W)). `collate` pads a list of them into a
    batch; training pads on the right, generation on the left.
    """

    # ------------------------------------------------------------------ what the family is
    #: Registry name (`roadscene.models.get_family(name)`).
    name: ClassVar[str] = ""
    #: Hub id used when a config names no model.
    default_model_id: ClassVar[str] = ""
    #: `model_type` values of config.json this family loads (how a folder finds its family).
    model_types: ClassVar[tuple[str, ...]] = ()
    #: Size options of `build_tiny` (`roadscene model tiny`), validated: a wrong name is an error.
    tiny_sizes: ClassVar[type[Sizes]] = Sizes
    #: Sizes of the from-scratch model `roadscene demo --family NAME` trains.
    demo_sizes: ClassVar[dict[str, Any]] = {}
    #: The `finetune` section of the demo's from-scratch training (None: the family's recipe
    #: decides what trains and takes no finetune section).
    demo_finetune: ClassVar[dict[str, Any] | None] = {"method": "full"}
    #: Floating-point image tensors of a batch (cast to the model's dtype before a forward).
    image_keys: ClassVar[tuple[str, ...]] = ()
    #: Other per-token tensors of an encoded example (T,), padded with 0 like `attention_mask`.
    token_keys: ClassVar[tuple[str, ...]] = ()
    #: Whether `encode` puts `VisionTextExample.demonstrations` (few-shot) before the query.
    supports_demonstrations: ClassVar[bool] = False
    #: Whether `encode` takes clip examples (`VisionTextExample.clip`: sampled frames with their
    #: timestamps) through the model's own video path.
    supports_clips: ClassVar[bool] = False
    #: `finetune.method` values the family trains with when a recipe has a `finetune` section.
    finetune_methods: ClassVar[tuple[str, ...]] = ("lora", "qlora", "full")
    #: Modules that train fully beside the LoRA adapters (PEFT `modules_to_save`, saved with the
    #: adapter).
    lora_modules_to_save: ClassVar[tuple[str, ...]] = ()
    #: Why TRL's `DPOTrainer` cannot train this family (empty: it can); the preference stage
    #: refuses the family with this reason.
    preference_limitation: ClassVar[str] = ""
    #: Pydantic model validating the recipe's `family_options` section (None: takes none).
    options_model: ClassVar[type[BaseModel] | None] = None
    #: Dotted name of the vision encoder inside the model, frozen by `finetune.freeze_vision`
    #: in full fine-tuning; None when the family has none to freeze.
    vision_module_name: ClassVar[str | None] = None
    #: PEFT `target_modules` used when the config names none: a regex (full match) or a list.
    lora_target_modules: ClassVar[str | list[str]] = ""
    #: The family's published recipe in `configs/` (used by the real-size benchmark).
    recipe: ClassVar[str] = ""
    #: Stored architectures (`roadscene.models.arch`) of the benchmark, by scale (real / tiny).
    bench_archs: ClassVar[dict[str, str]] = {}
    #: Whether the recipe keeps fp32 master weights (bf16 autocast on GPU) even for LoRA.
    recipe_trains_in_fp32: ClassVar[bool] = False
    #: Module classes FSDP shards as one unit each (`configs/accelerate/fsdp.yaml` names none:
    #: `roadscene train` passes these): the vision encoder's and the language model's layers.
    #: Stated here because a model's `_no_split_modules`, accelerate's default, can be wrong
    #: (a class the model does not have stops accelerate; a sub-layer leaves the rest unsharded).
    fsdp_wrap_classes: ClassVar[tuple[str, ...]] = ()

    # ------------------------------------------------------------------ loading
    def load(
        self,
        model_name_or_path: str | Path,
        *,
        adapter: str | Path | None = None,
        quantization: Quantization = "none",
        device: str | None = None,
        dtype: torch.dtype | None = None,
    ) -> LoadedModel:
        """Load model + processor from a hub id or a local folder with transformers' Auto
        classes (bf16 on CUDA, fp32 on CPU by default), then the PEFT adapter if given.
        Anything that cannot be loaded is an `InputError` naming it."""
        from transformers import AutoModelForImageTextToText, AutoProcessor

        source = str(model_name_or_path)
        device = resolve_device(device)
        self.check_model_folder(source)
        kwargs = self.pretrained_kwargs(quantization, device, dtype)
        # Training runs save the processor (with its chat template) beside the adapter.
        processor_source = source
        if adapter is not None and (Path(adapter) / "processor_config.json").is_file():
            processor_source = str(adapter)
        with loading_errors(source):
            processor = AutoProcessor.from_pretrained(processor_source)
            model = AutoModelForImageTextToText.from_pretrained(source, **kwargs)
        return self.finish_load(model, processor, source, quantization, device, adapter)

    def quantization_config(self) -> Any:
        """bitsandbytes' 4-bit config for this family's models (QLoRA)."""
        from roadscene.models.finetune import bnb_4bit_config

        return bnb_4bit_config()

    def pretrained_kwargs(
        self, quantization: Quantization, device: str, dtype: torch.dtype | None
    ) -> dict[str, Any]:
        """`from_pretrained` keyword arguments: dtype (bf16 on CUDA, fp32 on CPU by default) and,
        for 4-bit, the quantization config placed on `device`."""
        kwargs: dict[str, Any] = {"dtype": dtype or default_dtype(device)}
        if quantization == "4bit":
            kwargs["quantization_config"] = self.quantization_config()
            kwargs["device_map"] = {"": device}
        elif quantization != "none":
            raise InputError(
                f"unknown quantization '{quantization}'; allowed: none, 4bit", field="quantization"
            )
        return kwargs

    def finish_load(
        self,
        model: Any,
        processor: Any,
        source: str,
        quantization: Quantization,
        device: str,
        adapter: str | Path | None,
    ) -> LoadedModel:
        """A loaded model on `device` (4-bit ones are placed while loading), with its adapter,
        in eval mode."""
        if quantization == "none":
            model.to(device)
        if adapter is not None:
            model = attach_adapter(model, adapter)
        model.eval()
        return LoadedModel(
            model=model,
            processor=processor,
            source=source,
            adapter=str(adapter) if adapter is not None else None,
        )

    def check_model_folder(self, source: str | Path) -> None:
        """For a local folder: config.json must exist, name one of `model_types` and come with
        safetensors weights; otherwise an InputError says what the folder is."""
        folder = Path(source)
        if not folder.exists():
            return  # a hub id: checked when loading
        if not folder.is_dir():
            raise InputError("not a model folder (a file)", path=folder)
        model_type = read_model_type(folder)
        if model_type not in self.model_types:
            raise InputError(
                f"this folder holds a '{model_type}' model, not a {self.name} model "
                f"(model types: {', '.join(self.model_types)}); pass --family for its family "
                "or another --model",
                path=folder,
            )
        if any(folder.glob("*.bin")) and not any(folder.glob("*.safetensors")):
            raise InputError(
                "only pickle weights (*.bin) here; roadscene loads safetensors only, since "
                "unpickling a file can run code: convert the weights to safetensors",
                path=folder,
            )

    @abc.abstractmethod
    def build_tiny(
        self,
        out_dir: str | Path,
        *,
        corpus: Sequence[str] | None = None,
        seed: int = 0,
        sizes: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write a tiny random-init checkpoint (config, weights, locally trained tokenizer,
        processor) to `out_dir` that `load` reads through the same code path as the real model.
        `sizes` override the family's `tiny_sizes` defaults (validated)."""

    def sizes(self, sizes: Mapping[str, Any] | None = None) -> Any:
        """`sizes` validated by `tiny_sizes`; an unknown name or a bad value is an InputError."""
        try:
            return self.tiny_sizes.model_validate(dict(sizes or {}))
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            if first["type"] == "extra_forbidden":
                allowed = ", ".join(self.tiny_sizes.model_fields)
                message = f"the {self.name} family has no size '{where}'; sizes: {allowed}"
            else:
                message = f"size '{where}': {first['msg']}"
            raise InputError(message, field="sizes") from None

    # ------------------------------------------------------------------ tensors
    @abc.abstractmethod
    def encode(self, processor: Any, example: VisionTextExample) -> dict[str, torch.Tensor]:
        """Tensors for one example (see class docstring). With `example.answer` None: the
        generation prompt only, no labels."""

    @abc.abstractmethod
    def collate_images(
        self, processor: Any, features: Sequence[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """The image tensors of a batch from the examples' encoded features."""

    def check_clips(self, model: Any, frames: int) -> None:
        """An InputError when `model` cannot take clips of `frames` frames (families whose
        models differ override this)."""
        if not self.supports_clips:
            raise InputError(
                f"the {self.name} family does not take video clips; give it images",
                field="model",
            )

    def clip_prompt_texts(self, frames: int, seconds: float) -> list[str]:
        """The fixed text the family's processor writes around the frames of a clip of `frames`
        frames spanning `seconds`, for tokenizers trained from scratch (`build_tiny`'s corpus):
        without it, a tiny tokenizer spells that text out letter by letter. Empty: none."""
        return []

    def prepare_for_clips(self, model: Any, frames: int) -> Any:
        """`model` made ready to learn or take clips of `frames` frames, before training on clips
        (and for the benchmark's clip case): nothing to add for most families; an InputError
        when the family takes no clips."""
        self.check_clips(model, frames)
        return model

    def pad_token_id(self, processor: Any) -> int:
        return getattr(processor, "tokenizer", processor).pad_token_id

    def stop_token_ids(self, processor: Any) -> list[int]:
        """Token ids that end an answer (generation stops at the first of them)."""
        tokenizer = getattr(processor, "tokenizer", processor)
        return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []

    def collate(
        self,
        processor: Any,
        features: Sequence[dict[str, torch.Tensor]],
        *,
        padding_side: Literal["left", "right"] = "right",
        pad_to_length: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Pad encoded features into one batch (dynamic padding unless `pad_to_length`):
        `input_ids` with the pad id, `attention_mask` and the `token_keys` with 0, `labels` (when
        every example has them) with IGNORE_INDEX, so padding never carries loss; images by
        `collate_images`."""

        def pad(key: str, value: int) -> torch.Tensor:
            return pad_sequences(
                [f[key] for f in features], value, padding_side=padding_side, length=pad_to_length
            )

        batch = {
            "input_ids": pad("input_ids", self.pad_token_id(processor)),
            "attention_mask": pad("attention_mask", 0),
        }
        for key in self.token_keys:
            batch[key] = pad(key, 0)
        if all("labels" in f for f in features):
            batch["labels"] = pad("labels", IGNORE_INDEX)
        batch.update(self.collate_images(processor, features))
        return batch

    def generate(
        self, model: Any, processor: Any, examples: Sequence[VisionTextExample], **generation_kwargs
    ) -> list[str]:
        """Answer text only (no prompt echo, no chat or special tokens), one string per example.

        The batch is left-padded; `generation_kwargs` go to `model.generate`: at least
        `max_new_tokens`, `num_beams` and `logits_processor` (a `LogitsProcessorList`) are
        honoured; greedy by default.
        """
        import torch

        features = [self.encode(processor, replace(example, answer=None)) for example in examples]
        batch = self.collate(processor, features, padding_side="left")
        device = next(model.parameters()).device
        dtype = floating_dtype(model)
        batch = {key: value.to(device) for key, value in batch.items()}
        for key in self.image_keys:
            if key in batch:
                batch[key] = batch[key].to(dtype)
        kwargs: dict[str, Any] = {"max_new_tokens": 128, "do_sample": False, "num_beams": 1}
        kwargs.update(generation_kwargs)
        kwargs.setdefault("eos_token_id", self.stop_token_ids(processor))
        kwargs.setdefault("pad_token_id", self.pad_token_id(processor))
        with torch.inference_mode():
            output = model.generate(**batch, **kwargs)
        new_tokens = output[:, batch["input_ids"].shape[1] :]  # (B, generated)
        tokenizer = getattr(processor, "tokenizer", processor)
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [text.strip() for text in texts]

    # ------------------------------------------------------------------ training
    def prepare_for_training(
        self,
        model: Any,
        finetune: FinetuneSection,
        options: Mapping[str, Any] | None = None,
        *,
        gradient_checkpointing: bool = False,
        adapter: str | Path | None = None,
    ) -> Any:
        """Make the loaded model trainable as `finetune` says: PEFT LoRA / QLoRA adapters
        (targets from `lora_targets`; `adapter`: continue training that saved adapter instead)
        or full fine-tuning. Families with their own rules (e.g. only some blocks train)
        override this; `options` is the validated `family_options`."""
        from roadscene.models.finetune import prepare_model

        return prepare_model(
            model, finetune, self, gradient_checkpointing=gradient_checkpointing, adapter=adapter
        )

    def create_optimizer(
        self, model: Any, *, learning_rate: float, options: Mapping[str, Any] | None = None
    ) -> Any | None:
        """An optimizer for the Trainer (e.g. per-group learning rates), or None for the
        Trainer's default AdamW built from the training settings."""
        return None

    def make_trainer(self, options: Mapping[str, Any] | None = None, **trainer_kwargs: Any) -> Any:
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

    # ------------------------------------------------------------------ few-shot prompts
    def image_embedder(self, model: Any, processor: Any) -> ImageEmbedder | None:
        """Image -> embedding function for choosing similar demonstrations (None: the family
        has no image embedding to offer)."""
        return None

    # ------------------------------------------------------------------ real-size benchmark
    def model_from_arch(
        self,
        arch: ArchSpec,
        *,
        tokenizer: Any = None,
        device: torch.device | str = "meta",
        dtype: torch.dtype | None = None,
    ) -> Any:
        """A random-init model of a stored architecture, created on `device` ("meta": no
        memory), of the class `load` instantiates; special-token ids from `tokenizer`."""
        raise InputError(f"the {self.name} family has no stored architectures", field="arch")

    def bench_model(
        self, arch: ArchSpec, *, device: torch.device, dtype: torch.dtype, workdir: Path
    ) -> BenchModel:
        """The architecture with random weights and the family's own offline processor, plus
        its cost formulas (`roadscene.models.costs`), for the real-size benchmark."""
        raise InputError(f"the {self.name} family has no real-size benchmark", field="arch")

    def offline_processor(self, workdir: Path) -> Any:
        """The family's own offline processor (locally trained tokenizer, chat template), built
        with `build_tiny` and read back through `load`, as a user's saved model would be. Trained
        on the benchmark's texts, the BPE merges reach about one token per word, like the real
        tokenizers, so prompt lengths stay close to the real ones."""
        import torch

        from roadscene.models.costs import BENCH_TEXTS

        folder = self.build_tiny(workdir / f"{self.name}-tokenizer", seed=0, corpus=BENCH_TEXTS)
        return self.load(folder, device="cpu", dtype=torch.float32).processor

    def recipe_trainable(self, model: Any) -> dict[str, int] | None:
        """Parameter counts the family's own recipe trains on `model` (built on the meta
        device), for families whose recipe decides the trainable set; None otherwise."""
        return None

    def sequence_shape(self, features: dict[str, torch.Tensor]) -> SequenceShape:
        """Token / image / tile counts of one encoded example (for cost formulas)."""
        from roadscene.models.costs import SequenceShape

        return SequenceShape(tokens=int(features["input_ids"].shape[0]))


# ---------------------------------------------------------------------- shared helpers


def read_model_type(folder: Path) -> str:
    """`model_type` of a local model folder's config.json (an InputError when unreadable)."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise InputError(
            "not a saved model folder (no config.json); pass the folder that `roadscene train` "
            "or `roadscene model tiny` wrote, or a hub id",
            path=folder,
        )
    try:
        config = read_json(config_file)
    except InputError as err:
        raise InputError(f"config.json: {err.reason}", path=folder) from None
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise InputError("config.json names no model_type", path=folder)
    return config["model_type"]


def attach_adapter(model: Any, adapter: str | Path) -> Any:
    """The model with the PEFT adapter in `adapter` attached."""
    quiet_optional_kernel_notices()
    from peft import PeftModel

    if not (Path(adapter) / "adapter_config.json").is_file():
        raise InputError("not a PEFT adapter folder (no adapter_config.json)", path=adapter)
    with loading_errors(adapter):
        return PeftModel.from_pretrained(model, str(adapter))


def resolve_device(device: str | None) -> str:
    """`device` checked (cuda only where a GPU is visible); None: cuda if available, else cpu."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise InputError(
            f"unknown device '{device}'; use cpu, cuda or cuda:N", field="device"
        ) from None
    if parsed.type not in {"cpu", "cuda"}:
        raise InputError(f"unsupported device '{device}'; use cpu, cuda or cuda:N", field="device")
    if parsed.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0 or (parsed.index is not None and parsed.index >= count):
            raise InputError(
                f"device '{device}' is not available ({count} CUDA device(s) visible)",
                field="device",
            )
    return device


def default_dtype(device: str) -> torch.dtype:
    """Weights dtype when the user names none: 16-bit on CUDA (`cuda_half_dtype`), fp32 on CPU."""
    import torch

    return cuda_half_dtype() if device.startswith("cuda") else torch.float32


def cuda_half_dtype() -> torch.dtype:
    """The 16-bit dtype for CUDA weights and compute: bf16 where the card supports it (Ampere and
    newer), else fp16 (T4, V100), where bf16 would be emulated or fail."""
    import torch

    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def floating_dtype(model: Any) -> torch.dtype:
    """The dtype of the model's first floating-point parameter (what image tensors become)."""
    import torch

    for param in model.parameters():
        if param.dtype.is_floating_point:
            return param.dtype
    return torch.float32


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
