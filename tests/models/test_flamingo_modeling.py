"""Flamingo model code: parity with the reference blocks, invariants, cache, generation, names."""

from __future__ import annotations

import copy
import re
import sys
import types

import pytest
import torch

from roadscene.models.flamingo.configuration_flamingo import FlamingoConfig, MosaicGPTConfig
from roadscene.models.flamingo.modeling_flamingo import (
    FlamingoForConditionalGeneration,
    GatedCrossAttentionBlock,
    MaskedCrossAttention,
    PerceiverResampler,
)
from roadscene.models.flamingo.modeling_mosaicgpt import MosaicGPTForCausalLM, alibi_slopes
from roadscene.models.flamingo.tiny import build_tiny_flamingo

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _reference_helpers() -> types.ModuleType:
    """open_flamingo's blocks (installed --no-deps); its package __init__ imports open_clip,
    which the blocks do not need, so a stub stands in for it."""
    pytest.importorskip("einops_exts")
    sys.modules.setdefault("open_clip", types.ModuleType("open_clip"))
    from open_flamingo.src import helpers

    return helpers


@pytest.fixture(scope="module")
def tiny():
    """Tiny model with non-zero gates (so cross-attention matters) and its processor."""
    model, processor = build_tiny_flamingo(seed=0, gate_init=0.7)
    return model, processor


def _images(count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, count, 1, 3, 32, 32, generator=generator)


def _ids(processor, text: str) -> torch.Tensor:
    return processor.tokenizer(text, return_tensors="pt")["input_ids"]


def test_perceiver_matches_open_flamingo_reference() -> None:
    helpers = _reference_helpers()
    torch.manual_seed(0)
    reference = helpers.PerceiverResampler(
        dim=32, depth=2, dim_head=16, heads=2, num_latents=8, ff_mult=2
    )
    ours = PerceiverResampler(dim=32, depth=2, heads=2, head_dim=16, num_latents=8, ff_mult=2)
    ours.load_state_dict(reference.state_dict(), strict=True)  # same names, same shapes
    features = torch.randn(2, 3, 1, 17, 32)  # (B, T_img, F, v, D)
    difference = (ours(features) - reference(features)).abs().max().item()
    assert difference <= 1e-5, difference


@pytest.mark.parametrize("cached", [False, True])
def test_gated_cross_attention_matches_open_flamingo_reference(cached: bool) -> None:
    helpers = _reference_helpers()
    torch.manual_seed(1)
    reference = helpers.GatedCrossAttentionBlock(
        dim=64, dim_visual=32, dim_head=16, heads=2, ff_mult=2
    )
    with torch.no_grad():
        reference.attn_gate.fill_(0.8)
        reference.ff_gate.fill_(-0.3)
    ours = GatedCrossAttentionBlock(
        dim=64, dim_visual=32, heads=2, head_dim=16, ff_mult=2, gate_init=0.0
    )
    ours.load_state_dict(reference.state_dict(), strict=True)
    media = torch.randn(2, 3, 8, 32)  # (B, T_img, n, D_v)
    # Row 0: two tokens before the first image, then three images; row 1: image first.
    media_locations = torch.zeros(2, 12, dtype=torch.bool)
    media_locations[0, [2, 5, 9]] = True
    media_locations[1, [0, 4, 7]] = True
    text = torch.randn(2, 12, 64)
    if cached:
        new_text = torch.randn(2, 1, 64)
        expected = reference(
            new_text, media, media_locations=media_locations, use_cached_media=True
        )
        text_time = media_locations.sum(dim=1, keepdim=True)  # the row's last image count
        actual = ours(new_text, media, text_time)
    else:
        expected = reference(text, media, media_locations=media_locations)
        actual = ours(text, media, media_locations.cumsum(dim=-1))
    assert (actual - expected).abs().max().item() <= 1e-5


def test_each_token_sees_only_its_own_image() -> None:
    torch.manual_seed(2)
    attention = MaskedCrossAttention(dim=64, dim_visual=32, heads=2, head_dim=16)
    text = torch.randn(1, 9, 64)
    media = torch.randn(1, 2, 8, 32)
    text_time = torch.tensor([[0, 0, 1, 1, 1, 2, 2, 2, 2]])
    base = attention(text, media, text_time)
    assert torch.equal(base[:, :2], torch.zeros_like(base[:, :2]))  # before the first image
    changed_first = media.clone()
    changed_first[:, 0] += 1.0
    out = attention(text, changed_first, text_time)
    assert not torch.allclose(out[:, 2:5], base[:, 2:5])  # image 1's tokens change
    assert torch.equal(out[:, 5:], base[:, 5:])  # image 2's tokens do not
    changed_second = media.clone()
    changed_second[:, 1] += 1.0
    out = attention(text, changed_second, text_time)
    assert torch.equal(out[:, :5], base[:, :5])
    assert not torch.allclose(out[:, 5:], base[:, 5:])


def test_alibi_slopes_are_powers_of_two() -> None:
    slopes = alibi_slopes(16, 8)
    expected = torch.tensor([2.0 ** (-h / 2) for h in range(1, 17)])
    assert torch.allclose(slopes, expected)


def test_zero_gates_give_the_bare_language_model() -> None:
    model, processor = build_tiny_flamingo(seed=3, gate_init=0.0)
    lm = MosaicGPTForCausalLM(model.config.text_config).eval()
    lm_weights = {
        name.removeprefix("lang_encoder."): tensor
        for name, tensor in model.state_dict().items()
        if name.startswith("lang_encoder.") and "gated_cross_attn_layer" not in name
    }
    lm.load_state_dict(lm_weights, strict=True)
    input_ids = _ids(processor, "<image>Output: a street<|endofchunk|><image>Output: cars")
    with torch.no_grad():
        flamingo_logits = model(input_ids, vision_x=_images(2, 0), use_cache=False).logits
        lm_logits = lm(input_ids, use_cache=False).logits
    assert torch.equal(flamingo_logits, lm_logits)


def test_tokens_before_the_first_image_ignore_images(tiny) -> None:
    model, processor = tiny
    input_ids = _ids(processor, "Street scene: <image>Output: a road")
    first_image = int((input_ids[0] == model.config.media_token_id).nonzero()[0])
    with torch.no_grad():
        logits_a = model(input_ids, vision_x=_images(1, 0), use_cache=False).logits
        logits_b = model(input_ids, vision_x=_images(1, 1), use_cache=False).logits
    assert first_image >= 2
    assert torch.equal(logits_a[:, :first_image], logits_b[:, :first_image])
    assert not torch.allclose(logits_a[:, first_image:], logits_b[:, first_image:])


def test_incremental_decoding_with_cache_equals_full_forward(tiny) -> None:
    # float64, so the comparison tests the cache logic rather than fp32 rounding of logits ~1e2.
    model, processor = copy.deepcopy(tiny[0]).double(), tiny[1]
    texts = [
        "<image>Output: a car<|endofchunk|><image>Output: two people on the",
        "<image>Output:<image>Output: a",
    ]
    batch = processor(texts, _pil_images(4, pairs=True))
    input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        full = model(**batch, use_cache=False).logits
        prefix = 6
        media = model.encode_vision(batch["vision_x"])
        step = model(
            input_ids[:, :prefix],
            media=media,
            attention_mask=attention_mask[:, :prefix],
            use_cache=True,
        )
        pieces, cache = [step.logits], step.cache
        text_time = model.text_time(input_ids)
        for position in range(prefix, input_ids.shape[1]):
            step = model(
                input_ids[:, position : position + 1],
                media=media,
                attention_mask=attention_mask[:, : position + 1],
                text_time=text_time[:, position : position + 1],
                cache=cache,
                use_cache=True,
            )
            pieces.append(step.logits)
            cache = step.cache
    incremental = torch.cat(pieces, dim=1)
    real = attention_mask.bool()
    assert (incremental[real] - full[real]).abs().max().item() <= 1e-5


def _pil_images(count: int, pairs: bool = False):
    from PIL import Image

    images = [Image.new("RGB", (40 + 3 * i, 36), (30 * i, 200 - 20 * i, 90)) for i in range(count)]
    if pairs:
        return [images[i : i + 2] for i in range(0, count, 2)]
    return images


@pytest.mark.parametrize("num_beams", [1, 3])
def test_batched_generation_equals_one_by_one(tiny, num_beams: int) -> None:
    model, processor = tiny
    texts = ["<image>Output: a street with", "<image>Output:"]
    images = [[image] for image in _pil_images(2)]
    settings = {
        "max_new_tokens": 6,
        "num_beams": num_beams,
        "do_sample": False,
        "eos_token_id": None,
    }
    batch = processor(texts, images)
    batched = model.generate(**batch, **settings)
    for row, (text, row_images) in enumerate(zip(texts, images, strict=True)):
        single = processor([text], [row_images])
        alone = model.generate(**single, **settings)[0]
        padding = batch["input_ids"].shape[1] - single["input_ids"].shape[1]
        assert batched[row, padding:].tolist() == alone.tolist()


def test_generation_encodes_images_once_and_stops_at_endofchunk(tiny) -> None:
    model, processor = tiny
    calls = []
    handle = model.vision_encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        batch = processor(["<image>Output:"], [_pil_images(1)])
        model.generate(**batch, max_new_tokens=4, num_beams=3, do_sample=False)
    finally:
        handle.remove()
    assert len(calls) == 1
    assert model.generation_config.eos_token_id == model.config.endofchunk_token_id or (
        model.config.eos_token_id == model.config.endofchunk_token_id
    )
    # Force <|endofchunk|> as the first choice: generation stops right after it.
    from transformers import LogitsProcessor, LogitsProcessorList

    class PreferEndOfChunk(LogitsProcessor):
        def __call__(self, input_ids, scores):
            scores[:, model.config.endofchunk_token_id] = 1e4
            return scores

    out = model.generate(
        **batch, max_new_tokens=5, logits_processor=LogitsProcessorList([PreferEndOfChunk()])
    )
    assert out[0, -1].item() == model.config.endofchunk_token_id
    assert out.shape[1] == batch["input_ids"].shape[1] + 1


# The published OpenFlamingo-3B checkpoint (docs/flamingo.md's table) and the MPT-1B names.
_EXPECTED_SHAPES = {
    r"perceiver\.latents": (64, 1024),
    r"perceiver\.layers\.[0-5]\.0\.norm_(media|latents)\.(weight|bias)": (1024,),
    r"perceiver\.layers\.[0-5]\.0\.to_q\.weight": (512, 1024),
    r"perceiver\.layers\.[0-5]\.0\.to_kv\.weight": (1024, 1024),
    r"perceiver\.layers\.[0-5]\.0\.to_out\.weight": (1024, 512),
    r"perceiver\.layers\.[0-5]\.1\.0\.(weight|bias)": (1024,),
    r"perceiver\.layers\.[0-5]\.1\.1\.weight": (4096, 1024),
    r"perceiver\.layers\.[0-5]\.1\.3\.weight": (1024, 4096),
    r"perceiver\.norm\.(weight|bias)": (1024,),
    r"lang_encoder\.transformer\.blocks\.\d+\.gated_cross_attn_layer\.(attn|ff)_gate": (1,),
    r"lang_encoder\.transformer\.blocks\.\d+\.gated_cross_attn_layer\.attn\.norm\.(weight|bias)": (
        2048,
    ),
    r"lang_encoder\.transformer\.blocks\.\d+\.gated_cross_attn_layer\.attn\.to_q\.weight": (
        512,
        2048,
    ),
    r"lang_encoder\.transformer\.blocks\.\d+\.gated_cross_attn_layer\.attn\.to_kv\.weight": (
        1024,
        1024,
    ),
    r"lang_encoder\.transformer\.blocks\.\d+\.gated_cross_attn_layer\.attn\.to_out\.weight": (
        2048,
        512,
    ),
    r"lang_encoder\.transformer\.blocks\.\d+\.gated_cross_attn_layer\.ff\.0\.(weight|bias)": (
        2048,
    ),
    r"lang_encoder\.transformer\.blocks\.\d+\.gated_cross_attn_layer\.ff\.1\.weight": (8192, 2048),
    r"lang_encoder\.transformer\.blocks\.\d+\.gated_cross_attn_layer\.ff\.3\.weight": (2048, 8192),
    r"lang_encoder\.transformer\.wte\.weight": (50280, 2048),
    r"lang_encoder\.transformer\.blocks\.\d+\.(ln_1|ln_2|attn\.q_ln|attn\.k_ln)\.weight": (2048,),
    r"lang_encoder\.transformer\.blocks\.\d+\.attn\.Wqkv\.weight": (6144, 2048),
    r"lang_encoder\.transformer\.blocks\.\d+\.attn\.out_proj\.weight": (2048, 2048),
    r"lang_encoder\.transformer\.blocks\.\d+\.mlp\.mlp_up\.weight": (8192, 2048),
    r"lang_encoder\.transformer\.blocks\.\d+\.mlp\.mlp_down\.weight": (2048, 8192),
    r"lang_encoder\.transformer\.ln_f\.weight": (2048,),
}


def test_full_size_model_on_meta_matches_the_published_names_and_shapes() -> None:
    config = FlamingoConfig(text_config=MosaicGPTConfig(vocab_size=50280))
    with torch.device("meta"):
        model = FlamingoForConditionalGeneration(config)
    shapes = {name: tuple(p.shape) for name, p in model.state_dict().items()}
    vision = {name for name in shapes if name.startswith("vision_encoder.")}
    others = {name: shape for name, shape in shapes.items() if name not in vision}
    unmatched, wrong = [], []
    for name, shape in others.items():
        expected = [s for pattern, s in _EXPECTED_SHAPES.items() if re.fullmatch(pattern, name)]
        if not expected:
            unmatched.append(name)
        elif shape != expected[0]:
            wrong.append((name, shape, expected[0]))
    assert not unmatched and not wrong, (unmatched[:5], wrong[:5])
    # 24 decoder blocks, each with cross-attention (11 tensors) and MPT weights (8 tensors);
    # perceiver: latents + 6 layers × 11 + final norm (2).
    assert sum(".gated_cross_attn_layer." in n for n in others) == 24 * 11
    assert sum(n.startswith("perceiver.") for n in others) == 1 + 6 * 11 + 2
    mpt_block = r"lang_encoder\.transformer\.blocks\.\d+\.(ln_\d|attn|mlp)\..*"
    assert sum(re.fullmatch(mpt_block, n) is not None for n in others) == 24 * 8
    assert shapes["vision_encoder.embeddings.patch_embedding.weight"] == (1024, 3, 14, 14)
    assert shapes["vision_encoder.embeddings.position_embedding.weight"] == (257, 1024)
    assert "vision_encoder.encoder.layers.23.mlp.fc2.weight" in shapes
    trainable = (
        sum(
            p.numel()
            for n, p in model.named_parameters()
            if n.startswith("perceiver.") or ".gated_cross_attn_layer." in n
        )
        + 50280 * 2048
    )
    assert 1.0e9 < trainable < 1.1e9  # docs/flamingo.md: trainable total ≈ 1.05 B


def _reference_mpt_logits(lm: MosaicGPTForCausalLM, input_ids: torch.Tensor) -> torch.Tensor:
    """MPT-1B written out from docs/flamingo.md's equations, one head at a time (no cache, no
    SDPA)."""
    import torch.nn.functional as F

    config = lm.config
    heads, head_dim, length = config.n_heads, config.head_dim, input_ids.shape[1]
    trunk = lm.transformer

    def norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), weight, None, config.layer_norm_eps)

    x = trunk.wte.weight[input_ids[0]]  # (T, C)
    position = torch.arange(length, dtype=x.dtype)
    distance = position[None, :] - position[:, None]  # j - i
    for block in trunk.blocks:
        q, k, v = (norm(x, block.ln_1.weight) @ block.attn.Wqkv.weight.T).chunk(3, dim=-1)
        q, k = norm(q, block.attn.q_ln.weight), norm(k, block.attn.k_ln.weight)
        outputs = []
        for h in range(heads):
            part = slice(h * head_dim, (h + 1) * head_dim)
            slope = 2.0 ** (-(h + 1) * config.alibi_bias_max / heads)
            scores = q[:, part] @ k[:, part].T / head_dim**0.5 + slope * distance
            scores = scores.masked_fill(distance > 0, float("-inf"))
            outputs.append(scores.softmax(dim=-1) @ v[:, part])
        x = x + torch.cat(outputs, dim=-1) @ block.attn.out_proj.weight.T
        hidden = F.gelu(norm(x, block.ln_2.weight) @ block.mlp.mlp_up.weight.T)
        x = x + hidden @ block.mlp.mlp_down.weight.T
    return (norm(x, trunk.ln_f.weight) @ trunk.wte.weight.T)[None]


def test_mosaicgpt_matches_the_written_out_equations() -> None:
    torch.manual_seed(4)
    config = MosaicGPTConfig(
        d_model=32, n_heads=4, n_layers=2, vocab_size=50, initializer_range=0.2
    )
    lm = MosaicGPTForCausalLM(config).double().eval()
    input_ids = torch.randint(0, 50, (1, 11))
    with torch.no_grad():
        ours = lm(input_ids, use_cache=False).logits
        reference = _reference_mpt_logits(lm, input_ids)
    assert (ours - reference).abs().max().item() < 1e-10
