"""Work a model must do, counted from its architecture: FLOPs and bytes moved.

These give the physical lower bounds printed beside each measured time:
- prefill / training: FLOPs ÷ the device's measured matmul throughput;
- decode: max(bytes read per step ÷ measured bandwidth, FLOPs per step ÷ throughput).

FLOPs are 2 · (matmul weights) · (tokens through them) plus attention (QKᵀ and AV:
4 · n_query · n_key · width per layer; causal self-attention counts half, the minimum an
implementation must do). Norms, activations, softmax and the embedding gather are left out
(they are memory-bound and small), so every figure is a lower bound. The weights are counted
on the model object itself (real or on the meta device), the token counts come from the config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn


def unwrap(model: Any) -> nn.Module:
    """The transformers model under a PEFT wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def matmul_weight_count(module: nn.Module, *, exclude: tuple[nn.Module, ...] = ()) -> int:
    """Elements of the weight matrices of every Linear / Conv2d under `module` (LoRA's small
    matrices included), minus those under the `exclude` submodules."""
    excluded = {id(sub) for ex in exclude for sub in ex.modules()}
    total = 0
    for sub in module.modules():
        if id(sub) in excluded:
            continue
        if isinstance(sub, (nn.Linear, nn.Conv2d)):
            total += sub.weight.numel()
    return total


def parameter_bytes(module: nn.Module, *, exclude: tuple[nn.Module, ...] = ()) -> int:
    excluded = {id(p) for ex in exclude for p in ex.parameters()}
    return sum(p.numel() * p.element_size() for p in module.parameters() if id(p) not in excluded)


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Total and trainable parameter counts (works on the meta device)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}


def attention_flops(n_query: int, n_key: int, width: int, *, causal: bool) -> float:
    """QKᵀ and AV for one layer and one sequence; causal halves the work."""
    flops = 4.0 * n_query * n_key * width
    return flops / 2 if causal else flops


@dataclass
class SequenceShape:
    """One sequence of a prefill or training batch.

    tokens: text length including image placeholder tokens; images: images in the sequence;
    tiles: vision-encoder inputs per image (SmolVLM tiles; 1 for Flamingo).
    """

    tokens: int
    images: int = 1
    tiles: int = 1


# ----------------------------------------------------------------------------- SmolVLM


def smolvlm_prefill_flops(
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


def smolvlm_decode_step(model: Any, *, batch: int, context: int) -> dict[str, float]:
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


def smolvlm_lora_train_flops(model: Any, shape: SequenceShape) -> float:
    """Forward everywhere, backward (input gradients) through the text model and the logits
    only: the vision tower and connector are frozen and upstream of every LoRA layer. LoRA's own
    weight gradients are counted within the text model's matmul weights."""
    forward = smolvlm_prefill_flops(model, shape, logits_tokens=shape.tokens)
    return sum(forward.values()) + forward["text"] + forward["logits"]


# ----------------------------------------------------------------------------- Flamingo


def flamingo_prefill_flops(
    model: Any, shape: SequenceShape, *, causal: bool = True, logits_tokens: int = 1
) -> dict[str, float]:
    """FLOPs of one forward over one sequence (images of `vision_config.image_size`)."""
    base = unwrap(model)
    config = base.config
    vision = config.vision_config
    patches = (vision.image_size // vision.patch_size) ** 2
    vision_tokens = patches + 1  # + CLS
    # transformers 5 flattened CLIPVisionModel (no `.vision_model` level); accept both layouts
    tower = getattr(base.vision_encoder, "vision_model", base.vision_encoder)
    embeddings = tower.embeddings
    patch_conv = matmul_weight_count(embeddings)
    vision_flops = shape.images * (
        2.0 * patches * patch_conv
        + 2.0 * vision_tokens * matmul_weight_count(base.vision_encoder, exclude=(embeddings,))
        + vision.num_hidden_layers
        * attention_flops(vision_tokens, vision_tokens, vision.hidden_size, causal=False)
    )
    latents = config.perceiver_num_latents
    perceiver_inner = config.perceiver_heads * config.perceiver_head_dim
    perceiver_flops = 0.0
    for attention, feed_forward in base.perceiver.layers:
        perceiver_flops += shape.images * (
            2.0 * latents * (attention.to_q.weight.numel() + attention.to_out.weight.numel())
            + 2.0 * (patches + latents) * attention.to_kv.weight.numel()
            + attention_flops(latents, patches + latents, perceiver_inner, causal=False)
            + 2.0 * latents * matmul_weight_count(feed_forward)
        )
    transformer = base.lang_encoder.transformer
    text = config.text_config
    cross_inner = config.cross_attn_heads * config.cross_attn_head_dim
    media_tokens = shape.images * latents
    language_flops = 0.0
    cross_flops = 0.0
    for block in transformer.blocks:
        gated = block.gated_cross_attn_layer
        excluded = (gated,) if gated is not None else ()
        language_flops += 2.0 * shape.tokens * matmul_weight_count(
            block, exclude=excluded
        ) + attention_flops(shape.tokens, shape.tokens, text.d_model, causal=causal)
        if gated is not None:
            attn = gated.attn
            cross_flops += (
                2.0
                * shape.tokens
                * (
                    attn.to_q.weight.numel()
                    + attn.to_out.weight.numel()
                    + matmul_weight_count(gated.ff)
                )
                + 2.0 * media_tokens * attn.to_kv.weight.numel()
                + attention_flops(shape.tokens, latents, cross_inner, causal=False)
            )
    return {
        "vision": vision_flops,
        "perceiver": perceiver_flops,
        "text": language_flops,
        "cross_attention": cross_flops,
        "logits": 2.0 * logits_tokens * transformer.wte.weight.numel(),
    }


def flamingo_decode_step(model: Any, *, batch: int, context: int) -> dict[str, float]:
    """Bytes read and FLOPs of one decode step (cached self-attention keys/values; the
    cross-attention reads each row's image latents)."""
    base = unwrap(model)
    config = base.config
    transformer = base.lang_encoder.transformer
    element = transformer.wte.weight.element_size()
    text = config.text_config
    layers = len(transformer.blocks)
    cross_layers = sum(block.gated_cross_attn_layer is not None for block in transformer.blocks)
    latents = config.perceiver_num_latents
    # Blocks (self- and cross-attention) plus the whole embedding (tied logits read every row).
    weight_bytes = parameter_bytes(transformer)
    kv_bytes = 2 * layers * text.d_model * context * element * batch
    media_bytes = cross_layers * latents * config.vision_config.hidden_size * element * batch
    cross_inner = config.cross_attn_heads * config.cross_attn_head_dim
    flops = batch * (
        2.0 * (matmul_weight_count(transformer) + transformer.wte.weight.numel())
        + layers * attention_flops(1, context, text.d_model, causal=False)
        + cross_layers * attention_flops(1, latents, cross_inner, causal=False)
    )
    return {"bytes": float(weight_bytes + kv_bytes + media_bytes), "flops": flops}


def flamingo_recipe_train_flops(model: Any, shape: SequenceShape) -> float:
    """Forward everywhere; backward: input gradients through the language model (cross-attention
    sits in front of the first block, so gradients flow through every frozen block), weight
    gradients for cross-attention, the perceiver (both), and the tied embedding (logits)."""
    forward = flamingo_prefill_flops(model, shape, logits_tokens=shape.tokens)
    backward = (
        forward["text"]
        + 2 * forward["cross_attention"]
        + 2 * forward["perceiver"]
        + 2 * forward["logits"]
    )
    return sum(forward.values()) + backward
