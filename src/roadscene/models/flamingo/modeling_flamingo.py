"""Flamingo (OpenFlamingo-3B layout), native: CLIP vision → perceiver resampler → gated
cross-attention before every MosaicGPT block.

Parameter names follow OpenFlamingo's checkpoints (`perceiver.layers.{l}.0.to_q.weight`,
`lang_encoder.transformer.blocks.{i}.gated_cross_attn_layer.attn_gate`, ...), so published
weights load without renaming. Equations and checkpoint layout: docs/flamingo.md.

Clips: one media may hold F frames (`vision_x` (B, T_img, F, 3, H, W)); the perceiver's
latents attend to the patches of all of them. Without frame embeddings they would be an
unordered set, so a model that takes clips has `config.max_num_frames` learned frame embeddings
(OpenFlamingo's optional `frame_embs`, zero-initialised here so a still image is encoded as
before), added to each frame's patches. Rows of a batch with fewer frames are padded and masked
(`frame_mask`).

Order: perceiver → masked cross-attention → gated block → Flamingo decoder block → model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import CLIPVisionModel, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import ModelOutput

from roadscene.models.flamingo.configuration_flamingo import FlamingoConfig, MosaicGPTConfig
from roadscene.models.flamingo.modeling_mosaicgpt import (
    MosaicGPTBlock,
    MosaicGPTTransformer,
    causal_lm_loss,
)


def feed_forward(dim: int, mult: int) -> nn.Sequential:
    """`W2·GELU(W1·LN(x))`, exact GELU, no biases; indices 0/1/3 match the checkpoint names."""
    return nn.Sequential(
        nn.LayerNorm(dim),
        nn.Linear(dim, dim * mult, bias=False),
        nn.GELU(),
        nn.Linear(dim * mult, dim, bias=False),
    )


class PerceiverAttention(nn.Module):
    """Latents attend to [media; latents] (keys over both), no mask."""

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        self.heads = heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
        inner = heads * head_dim
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(
        self, media: torch.Tensor, latents: torch.Tensor, media_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """media (B, T, n_media, D), latents (B, T, n_latents, D) -> (B, T, n_latents, D);
        `media_mask` (B, T, n_media) False for padding the latents must not see."""
        batch_size, num_media, num_latents, _ = latents.shape
        media = self.norm_media(media)
        latents = self.norm_latents(latents)
        query = self.to_q(latents)  # (B, T, n_lat, h·d)
        key, value = self.to_kv(torch.cat([media, latents], dim=-2)).chunk(2, dim=-1)

        def split_heads(x: torch.Tensor) -> torch.Tensor:
            # (B, T, n, h·d) -> (B, h, T, n, d)
            return x.unflatten(-1, (self.heads, self.head_dim)).permute(0, 3, 1, 2, 4)

        query, key, value = split_heads(query) * self.scale, split_heads(key), split_heads(value)
        scores = query @ key.transpose(-1, -2)  # (B, h, T, n_lat, n_media + n_lat)
        if media_mask is not None:
            keep = torch.cat([media_mask, media_mask.new_ones(latents.shape[:3])], dim=-1)
            # (B, T, n_media + n_lat) -> (B, 1, T, 1, n_media + n_lat)
            scores = scores.masked_fill(~keep[:, None, :, None, :], torch.finfo(scores.dtype).min)
        scores = scores - scores.amax(dim=-1, keepdim=True).detach()
        attended = scores.softmax(dim=-1) @ value  # (B, h, T, n_lat, d)
        # (B, h, T, n_lat, d) -> (B, T, n_lat, h·d)
        attended = attended.permute(0, 2, 3, 1, 4).reshape(batch_size, num_media, num_latents, -1)
        return self.to_out(attended)


class PerceiverResampler(nn.Module):
    """Maps each image's patch tokens to a fixed number of latents: (B, T, F, v, D) -> (B, T, n, D)."""

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        head_dim: int,
        num_latents: int,
        ff_mult: int,
        max_num_frames: int | None = None,
    ):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(num_latents, dim))
        self.frame_embs = (
            nn.Parameter(torch.zeros(max_num_frames, dim)) if max_num_frames is not None else None
        )
        self.layers = nn.ModuleList(
            [
                nn.ModuleList(
                    [PerceiverAttention(dim, heads, head_dim), feed_forward(dim, ff_mult)]
                )
                for _ in range(depth)
            ]
        )
        self.norm = nn.LayerNorm(dim)

    def forward(
        self, features: torch.Tensor, frame_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """features (B, T, F, v, D); `frame_mask` (B, T, F) False for padding frames."""
        batch_size, num_media, num_frames, patches = features.shape[:4]
        if self.frame_embs is not None:
            if num_frames > self.frame_embs.shape[0]:
                raise ValueError(
                    f"{num_frames} frames per media but frame embeddings for "
                    f"{self.frame_embs.shape[0]} (config.max_num_frames)"
                )
            features = features + self.frame_embs[:num_frames, None, :].to(features.dtype)
        elif num_frames > 1:
            raise ValueError(
                "several frames per media need frame embeddings (config.max_num_frames); "
                "without them the perceiver cannot tell the frames' order"
            )
        media = features.flatten(2, 3)  # (B, T, F, v, D) -> (B, T, F·v, D)
        media_mask = None
        if frame_mask is not None:
            media_mask = frame_mask.bool().repeat_interleave(patches, dim=-1)  # (B, T, F·v)
        latents = self.latents.expand(batch_size, num_media, -1, -1)  # (B, T, n, D)
        for attention, ff in self.layers:
            latents = attention(media, latents, media_mask) + latents
            latents = ff(latents) + latents
        return self.norm(latents)


class MaskedCrossAttention(nn.Module):
    """Text attends to the latents of its own (most recent) image only.

    `text_time[b, i]` is the number of `<image>` tokens at or before position i; token i sees
    image `text_time` (1-based). Tokens with `text_time == 0` get a zero attention output.
    """

    def __init__(self, dim: int, dim_visual: int, heads: int, head_dim: int):
        super().__init__()
        self.heads = heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
        inner = heads * head_dim
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim_visual, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(
        self, hidden_states: torch.Tensor, media: torch.Tensor, text_time: torch.Tensor
    ) -> torch.Tensor:
        """hidden_states (B, T_txt, D), media (B, T_img, n, D_v), text_time (B, T_txt)."""
        batch_size, text_length, _ = hidden_states.shape
        num_media, num_latents = media.shape[1:3]
        query = self.to_q(self.norm(hidden_states))  # (B, T_txt, h·d)
        key, value = self.to_kv(media.flatten(1, 2)).chunk(2, dim=-1)  # (B, T_img·n, h·d) each

        def split_heads(x: torch.Tensor) -> torch.Tensor:
            # (B, L, h·d) -> (B, h, L, d)
            return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

        query, key, value = split_heads(query) * self.scale, split_heads(key), split_heads(value)
        scores = query @ key.transpose(-1, -2)  # (B, h, T_txt, T_img·n)
        media_time = torch.arange(1, num_media + 1, device=media.device).repeat_interleave(
            num_latents
        )  # (T_img·n,) image index of each latent
        sees = (
            text_time[:, None, :, None] == media_time[None, None, None, :]
        )  # (B, 1, T_txt, T_img·n)
        scores = scores.masked_fill(~sees, torch.finfo(scores.dtype).min)
        scores = scores - scores.amax(dim=-1, keepdim=True).detach()
        weights = scores.softmax(dim=-1)
        weights = weights.masked_fill((text_time == 0)[:, None, :, None], 0.0)
        attended = weights @ value  # (B, h, T_txt, d)
        # (B, h, T_txt, d) -> (B, T_txt, h·d)
        attended = attended.transpose(1, 2).reshape(batch_size, text_length, -1)
        return self.to_out(attended)


class GatedCrossAttentionBlock(nn.Module):
    """`x += tanh(attn_gate)·XAttn(LN(x), media)`; `x += tanh(ff_gate)·FF(x)` (FF on every token)."""

    def __init__(
        self, dim: int, dim_visual: int, heads: int, head_dim: int, ff_mult: int, gate_init: float
    ):
        super().__init__()
        self.attn = MaskedCrossAttention(dim, dim_visual, heads, head_dim)
        self.attn_gate = nn.Parameter(torch.tensor([gate_init]))
        self.ff = feed_forward(dim, ff_mult)
        self.ff_gate = nn.Parameter(torch.tensor([gate_init]))

    def forward(
        self, hidden_states: torch.Tensor, media: torch.Tensor, text_time: torch.Tensor
    ) -> torch.Tensor:
        hidden_states = hidden_states + self.attn_gate.tanh() * self.attn(
            hidden_states, media, text_time
        )
        return hidden_states + self.ff_gate.tanh() * self.ff(hidden_states)


class FlamingoDecoderBlock(MosaicGPTBlock):
    """A MosaicGPT block with a gated cross-attention layer in front of it.

    The MPT parameters keep their published names (`ln_1`, `attn.Wqkv`, ...); the cross-attention
    lives under `gated_cross_attn_layer` as in OpenFlamingo checkpoints.
    """

    def __init__(self, config: MosaicGPTConfig, layer_idx: int, flamingo_config: FlamingoConfig):
        super().__init__(config, layer_idx)
        self.gated_cross_attn_layer = (
            GatedCrossAttentionBlock(
                dim=config.d_model,
                dim_visual=flamingo_config.vision_config.hidden_size,
                heads=flamingo_config.cross_attn_heads,
                head_dim=flamingo_config.cross_attn_head_dim,
                ff_mult=flamingo_config.cross_attn_ff_mult,
                gate_init=flamingo_config.gate_init,
            )
            if (layer_idx + 1) % flamingo_config.cross_attn_every_n_layers == 0
            else None
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_bias: torch.Tensor,
        cache: Cache | None = None,
        media: torch.Tensor | None = None,
        text_time: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.gated_cross_attn_layer is not None:
            hidden_states = self.gated_cross_attn_layer(hidden_states, media, text_time)
        return super().forward(hidden_states, attention_bias, cache=cache)


class FlamingoLanguageModel(nn.Module):
    """`lang_encoder`: the MosaicGPT trunk under `transformer`, with Flamingo blocks."""

    def __init__(self, config: FlamingoConfig):
        super().__init__()

        def block(text_config: MosaicGPTConfig, layer_idx: int) -> FlamingoDecoderBlock:
            return FlamingoDecoderBlock(text_config, layer_idx, config)

        self.transformer = MosaicGPTTransformer(config.text_config, block_class=block)


@dataclass
class FlamingoOutput(ModelOutput):
    """Output of :class:`FlamingoForConditionalGeneration`.

    loss: () next-token loss over labels != -100, when labels are given.
    logits: (B, T, V).
    cache: the self-attention KV cache (cross-attention keys come from `media`, not cached).
    media: (B, T_img, n_latents, D_v) perceiver output, reusable across calls.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    cache: Cache | None = None
    media: torch.Tensor | None = None


class FlamingoPreTrainedModel(PreTrainedModel):
    config_class = FlamingoConfig
    base_model_prefix = ""
    main_input_name = "input_ids"
    _no_split_modules = ["FlamingoDecoderBlock", "CLIPEncoderLayer"]
    supports_gradient_checkpointing = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.text_config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, PerceiverResampler):
            init.normal_(module.latents, mean=0.0, std=1.0)
            if module.frame_embs is not None:  # zero: a still image is encoded as without them
                init.zeros_(module.frame_embs)
        elif isinstance(module, GatedCrossAttentionBlock):
            init.constant_(module.attn_gate, self.config.gate_init)
            init.constant_(module.ff_gate, self.config.gate_init)


class FlamingoForConditionalGeneration(FlamingoPreTrainedModel, GenerationMixin):
    """OpenFlamingo: `vision_encoder` (CLIP, frozen), `perceiver`, `lang_encoder` (MosaicGPT with
    gated cross-attention). Inputs: `input_ids` with one `<image>` token per image and
    `vision_x` (B, T_img, F, 3, H, W)."""

    def __init__(self, config: FlamingoConfig):
        super().__init__(config)
        self.vision_encoder = CLIPVisionModel(config.vision_config)
        self.perceiver = PerceiverResampler(
            dim=config.vision_config.hidden_size,
            depth=config.perceiver_depth,
            heads=config.perceiver_heads,
            head_dim=config.perceiver_head_dim,
            num_latents=config.perceiver_num_latents,
            ff_mult=config.perceiver_ff_mult,
            max_num_frames=config.max_num_frames,
        )
        self.lang_encoder = FlamingoLanguageModel(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.lang_encoder.transformer.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.lang_encoder.transformer.wte = value

    def encode_vision(
        self, vision_x: torch.Tensor, frame_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, T_img, F, 3, H, W) pixels -> (B, T_img, n_latents, D_v) perceiver latents.

        CLIP patch tokens of the last layer, CLS dropped, without the post LayerNorm;
        `frame_mask` (B, T_img, F) marks padding frames (False) the perceiver ignores.
        """
        if vision_x.ndim != 6:
            raise ValueError(
                f"vision_x must be (B, T_img, F, 3, H, W), got shape {tuple(vision_x.shape)}"
            )
        batch_size, num_media, num_frames = vision_x.shape[:3]
        pixels = vision_x.flatten(0, 2)  # (B·T·F, 3, H, W)
        pixels = pixels.to(self.vision_encoder.dtype)
        patches = self.vision_encoder(pixel_values=pixels).last_hidden_state[:, 1:]  # (B·T·F, v, D)
        # (B·T·F, v, D) -> (B, T, F, v, D)
        patches = patches.reshape(batch_size, num_media, num_frames, *patches.shape[1:])
        return self.perceiver(patches, frame_mask)

    def text_time(self, input_ids: torch.LongTensor) -> torch.LongTensor:
        """Image index each token sees: cumulative count of `<image>` tokens (the token counts itself)."""
        return (input_ids == self.config.media_token_id).cumsum(dim=-1)

    def forward(
        self,
        input_ids: torch.LongTensor,
        vision_x: torch.Tensor | None = None,
        media: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        text_time: torch.LongTensor | None = None,
        frame_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = None,
        labels: torch.LongTensor | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        **kwargs,
    ) -> FlamingoOutput:
        """Either `vision_x` (pixels) or `media` (already encoded) must be given.

        `text_time` (B, T) is needed only when continuing from a cache (generation computes it
        from the whole sequence so far); otherwise it is the cumulative `<image>` count.
        """
        if media is None:
            if vision_x is None:
                raise ValueError("Flamingo needs images: pass vision_x (pixels) or media (latents)")
            media = self.encode_vision(vision_x, frame_mask)
        if use_cache is None:  # no cache while training: nothing would read it
            use_cache = self.config.use_cache and not self.training
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        if text_time is None:
            if cache is not None and cache.get_seq_length() > 0:
                raise ValueError("text_time is required when continuing from a non-empty cache")
            text_time = self.text_time(input_ids)
            if int(text_time[:, -1].max()) > media.shape[1]:
                raise ValueError(
                    f"input_ids hold {int(text_time[:, -1].max())} <image> tokens in a row but "
                    f"only {media.shape[1]} images were given per row"
                )
        hidden_states = self.lang_encoder.transformer(
            input_ids,
            attention_mask,
            cache if use_cache else None,
            media=media,
            text_time=text_time,
        )
        logits = self.lang_encoder.transformer.logits(hidden_states)  # (B, T, V)
        loss = causal_lm_loss(logits, labels, num_items_in_batch) if labels is not None else None
        return FlamingoOutput(
            loss=loss, logits=logits, cache=cache if use_cache else None, media=media
        )

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        next_sequence_length: int | None = None,
        cache: Cache | None = None,
        attention_mask: torch.Tensor | None = None,
        media: torch.Tensor | None = None,
        is_first_iteration: bool | None = False,
        **kwargs,
    ) -> dict:
        model_inputs = super().prepare_inputs_for_generation(
            input_ids,
            next_sequence_length=next_sequence_length,
            cache=cache,
            attention_mask=attention_mask,
            is_first_iteration=is_first_iteration,
            **kwargs,
        )
        # Each new token keeps the row's image count so far (cumsum over the whole sequence).
        new_length = model_inputs["input_ids"].shape[1]
        model_inputs["text_time"] = self.text_time(input_ids)[:, -new_length:]
        model_inputs["media"] = media
        return model_inputs

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor,
        vision_x: torch.Tensor | None = None,
        media: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None,
        **generation_kwargs,
    ) -> torch.LongTensor:
        """Greedy / beam search. Images are encoded once here; generate() repeats the latents
        per beam. Stops at `<|endofchunk|>` unless `eos_token_id` says otherwise. Batches must
        be left-padded."""
        if media is None:
            if vision_x is None:
                raise ValueError("Flamingo needs images: pass vision_x (pixels) or media (latents)")
            media = self.encode_vision(vision_x, frame_mask)
        if attention_mask is not None and bool((attention_mask[:, -1] == 0).any()):
            raise ValueError("batched generation needs left padding (a row ends with padding)")
        generation_kwargs.setdefault("eos_token_id", self.config.endofchunk_token_id)
        generation_kwargs.setdefault("pad_token_id", self.config.pad_token_id)
        return super().generate(
            input_ids=input_ids, attention_mask=attention_mask, media=media, **generation_kwargs
        )
