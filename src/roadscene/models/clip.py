"""CLIP: loading a model (local folder or hub id), embedding images and texts, and a tiny random
CLIP built offline for tests.

One loader serves everything that reads CLIP (CLIPScore in `roadscene.metrics`, the image-caption
filter in `roadscene.predict`). A folder whose `config.json` names another `model_type` is an
error before any weight is read (transformers would only warn and build a random CLIP).
Texts are truncated to CLIP's 77 tokens (the last one stays the end token, which the text
tower pools).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roadscene.errors import InputError, exception_summary
from roadscene.io import read_json

if TYPE_CHECKING:
    import torch
    from PIL import Image

CLIP_MAX_TOKENS = 77


def clip_model_type(name_or_path: str) -> str:
    """The `model_type` in the folder's (or the cached hub id's) config.json."""
    from transformers import AutoConfig

    local = Path(name_or_path)
    if local.is_dir() and (local / "config.json").is_file():
        config = read_json(local / "config.json")
        return str(config.get("model_type") if isinstance(config, dict) else None)
    try:
        return str(AutoConfig.from_pretrained(name_or_path).model_type)
    except Exception as err:  # missing, truncated or damaged files, an offline hub id
        raise InputError(
            f"cannot load CLIP model: {exception_summary(err)}",
            path=name_or_path,
            field="clip_model",
        ) from None


def load_clip(name_or_path: str, device: str | None = None) -> tuple[Any, Any]:
    """A CLIP model (eval mode, on `device`) and its processor."""
    from transformers import CLIPModel, CLIPProcessor

    model_type = clip_model_type(name_or_path)
    if model_type != "clip":
        raise InputError(
            f"not a CLIP model (config.json model_type '{model_type}', expected 'clip'); give a "
            "CLIP folder or hub id such as openai/clip-vit-base-patch32",
            path=name_or_path,
            field="clip_model",
        )
    try:
        model = CLIPModel.from_pretrained(name_or_path)
        processor = CLIPProcessor.from_pretrained(name_or_path)
    except Exception as err:  # missing, truncated or damaged files, an offline hub id
        raise InputError(
            f"cannot load CLIP model: {exception_summary(err)}",
            path=name_or_path,
            field="clip_model",
        ) from None
    if device is not None:
        model = model.to(device)
    return model.eval(), processor


def model_fingerprint(name_or_path: str) -> str:
    """Identifies the weights a cache of embeddings came from: the resolved folder with the
    sizes and times of its files (a hub id: its cached snapshot)."""
    folder = Path(name_or_path)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        try:
            folder = Path(snapshot_download(name_or_path, local_files_only=True))
        except Exception:  # noqa: BLE001 - not cached: the id itself identifies it
            return hashlib.sha256(name_or_path.encode()).hexdigest()[:16]
    parts = [str(folder.resolve())]
    for file in sorted(folder.iterdir()):
        if file.is_file():
            stat = file.stat()
            parts.append(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _features(output: Any) -> torch.Tensor:
    # transformers 5 returns a ModelOutput (projected features in `pooler_output`), 4.x a tensor.
    return output.pooler_output if hasattr(output, "pooler_output") else output


def embed_images(model: Any, processor: Any, images: list[Image.Image]) -> torch.Tensor:
    """(N, D) L2-normalised image embeddings."""
    import torch

    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        features = _features(model.get_image_features(pixel_values=pixels.to(model.device)))
    return torch.nn.functional.normalize(features.float(), dim=-1).cpu()


def embed_texts(model: Any, processor: Any, texts: list[str]) -> torch.Tensor:
    """(N, D) L2-normalised text embeddings; each text cut to CLIP's 77 tokens."""
    import torch

    tokens = processor(
        text=texts,
        return_tensors="pt",
        padding=True,
        truncation=True,
        max_length=CLIP_MAX_TOKENS,
    )
    tokens = {k: v.to(model.device) for k, v in tokens.items()}
    with torch.inference_mode():
        features = _features(model.get_text_features(**tokens))
    return torch.nn.functional.normalize(features.float(), dim=-1).cpu()


def build_tiny_clip(folder: str | Path, seed: int = 0) -> Path:
    """A tiny random CLIP (32 px images, width 32, one layer per tower) with a character-level
    CLIP tokenizer, saved like a real checkpoint; for tests, offline."""
    import string

    import torch
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
    )

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in string.ascii_lowercase + string.digits + ".,;:'_-":
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=CLIP_MAX_TOKENS)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    layers = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1}
    config = CLIPConfig(
        text_config={
            **layers,
            "vocab_size": len(vocab),
            "num_attention_heads": 2,
            "max_position_embeddings": CLIP_MAX_TOKENS,
            # the text tower pools at the first end token: its id must be the tokenizer's
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={**layers, "image_size": 32, "patch_size": 8, "num_attention_heads": 2},
        projection_dim=16,
    )
    torch.manual_seed(seed)
    folder = Path(folder)
    CLIPModel(config).save_pretrained(folder)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder
