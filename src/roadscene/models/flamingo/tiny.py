"""A tiny random-init Flamingo for tests and smoke runs: tiny CLIP vision, tiny MosaicGPT, tiny
perceiver, and a byte-level BPE tokenizer trained locally (nothing from the hub)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerFast

from roadscene.models.flamingo.configuration_flamingo import FlamingoConfig, MosaicGPTConfig
from roadscene.models.flamingo.modeling_flamingo import FlamingoForConditionalGeneration
from roadscene.models.flamingo.processing_flamingo import (
    FlamingoProcessor,
    add_flamingo_tokens,
    clip_image_processor,
)

TINY_BPE_VOCAB = 384

# Training text for the tiny tokenizer: the words of the structured answers and captions.
_TOKENIZER_CORPUS = [
    "User: Describe the scene for a blind pedestrian.\nAssistant:",
    "Output: A street with a sidewalk on the left and a road in the center.",
    "Sidewalk: left. Road: center. Road is right of sidewalk. Sidewalk: center. Road: right.",
    "Sidewalk: right. Road: left. Road: front. Road is left of sidewalk. crossing in front.",
    "Nearby: 1 person on the left, 2 cars on the right, 1 bicycle in the center, none.",
    "Far: 3 people, 1 traffic sign on the right, 1 traffic light on the left, 2 obstacles.",
    "Context: a busy city street with shops, trees, parked cars and a crosswalk. unknown",
    "pedestrians walking near buildings on a sunny day; a bus stop, a bench and a tree.",
    "0 1 2 3 4 5 6 7 8 9 zero one two three four five six seven eight nine ten many",
]


def train_tiny_tokenizer(
    corpus: Sequence[str] | None = None, *, flamingo_tokens: bool = True
) -> PreTrainedTokenizerFast:
    """Byte-level BPE (GPT-NeoX style, `<|endoftext|>` = 0) trained on the built-in corpus plus
    `corpus`, then the three Flamingo tokens as the last ids."""
    from roadscene.models.tokenizer import train_bpe

    tokenizer = train_bpe(
        [*_TOKENIZER_CORPUS, *(corpus or [])],
        vocab_size=TINY_BPE_VOCAB,
        special_tokens=["<|endoftext|>"],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    return add_flamingo_tokens(fast) if flamingo_tokens else fast


def tiny_config(tokenizer: PreTrainedTokenizerFast, **sizes: int) -> FlamingoConfig:
    """Config of the tiny model; `sizes` override `FlamingoSizes`' defaults (unknown names are
    refused)."""
    from roadscene.models.flamingo.family import FlamingoSizes

    size = FlamingoSizes(**sizes).model_dump()
    vocab_size = len(tokenizer)
    return FlamingoConfig(
        vision_config={
            "hidden_size": size["vision_hidden_size"],
            "intermediate_size": 2 * size["vision_hidden_size"],
            "projection_dim": size["vision_hidden_size"],
            "num_hidden_layers": size["vision_layers"],
            "num_attention_heads": 4,
            "image_size": size["image_size"],
            "patch_size": size["patch_size"],
            "hidden_act": "quick_gelu",
        },
        text_config=MosaicGPTConfig(
            d_model=size["text_hidden_size"],
            n_heads=4,
            n_layers=size["text_layers"],
            mlp_ratio=4,
            max_seq_len=512,
            vocab_size=vocab_size,
            # A random frozen LM with the usual 0.02 init passes almost no context along; 0.1 lets
            # the tiny model (whose LM stays frozen in training) still learn from its inputs.
            initializer_range=0.1,
        ),
        perceiver_depth=2,
        perceiver_heads=2,
        perceiver_head_dim=16,
        perceiver_num_latents=size["num_latents"],
        perceiver_ff_mult=2,
        cross_attn_heads=2,
        cross_attn_head_dim=16,
        cross_attn_ff_mult=2,
        gate_init=0.0,
        max_num_frames=size["max_frames"],
        media_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        endofchunk_token_id=tokenizer.convert_tokens_to_ids("<|endofchunk|>"),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|endofchunk|>"),
    )


def build_tiny_flamingo(
    seed: int = 0, gate_init: float = 0.0, corpus: Sequence[str] | None = None, **sizes: int
) -> tuple[FlamingoForConditionalGeneration, FlamingoProcessor]:
    """Random-init tiny model and its processor (default 32 px images, 8 latents, 2+2 layers;
    `sizes` as in `FlamingoSizes`)."""
    tokenizer = train_tiny_tokenizer(corpus)
    config = tiny_config(tokenizer, **sizes)
    config.gate_init = gate_init
    torch.manual_seed(seed)
    model = FlamingoForConditionalGeneration(config).eval()
    # The language model stays frozen in Flamingo training, and logits are tied to the embedding:
    # with the usual 0.02 init a random LM's logits are nearly flat and nothing trainable could
    # make them confident. Unit-scale rows (like a trained LM's) let the tiny model learn.
    with torch.no_grad():
        model.get_input_embeddings().weight.normal_(0.0, 1.0)
    image_size = config.vision_config.image_size
    processor = FlamingoProcessor(tokenizer, clip_image_processor(image_size))
    return model, processor


def save_tiny_flamingo(
    out_dir: str | Path,
    seed: int = 0,
    gate_init: float = 0.0,
    corpus: Sequence[str] | None = None,
    **sizes: int,
) -> Path:
    """Write a loadable tiny Flamingo folder (safetensors, config, tokenizer, image processor)."""
    from roadscene.io import atomic_dir, write_json
    from roadscene.models.base import TINY_MARKER, is_model_output

    out_dir = Path(out_dir)
    model, processor = build_tiny_flamingo(seed=seed, gate_init=gate_init, corpus=corpus, **sizes)
    with atomic_dir(out_dir, ours=is_model_output, what="a model folder") as staging:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        write_json(
            staging / TINY_MARKER,
            {"family": "flamingo", "seed": seed, "gate_init": gate_init, **sizes},
        )
    return out_dir
