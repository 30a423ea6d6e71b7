"""OpenFlamingo's costs for the real-size benchmark: FLOPs of a forward and of a training step of
the recipe, bytes and FLOPs of one decode step (see `roadscene.models.costs`)."""

from __future__ import annotations

from typing import Any

from roadscene.models.costs import (
    SequenceShape,
    attention_flops,
    matmul_weight_count,
    parameter_bytes,
    unwrap,
)


def prefill_flops(
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


def decode_step(model: Any, *, batch: int, context: int) -> dict[str, float]:
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


def recipe_train_flops(model: Any, shape: SequenceShape) -> float:
    """Forward everywhere; backward: input gradients through the language model (cross-attention
    sits in front of the first block, so gradients flow through every frozen block), weight
    gradients for cross-attention, the perceiver (both), and the tied embedding (logits)."""
    forward = prefill_flops(model, shape, logits_tokens=shape.tokens)
    backward = (
        forward["text"]
        + 2 * forward["cross_attention"]
        + 2 * forward["perceiver"]
        + 2 * forward["logits"]
    )
    return sum(forward.values()) + backward
