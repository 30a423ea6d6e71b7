"""MPT-1B ("MosaicGPT") decoder, native: ALiBi, q/k LayerNorm, KV cache, tied logits.

Parameter names match the published `mosaicml/mpt-1b-redpajama-200b` state dict
(`transformer.wte.weight`, `transformer.blocks.{i}.attn.Wqkv.weight`, ...), so it loads as is.
transformers' own `MptForCausalLM` cannot load it: it has no q/k LayerNorm.

Order: ALiBi → attention → MLP → block → transformer trunk → causal-LM wrapper.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import CausalLMOutputWithPast

from roadscene.models.flamingo.configuration_flamingo import MosaicGPTConfig


def alibi_slopes(n_heads: int, alibi_bias_max: int) -> torch.Tensor:
    """Per-head ALiBi slopes 2^(-h·max/H) for h = 1..H (2^(-h/2) for MPT-1B's 16 heads, max 8)."""
    exponents = torch.arange(1, n_heads + 1, dtype=torch.float32) * (alibi_bias_max / n_heads)
    return torch.pow(2.0, -exponents)  # (H,)


def build_attention_bias(
    config: MosaicGPTConfig,
    query_length: int,
    past_length: int,
    attention_mask: torch.Tensor | None,
    batch_size: int,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """Additive attention bias: ALiBi + causal mask + key padding mask.

    ALiBi only depends on the distance between query and key, so left padding (masked keys) leaves
    real tokens' scores unchanged. A query always sees itself, so the padding rows of a
    left-padded batch never get an all-masked softmax.

    Returns (B, H, T_q, T_k) with T_k = past_length + query_length.
    """
    key_length = past_length + query_length
    query_positions = torch.arange(past_length, key_length, device=device)
    key_positions = torch.arange(key_length, device=device)
    distance = key_positions[None, :] - query_positions[:, None]  # (T_q, T_k), <= 0 when visible
    slopes = alibi_slopes(config.n_heads, config.alibi_bias_max).to(device)
    bias = (slopes[:, None, None] * distance[None].float()).to(dtype)  # (H, T_q, T_k)
    allowed = (distance <= 0)[None, None]  # (1, 1, T_q, T_k)
    if attention_mask is not None:
        if attention_mask.shape != (batch_size, key_length):
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)}, expected "
                f"({batch_size}, {key_length}) = (batch, cached + new tokens)"
            )
        allowed = allowed & attention_mask.bool()[:, None, None, :]  # (B, 1, T_q, T_k)
    allowed = allowed | (distance == 0)[None, None]
    bias = bias[None].expand(allowed.shape[0], -1, -1, -1)  # (B|1, H, T_q, T_k)
    return bias.masked_fill(~allowed, torch.finfo(dtype).min)


class MosaicGPTAttention(nn.Module):
    """Multi-head self-attention with LayerNorm on q and k over the full width (before the head
    split); the cache stores k after that LayerNorm."""

    def __init__(self, config: MosaicGPTConfig, layer_idx: int):
        super().__init__()
        self.n_heads = config.n_heads
        self.head_dim = config.head_dim
        self.layer_idx = layer_idx
        width = config.d_model
        self.Wqkv = nn.Linear(width, 3 * width, bias=False)
        self.q_ln = nn.LayerNorm(width, eps=config.layer_norm_eps, bias=False)
        self.k_ln = nn.LayerNorm(width, eps=config.layer_norm_eps, bias=False)
        self.out_proj = nn.Linear(width, width, bias=False)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_bias: torch.Tensor,
        cache: Cache | None = None,
    ) -> torch.Tensor:
        batch_size, query_length, width = hidden_states.shape
        query, key, value = self.Wqkv(hidden_states).chunk(3, dim=-1)  # 3 × (B, T, C)
        query = self.q_ln(query)
        key = self.k_ln(key)
        # (B, T, C) -> (B, nh, T, hs)
        query = query.view(batch_size, query_length, self.n_heads, self.head_dim).transpose(1, 2)
        key = key.view(batch_size, query_length, self.n_heads, self.head_dim).transpose(1, 2)
        value = value.view(batch_size, query_length, self.n_heads, self.head_dim).transpose(1, 2)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)  # (B, nh, T_k, hs)
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_bias)
        # (B, nh, T, hs) -> (B, T, C)
        attended = attended.transpose(1, 2).reshape(batch_size, query_length, width)
        return self.out_proj(attended)


class MosaicGPTMLP(nn.Module):
    def __init__(self, config: MosaicGPTConfig):
        super().__init__()
        self.mlp_up = nn.Linear(config.d_model, config.mlp_ratio * config.d_model, bias=False)
        self.mlp_act = nn.GELU(approximate="none")
        self.mlp_down = nn.Linear(config.mlp_ratio * config.d_model, config.d_model, bias=False)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.mlp_down(self.mlp_act(self.mlp_up(hidden_states)))


class MosaicGPTBlock(GradientCheckpointingLayer):
    """Pre-LN block: `x += out_proj(attn(LN1(x)))`; `x += W_down·GELU(W_up·LN2(x))`.

    With activation checkpointing on (training), the block's activations are recomputed in the
    backward pass; the cache must then be passed by keyword (it is dropped)."""

    def __init__(self, config: MosaicGPTConfig, layer_idx: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps, bias=False)
        self.attn = MosaicGPTAttention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps, bias=False)
        self.mlp = MosaicGPTMLP(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_bias: torch.Tensor,
        cache: Cache | None = None,
    ) -> torch.Tensor:
        hidden_states = hidden_states + self.attn(self.ln_1(hidden_states), attention_bias, cache)
        return hidden_states + self.mlp(self.ln_2(hidden_states))


class MosaicGPTTransformer(nn.Module):
    """Embedding, blocks, final LayerNorm. No positional embeddings (ALiBi).

    `block_class` lets Flamingo use blocks that add gated cross-attention; extra keyword
    arguments of `forward` are passed to every block.
    """

    def __init__(self, config: MosaicGPTConfig, block_class: type[nn.Module] = MosaicGPTBlock):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList([block_class(config, i) for i in range(config.n_layers)])
        self.ln_f = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps, bias=False)

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        **block_kwargs,
    ) -> torch.Tensor:
        batch_size, query_length = input_ids.shape
        hidden_states = self.wte(input_ids)  # (B, T, C)
        past_length = cache.get_seq_length() if cache is not None else 0
        attention_bias = build_attention_bias(
            self.config,
            query_length,
            past_length,
            attention_mask,
            batch_size,
            hidden_states.dtype,
            hidden_states.device,
        )
        for block in self.blocks:
            hidden_states = block(hidden_states, attention_bias, cache=cache, **block_kwargs)
        return self.ln_f(hidden_states)  # (B, T, C)

    def logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Logits tied to the input embedding: (B, T, C) -> (B, T, V)."""
        return F.linear(hidden_states, self.wte.weight)


def causal_lm_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    num_items_in_batch: torch.Tensor | int | None = None,
) -> torch.Tensor:
    """Next-token cross-entropy in fp32; label -100 is ignored. With `num_items_in_batch` (the
    Trainer's count of supervised tokens over the accumulated batch) the sum is divided by it,
    so gradient accumulation weighs every token equally; otherwise the mean."""
    shifted_logits = logits[:, :-1].float()  # (B, T-1, V)
    shifted_labels = labels[:, 1:].to(logits.device)  # (B, T-1)
    loss = F.cross_entropy(
        shifted_logits.reshape(-1, shifted_logits.shape[-1]),
        shifted_labels.reshape(-1),
        ignore_index=-100,
        reduction="sum" if num_items_in_batch is not None else "mean",
    )
    if num_items_in_batch is not None:
        loss = loss / num_items_in_batch
    return loss


class MosaicGPTPreTrainedModel(PreTrainedModel):
    config_class = MosaicGPTConfig
    base_model_prefix = "transformer"
    _no_split_modules = ["MosaicGPTBlock"]
    supports_gradient_checkpointing = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.get_text_config().initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)


class MosaicGPTForCausalLM(MosaicGPTPreTrainedModel, GenerationMixin):
    """The bare MPT-1B language model (loads `mosaicml/mpt-1b-redpajama-200b` weights)."""

    def __init__(self, config: MosaicGPTConfig):
        super().__init__(config)
        self.transformer = MosaicGPTTransformer(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.transformer.wte = value

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        if use_cache is None:  # no cache while training: nothing would read it
            use_cache = self.config.use_cache and not self.training
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        hidden_states = self.transformer(input_ids, attention_mask, cache if use_cache else None)
        logits = self.transformer.logits(hidden_states)  # (B, T, V)
        loss = causal_lm_loss(logits, labels) if labels is not None else None
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=cache if use_cache else None)
