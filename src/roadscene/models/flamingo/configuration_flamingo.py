"""Configurations of the MosaicGPT (MPT-1B) decoder and the Flamingo model (OpenFlamingo-3B layout).

Defaults are the published OpenFlamingo-3B-vitl-mpt1b sizes (see docs/flamingo.md);
`roadscene.models.flamingo.tiny` builds a tiny variant for tests.
"""

from __future__ import annotations

from typing import ClassVar

from transformers import CLIPVisionConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

# OpenFlamingo-3B's vision tower: CLIP ViT-L/14 at 224 px (quick-gelu).
CLIP_VIT_L14_VISION = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "projection_dim": 768,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 224,
    "patch_size": 14,
    "hidden_act": "quick_gelu",
}


class MosaicGPTConfig(PreTrainedConfig):
    """MPT-1B ("MosaicGPT"): ALiBi, q/k LayerNorm, no biases, weight-only LayerNorms, tied logits.

    Field names follow the published `mosaicml/mpt-1b-redpajama-200b` config.json, so that file
    loads directly; the standard transformers names are mapped onto them.
    """

    model_type = "mosaic_gpt"
    attribute_map: ClassVar[dict[str, str]] = {
        "hidden_size": "d_model",
        "num_attention_heads": "n_heads",
        "num_hidden_layers": "n_layers",
        "max_position_embeddings": "max_seq_len",
    }

    d_model: int = 2048
    n_heads: int = 16
    n_layers: int = 24
    mlp_ratio: int = 4
    max_seq_len: int = 2048
    vocab_size: int = 50432
    alibi_bias_max: int = 8
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    use_cache: bool = True
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


class FlamingoConfig(PreTrainedConfig):
    """Flamingo = frozen CLIP vision + perceiver resampler + gated cross-attention + MosaicGPT."""

    model_type = "flamingo"  # = the roadscene family name, so predict finds the family
    # The Trainer's evaluation gathers only the logits, not the cache or the image latents.
    keys_to_ignore_at_inference: ClassVar[list[str]] = ["cache", "media"]
    sub_configs_defaults: ClassVar[dict[str, SubConfigSpec]] = {
        "vision_config": SubConfigSpec(
            config_class=CLIPVisionConfig, init_kwargs=CLIP_VIT_L14_VISION
        ),
        "text_config": SubConfigSpec(config_class=MosaicGPTConfig),
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    # Perceiver resampler (its width is the vision width).
    perceiver_depth: int = 6
    perceiver_heads: int = 8
    perceiver_head_dim: int = 64
    perceiver_num_latents: int = 64
    perceiver_ff_mult: int = 4
    # Learned frame embeddings (OpenFlamingo's `perceiver.frame_embs`) for clips of up to this
    # many frames; None: none, as in the published checkpoints (which see one frame per image).
    max_num_frames: int | None = None
    # Gated cross-attention, inserted before every `cross_attn_every_n_layers`-th decoder block.
    cross_attn_every_n_layers: int = 1
    cross_attn_heads: int = 8
    cross_attn_head_dim: int = 64
    cross_attn_ff_mult: int = 4
    gate_init: float = 0.0
    # Special tokens added to the GPT-NeoX tokenizer (ids filled in by convert/tiny).
    media_token_id: int = 50278
    endofchunk_token_id: int = 50277
    pad_token_id: int | None = 50279
    eos_token_id: int | list[int] | None = 50277
    use_cache: bool = True
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.max_num_frames is not None and self.max_num_frames < 1:
            raise ValueError(f"max_num_frames must be >= 1 or None, got {self.max_num_frames}")
        if self.cross_attn_every_n_layers < 1:
            raise ValueError(
                f"cross_attn_every_n_layers must be >= 1, got {self.cross_attn_every_n_layers}"
            )
