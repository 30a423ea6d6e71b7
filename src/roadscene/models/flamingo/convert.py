"""Assemble a loadable Flamingo folder from the three published pieces.

- `--checkpoint`: OpenFlamingo's `checkpoint.pt` (perceiver, gated cross-attention, the resized
  embedding with the two trained token rows). A leading `module.` is stripped; aliased names
  (`lang_encoder.gated_cross_attn_layers.{i}.*`, `....blocks.{i}.decoder_layer.*`,
  `lang_encoder.old_decoder_blocks.{i}.*`) map onto ours.
- `--lm`: MPT-1B (`mosaicml/mpt-1b-redpajama-200b`): config.json + weights.
- `--vision`: CLIP ViT-L/14 (`openai/clip-vit-large-patch14`), loaded with `CLIPVisionModel`.

The output holds model.safetensors, config.json, the tokenizer with `<|endofchunk|>`, `<image>`,
`<PAD>` added and the CLIP image processor. Every expected key not found is listed in the error.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from roadscene.errors import InputError, exception_summary
from roadscene.io import read_json, regular_file
from roadscene.models.base import loading_errors

GPT_NEOX_TOKENIZER = "EleutherAI/gpt-neox-20b"

_ALIASES = [
    # FlamingoLMMixin keeps the cross-attention layers in a second list, and wraps each decoder
    # block in a FlamingoLayer(gated_cross_attn_layer, decoder_layer).
    (
        re.compile(r"^lang_encoder\.gated_cross_attn_layers\.(\d+)\."),
        r"lang_encoder.transformer.blocks.\1.gated_cross_attn_layer.",
    ),
    (
        re.compile(r"^lang_encoder\.transformer\.blocks\.(\d+)\.decoder_layer\."),
        r"lang_encoder.transformer.blocks.\1.",
    ),
    (
        re.compile(r"^lang_encoder\.old_decoder_blocks\.(\d+)\."),
        r"lang_encoder.transformer.blocks.\1.",
    ),
]


def canonical_name(name: str) -> str:
    """Strip a DDP/FSDP `module.` prefix and map aliased OpenFlamingo names onto ours."""
    name = name.removeprefix("module.")
    for pattern, replacement in _ALIASES:
        name = pattern.sub(replacement, name)
    return name


def resolve_source(id_or_dir: str, what: str, patterns: list[str]) -> Path:
    """A local folder as is; otherwise download the hub repo's files matching `patterns`."""
    path = Path(id_or_dir)
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(id_or_dir, allow_patterns=patterns))
    except Exception as err:  # offline, unknown repo, gated...
        raise InputError(
            f"{what} '{id_or_dir}' is not a local folder and could not be downloaded "
            f"({type(err).__name__}); download it with `huggingface-cli download {id_or_dir} "
            "--local-dir DIR` and pass DIR",
            path=id_or_dir,
        ) from None


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """OpenFlamingo checkpoint tensors by canonical name (a training checkpoint's
    `model_state_dict` is unwrapped)."""
    regular_file(path, "checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, garbage, pickled code (refused by weights_only)
        raise InputError(f"cannot read checkpoint: {exception_summary(err)}", path=path) from None
    if isinstance(state, dict) and isinstance(state.get("model_state_dict"), dict):
        state = state["model_state_dict"]
    if not isinstance(state, dict):
        raise InputError("checkpoint is not a state dict", path=path)
    return {canonical_name(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def read_lm(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """MPT config fields (for `MosaicGPTConfig`) and the LM weights of a local folder."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise InputError("language model folder has no config.json", path=folder)
    raw = read_json(config_path)
    if not isinstance(raw, dict):
        raise InputError("config.json is not a JSON object", path=config_path)
    attn = raw.get("attn_config") or {}
    qk_ln = raw.get("attn_qk_ln", attn.get("qk_ln"))
    alibi = raw.get("alibi", attn.get("alibi"))
    if not qk_ln or not alibi:
        raise InputError(
            f"not an MPT-1B style model (alibi={alibi}, qk LayerNorm={qk_ln}); expected "
            "mosaicml/mpt-1b-redpajama-200b",
            path=config_path,
        )
    # Options our MosaicGPT does not implement must be off, or the weights would be misused.
    unsupported = {
        name: value
        for name, value in {
            "logit_scale": raw.get("logit_scale"),
            "softmax_scale": raw.get("softmax_scale", attn.get("softmax_scale")),
            "clip_qkv": raw.get("attn_clip_qkv", attn.get("clip_qkv")),
            "prefix_lm": raw.get("prefix_lm", attn.get("prefix_lm")),
        }.items()
        if value not in (None, False)
    }
    if unsupported:
        raise InputError(
            f"MPT options not supported by roadscene's MosaicGPT: {unsupported}", path=config_path
        )
    needed = [key for key in ("d_model", "n_heads", "n_layers", "vocab_size") if key not in raw]
    if needed:
        raise InputError(f"config.json has no {', '.join(needed)}", path=config_path)
    fields = {
        "d_model": raw["d_model"],
        "n_heads": raw["n_heads"],
        "n_layers": raw["n_layers"],
        "mlp_ratio": raw.get("mlp_ratio", raw.get("expansion_ratio", 4)),
        "max_seq_len": raw.get("max_seq_len", 2048),
        "vocab_size": raw["vocab_size"],
        "alibi_bias_max": raw.get("alibi_bias_max", attn.get("alibi_bias_max", 8)),
    }
    weights: dict[str, torch.Tensor] = {}
    safetensor_files = sorted(folder.glob("*.safetensors"))
    bin_files = sorted(folder.glob("pytorch_model*.bin"))
    if not safetensor_files and not bin_files:
        raise InputError("no *.safetensors or pytorch_model*.bin weights", path=folder)
    for file in safetensor_files or bin_files:
        try:
            if file.suffix == ".safetensors":
                from safetensors.torch import load_file

                weights.update(load_file(str(file)))
            else:  # tensors only: weights_only refuses pickled code
                weights.update(torch.load(file, map_location="cpu", weights_only=True))
        except Exception as err:
            raise InputError(
                f"cannot read language-model weights: {exception_summary(err)}", path=file
            ) from None
    weights = {k.removeprefix("model."): v for k, v in weights.items()}
    return fields, weights


def convert_openflamingo(
    checkpoint: str | Path,
    lm: str,
    vision: str,
    out_dir: str | Path,
    *,
    tokenizer: str | None = None,
    image_size: int = 224,
    architecture: dict[str, Any] | None = None,
) -> Path:
    """Write the assembled model to `out_dir` (atomically) and return it.

    `architecture` overrides FlamingoConfig's perceiver / cross-attention fields (the defaults
    are OpenFlamingo-3B's, which no published config file records)."""
    from transformers import AutoTokenizer, CLIPVisionModel

    from roadscene.io import atomic_dir, check_output, write_json
    from roadscene.models.base import CONVERTED_MARKER, is_model_output
    from roadscene.models.flamingo.configuration_flamingo import FlamingoConfig, MosaicGPTConfig
    from roadscene.models.flamingo.modeling_flamingo import FlamingoForConditionalGeneration
    from roadscene.models.flamingo.processing_flamingo import (
        ENDOFCHUNK,
        MEDIA_TOKEN,
        FlamingoProcessor,
        add_flamingo_tokens,
        clip_image_processor,
    )

    out_dir = check_output(out_dir, folder=True, ours=is_model_output, what="a model folder")
    flamingo_weights = read_checkpoint(Path(checkpoint))
    lm_dir = resolve_source(lm, "language model", ["*.json", "*.safetensors", "*.bin", "*.txt"])
    lm_fields, lm_weights = read_lm(lm_dir)
    vision_dir = resolve_source(vision, "vision model", ["*.json", "*.safetensors", "*.txt"])
    with loading_errors(vision_dir):
        vision_model = CLIPVisionModel.from_pretrained(str(vision_dir), dtype=torch.float32)

    tokenizer_source = tokenizer
    if tokenizer_source is None:
        has_tokenizer = (lm_dir / "tokenizer.json").is_file() or (
            lm_dir / "tokenizer_config.json"
        ).is_file()
        tokenizer_source = str(lm_dir) if has_tokenizer else GPT_NEOX_TOKENIZER
    try:
        text_tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    except Exception as err:
        raise InputError(
            f"cannot load the tokenizer ({exception_summary(err, 160)}); pass --tokenizer DIR",
            path=tokenizer_source,
        ) from None
    base_size = len(text_tokenizer)
    text_tokenizer = add_flamingo_tokens(text_tokenizer)
    token_ids = [text_tokenizer.convert_tokens_to_ids(t) for t in (ENDOFCHUNK, MEDIA_TOKEN)]
    if token_ids != [base_size, base_size + 1] or text_tokenizer.pad_token_id != base_size + 2:
        raise InputError(
            f"tokenizer already has some Flamingo tokens (ids {token_ids}, pad "
            f"{text_tokenizer.pad_token_id}); expected {base_size}..{base_size + 2}",
            path=tokenizer_source,
        )

    config = FlamingoConfig(
        vision_config=vision_model.config.to_dict(),
        text_config=MosaicGPTConfig(**{**lm_fields, "vocab_size": len(text_tokenizer)}),
        endofchunk_token_id=token_ids[0],
        media_token_id=token_ids[1],
        pad_token_id=text_tokenizer.pad_token_id,
        eos_token_id=token_ids[0],
        **(architecture or {}),
    )
    with torch.device("meta"):
        model = FlamingoForConditionalGeneration(config)
    expected = model.state_dict()

    available: dict[str, torch.Tensor] = {}
    available.update({f"vision_encoder.{k}": v for k, v in vision_model.state_dict().items()})
    available.update(
        {f"lang_encoder.{k}": v for k, v in lm_weights.items() if k != "transformer.wte.weight"}
    )
    available.update(
        {k: v for k, v in flamingo_weights.items() if k.startswith(("perceiver.", "lang_encoder."))}
    )
    unused = sorted(
        f"lang_encoder.{k}"
        for k in lm_weights
        if k.startswith("transformer.") and f"lang_encoder.{k}" not in expected
    )
    if unused:
        raise InputError(
            f"{len(unused)} language-model weights have no place in MosaicGPT (biases? a "
            f"different architecture?): {', '.join(unused)}",
            path=lm,
        )
    missing = [name for name in expected if name not in available]
    if missing:
        raise InputError(
            f"{len(missing)} expected weights not found in checkpoint/LM/vision: {', '.join(missing)}",
            path=checkpoint,
        )
    wrong = [
        f"{name} {tuple(available[name].shape)} != {tuple(tensor.shape)}"
        for name, tensor in expected.items()
        if available[name].shape != tensor.shape
    ]
    if wrong:
        raise InputError(f"shape mismatch (found != expected): {'; '.join(wrong)}", path=checkpoint)
    state = {name: available[name].to(torch.float32).contiguous() for name in expected}
    model.load_state_dict(state, assign=True, strict=True)

    processor = FlamingoProcessor(text_tokenizer, clip_image_processor(image_size))
    with atomic_dir(out_dir, ours=is_model_output, what="a model folder") as staging:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        sources = {"checkpoint": str(checkpoint), "lm": str(lm), "vision": str(vision)}
        write_json(staging / CONVERTED_MARKER, sources | {"tokenizer": tokenizer_source})
    return out_dir
