"""SmolVLM2 (Idefics3 architecture) through transformers: loading, tiny checkpoints, encoding,
padding and generation.

The real model is `HuggingFaceTB/SmolVLM2-2.2B-Instruct`. Tiny checkpoints built by `build_tiny`
use the same classes (`SmolVLMForConditionalGeneration`, `SmolVLMProcessor`) and load through
`AutoModelForImageTextToText` / `AutoProcessor`, so tests exercise the real code path.

Chat format (the SmolVLM2 template): the generation prompt is
`<|im_start|>User:<image>{prompt}<end_of_utterance>\\nAssistant:` with `<image>` expanded by the
processor into `<fake_token_around_image><global-img><image>*N<fake_token_around_image>`; the
supervised answer is ` {answer}<end_of_utterance>`, exactly what the template renders for an
assistant turn, so training and generation see the same prompt tokens.
"""

from __future__ import annotations

import json
import random
import re
import weakref
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
    cuda_half_dtype,
    default_dtype,
    pad_images,
    pad_sequences,
)

if TYPE_CHECKING:
    import torch

DEFAULT_MODEL_ID = "HuggingFaceTB/SmolVLM2-2.2B-Instruct"
END_OF_UTTERANCE = "<end_of_utterance>"
_PROMPT_CACHE_SIZE = 4096

# SmolVLM2's chat template (as shipped with the Instruct checkpoints).
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
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


class SmolVLMFamily(ModelFamily):
    """SmolVLM2 via `AutoModelForImageTextToText`. LoRA by default on the text model's q/v."""

    name = "smolvlm"
    default_model_id = DEFAULT_MODEL_ID
    # Full-match regex: only the language model's attention q/v projections, never the vision
    # tower's (`model.vision_model.encoder.layers.N.self_attn.q_proj` has the same leaf names).
    lora_target_modules = r".*\.text_model\..*\.(q_proj|v_proj)"
    vision_module_name = "model.vision_model"

    def __init__(self) -> None:
        # processor -> {(prompt text, image count): expanded prompt ids}, for one-tile processors
        self._prompt_ids: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers may pickle the dataset (and this family); the cache is rebuilt there.
        return {k: v for k, v in self.__dict__.items() if k != "_prompt_ids"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._prompt_ids = weakref.WeakKeyDictionary()

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
        from transformers import AutoModelForImageTextToText, AutoProcessor

        source = str(model_name_or_path)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype is None:
            dtype = default_dtype(device)
        kwargs: dict[str, Any] = {"dtype": dtype}
        if quantization == "4bit":
            kwargs["quantization_config"] = bnb_4bit_config()
            kwargs["device_map"] = {"": device}
        elif quantization != "none":
            raise InputError(
                f"unknown quantization '{quantization}'; allowed: none, 4bit", field="quantization"
            )

        # Our training runs save the processor (with its chat template) beside the adapter.
        processor_source = source
        if adapter is not None and (Path(adapter) / "processor_config.json").is_file():
            processor_source = str(adapter)
        try:
            processor = AutoProcessor.from_pretrained(processor_source)
            model = AutoModelForImageTextToText.from_pretrained(source, **kwargs)
        except (OSError, ValueError) as err:
            if Path(source).is_dir() and (Path(source) / "config.json").is_file():
                raise  # a real folder that fails to load is a bug to see in full
            if Path(source).is_dir():
                raise InputError(
                    "not a saved model folder (no config.json); pass the folder that "
                    "`roadscene train` / `roadscene model tiny` wrote, or a hub id",
                    path=source,
                ) from None
            raise InputError(
                "cannot load model: not a local model folder and not available from "
                "the Hugging Face hub (offline or not downloaded); run `huggingface-cli download "
                f"{source}` with network access or pass --model DIR of a saved model "
                f"({type(err).__name__})",
                path=source,
            ) from None
        if quantization == "none":
            model.to(device)
        if adapter is not None:
            from peft import PeftModel

            if not (Path(adapter) / "adapter_config.json").is_file():
                raise InputError("not a PEFT adapter folder (no adapter_config.json)", path=adapter)
            model = PeftModel.from_pretrained(model, str(adapter))
        model.eval()
        return LoadedModel(
            model=model,
            processor=processor,
            source=source,
            adapter=str(adapter) if adapter is not None else None,
        )

    # ----------------------------------------------------------------------------- tiny model
    def build_tiny(
        self,
        out_dir: str | Path,
        *,
        corpus: Sequence[str] | None = None,
        seed: int = 0,
        image_size: int = 96,
        patch_size: int = 12,
        scale_factor: int = 2,
        vision_hidden_size: int = 64,
        vision_layers: int = 2,
        text_hidden_size: int = 64,
        text_layers: int = 2,
        num_attention_heads: int = 4,
        vocab_size: int = 1000,
    ) -> Path:
        """Random-init SmolVLM with a BPE tokenizer trained on `corpus` (plus a built-in corpus
        covering the chat roles and target vocabulary), one image tile of `image_size` px.

        Image tokens per image = (image_size / patch_size)^2 / scale_factor^2.
        """
        import torch
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        from transformers import (
            PreTrainedTokenizerFast,
            SmolVLMConfig,
            SmolVLMForConditionalGeneration,
            SmolVLMImageProcessor,
            SmolVLMProcessor,
        )
        from transformers.models.smolvlm.video_processing_smolvlm import SmolVLMVideoProcessor

        from roadscene.io import atomic_dir, write_json

        patches_per_side = image_size // patch_size
        if image_size % patch_size or patches_per_side % scale_factor:
            raise InputError(
                f"image_size {image_size} must be a multiple of patch_size {patch_size} and the "
                f"patch grid ({patches_per_side}) a multiple of scale_factor {scale_factor}",
                field="image_size",
            )
        image_seq_len = (patches_per_side // scale_factor) ** 2

        random.seed(seed)
        torch.manual_seed(seed)
        # Answers follow "Assistant:" with a space, so learn merges for that form too.
        texts = [f"Assistant: {text}" for text in [*_BUILTIN_CORPUS, *(corpus or [])]]

        bpe = Tokenizer(models.BPE())
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        bpe.decoder = decoders.ByteLevel()
        bpe.train_from_iterator(
            texts,
            trainers.BpeTrainer(
                vocab_size=vocab_size,
                special_tokens=SPECIAL_TOKENS,
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                show_progress=False,
            ),
        )
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
        tile = {"longest_edge": image_size}
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
            "hidden_size": text_hidden_size,
            "intermediate_size": 4 * text_hidden_size,
            "num_hidden_layers": text_layers,
            "num_attention_heads": num_attention_heads,
            "num_key_value_heads": num_attention_heads,
            "max_position_embeddings": 4096,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "tie_word_embeddings": False,
        }
        vision_config = {
            "hidden_size": vision_hidden_size,
            "intermediate_size": 4 * vision_hidden_size,
            "num_hidden_layers": vision_layers,
            "num_attention_heads": num_attention_heads,
            "image_size": image_size,
            "patch_size": patch_size,
        }
        config = SmolVLMConfig(
            vision_config=vision_config,
            text_config=text_config,
            scale_factor=scale_factor,
            image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
            pad_token_id=tokenizer.pad_token_id,
        )
        model = SmolVLMForConditionalGeneration(config)
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.bos_token_id = tokenizer.bos_token_id

        out_dir = Path(out_dir)
        with atomic_dir(out_dir) as tmp:
            model.save_pretrained(tmp)
            processor.save_pretrained(tmp)
            write_json(
                tmp / "roadscene_tiny.json",
                {
                    "family": self.name,
                    "seed": seed,
                    "image_size": image_size,
                    "patch_size": patch_size,
                    "scale_factor": scale_factor,
                    "image_seq_len": image_seq_len,
                    "vision_hidden_size": vision_hidden_size,
                    "vision_layers": vision_layers,
                    "text_hidden_size": text_hidden_size,
                    "text_layers": text_layers,
                    "vocab_size": len(tokenizer),
                    "corpus_lines": len(texts),
                },
            )
        return out_dir

    # ----------------------------------------------------------------------------- tensors
    def prompt_text(self, processor: Any, example: VisionTextExample) -> str:
        """The chat-formatted generation prompt (`<image>` not yet expanded)."""
        content: list[dict[str, str]] = [{"type": "image"} for _ in example.images]
        content.append({"type": "text", "text": example.prompt})
        return processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True
        )

    def encode(self, processor: Any, example: VisionTextExample) -> dict[str, torch.Tensor]:
        import torch

        prompt = self.prompt_text(processor, example)
        image_processor = processor.image_processor
        if getattr(image_processor, "do_image_splitting", True):
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
            "pixel_values": encoded["pixel_values"][0],  # (N_img, 3, H, W)
            "pixel_attention_mask": encoded["pixel_attention_mask"][0].bool(),  # (N_img, H, W)
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

    def collate(
        self,
        processor: Any,
        features: Sequence[dict[str, torch.Tensor]],
        *,
        padding_side: Literal["left", "right"] = "right",
        pad_to_length: int | None = None,
    ) -> dict[str, torch.Tensor]:
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
            "pixel_values": pad_images([f["pixel_values"] for f in features]),
            "pixel_attention_mask": pad_images([f["pixel_attention_mask"] for f in features]),
        }
        if all("labels" in f for f in features):
            batch["labels"] = pad_sequences(
                [f["labels"] for f in features],
                IGNORE_INDEX,
                padding_side=padding_side,
                length=pad_to_length,
            )
        return batch

    def stop_token_ids(self, processor: Any) -> list[int]:
        tokenizer = processor.tokenizer
        ids = [tokenizer.convert_tokens_to_ids(END_OF_UTTERANCE)]
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
            ids.append(tokenizer.eos_token_id)
        return ids

    def generate(
        self, model: Any, processor: Any, examples: Sequence[VisionTextExample], **generation_kwargs
    ) -> list[str]:
        import torch

        features = [self.encode(processor, replace(ex, answer=None)) for ex in examples]
        batch = self.collate(processor, features, padding_side="left")
        device = next(model.parameters()).device
        dtype = _floating_dtype(model)
        batch = {k: v.to(device) for k, v in batch.items()}
        batch["pixel_values"] = batch["pixel_values"].to(dtype)
        kwargs: dict[str, Any] = {"max_new_tokens": 128, "do_sample": False, "num_beams": 1}
        kwargs.update(generation_kwargs)
        kwargs.setdefault("eos_token_id", self.stop_token_ids(processor))
        kwargs.setdefault("pad_token_id", processor.tokenizer.pad_token_id)
        with torch.inference_mode():
            output = model.generate(**batch, **kwargs)
        new_tokens = output[:, batch["input_ids"].shape[1] :]  # (B, generated)
        texts = processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [text.strip() for text in texts]

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


def bnb_4bit_config() -> Any:
    """QLoRA quantisation: 4-bit NF4 weights, double quantisation, bf16 compute."""
    import torch
    from transformers import BitsAndBytesConfig

    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise InputError(
            "QLoRA needs bitsandbytes, which is not installed: pip install 'roadscene[qlora]'",
            field="finetune.method",
        ) from None
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=cuda_half_dtype() if torch.cuda.is_available() else torch.bfloat16,
    )


def _floating_dtype(model: Any) -> torch.dtype:
    import torch

    for param in model.parameters():
        if param.dtype.is_floating_point:
            return param.dtype
    return torch.float32


def read_corpus(path: str | Path) -> list[str]:
    """Texts for the tiny tokenizer: a JSON/JSONL data file (its `response`, `caption`,
    `prompt` and `target` strings) or a plain text file (one text per line)."""
    path = Path(path)
    if path.suffix in {".json", ".jsonl"}:
        from roadscene.io import read_records

        texts = []
        for _, record in read_records(path):
            texts.extend(
                str(record[key])
                for key in ("prompt", "response", "caption", "target")
                if isinstance(record.get(key), str)
            )
        if not texts:
            raise InputError(
                "no 'prompt', 'response', 'caption' or 'target' strings to train on", path=path
            )
        return texts
    from roadscene.io import read_text

    return [line for line in read_text(path).splitlines() if line.strip()]


def describe_tiny(model_dir: str | Path) -> dict[str, Any]:
    """The sizes recorded by `build_tiny` (empty for other checkpoints)."""
    marker = Path(model_dir) / "roadscene_tiny.json"
    return json.loads(marker.read_text()) if marker.is_file() else {}
