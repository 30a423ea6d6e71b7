"""convert-openflamingo: a tiny model split into the three published pieces and reassembled."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch

from roadscene.errors import InputError
from roadscene.models.flamingo.convert import canonical_name, convert_openflamingo
from roadscene.models.flamingo.modeling_flamingo import FlamingoForConditionalGeneration
from roadscene.models.flamingo.processing_flamingo import FlamingoProcessor
from roadscene.models.flamingo.tiny import build_tiny_flamingo, train_tiny_tokenizer

EXTRA_LM_ROWS = 13  # MPT-1B ships 50432 rows; OpenFlamingo's embedding has 50280

pytestmark = pytest.mark.usefixtures("one_torch_thread")


_ARCHITECTURE_FIELDS = (
    "perceiver_depth",
    "perceiver_heads",
    "perceiver_head_dim",
    "perceiver_num_latents",
    "perceiver_ff_mult",
    "cross_attn_heads",
    "cross_attn_head_dim",
    "cross_attn_ff_mult",
)


def _architecture(model: FlamingoForConditionalGeneration) -> dict[str, int]:
    return {name: getattr(model.config, name) for name in _ARCHITECTURE_FIELDS}


def _published_pieces(tmp_path: Path, model: FlamingoForConditionalGeneration) -> dict[str, Path]:
    """OpenFlamingo checkpoint (trained parts, `module.` prefix, aliased cross-attention names),
    an MPT folder (mosaic_gpt config.json + pytorch_model.bin + base tokenizer), a CLIP folder."""
    state = model.state_dict()
    checkpoint = {}
    for name, tensor in state.items():
        xattn = re.fullmatch(
            r"lang_encoder\.transformer\.blocks\.(\d+)\.gated_cross_attn_layer\.(.*)", name
        )
        if name.startswith("perceiver."):
            checkpoint[f"module.{name}"] = tensor.clone()
        elif xattn:
            checkpoint[f"module.lang_encoder.gated_cross_attn_layers.{xattn[1]}.{xattn[2]}"] = (
                tensor.clone()
            )
    checkpoint["module.lang_encoder.transformer.wte.weight"] = state[
        "lang_encoder.transformer.wte.weight"
    ].clone()
    checkpoint_path = tmp_path / "checkpoint.pt"
    torch.save(checkpoint, checkpoint_path)

    lm_dir = tmp_path / "mpt"
    lm_dir.mkdir()
    text = model.config.text_config
    lm_weights = {
        name.removeprefix("lang_encoder."): tensor.clone()
        for name, tensor in state.items()
        if name.startswith("lang_encoder.") and "gated_cross_attn_layer" not in name
    }
    wte = lm_weights["transformer.wte.weight"]
    lm_weights["transformer.wte.weight"] = torch.cat(
        [torch.randn(wte.shape[0] - 3, wte.shape[1]), torch.randn(3 + EXTRA_LM_ROWS, wte.shape[1])]
    )
    torch.save(lm_weights, lm_dir / "pytorch_model.bin")
    (lm_dir / "config.json").write_text(
        json.dumps(
            {
                "model_type": "mosaic_gpt",
                "d_model": text.d_model,
                "n_heads": text.n_heads,
                "n_layers": text.n_layers,
                "mlp_ratio": text.mlp_ratio,
                "max_seq_len": text.max_seq_len,
                "vocab_size": text.vocab_size + EXTRA_LM_ROWS,
                "alibi": True,
                "alibi_bias_max": text.alibi_bias_max,
                "attn_qk_ln": True,
            }
        )
    )
    train_tiny_tokenizer(flamingo_tokens=False).save_pretrained(str(lm_dir))

    vision_dir = tmp_path / "clip"
    model.vision_encoder.save_pretrained(str(vision_dir))
    return {"checkpoint": checkpoint_path, "lm": lm_dir, "vision": vision_dir}


@pytest.fixture(scope="module")
def tiny_model():
    return build_tiny_flamingo(seed=5, gate_init=0.4)


def test_canonical_names_strip_module_and_map_aliases() -> None:
    assert canonical_name("module.perceiver.latents") == "perceiver.latents"
    assert (
        canonical_name("module.lang_encoder.gated_cross_attn_layers.3.attn.to_q.weight")
        == "lang_encoder.transformer.blocks.3.gated_cross_attn_layer.attn.to_q.weight"
    )
    assert (
        canonical_name("lang_encoder.transformer.blocks.7.decoder_layer.attn.Wqkv.weight")
        == "lang_encoder.transformer.blocks.7.attn.Wqkv.weight"
    )


def test_convert_round_trips_a_tiny_checkpoint(tmp_path: Path, tiny_model) -> None:
    model, processor = tiny_model
    pieces = _published_pieces(tmp_path, model)
    out = convert_openflamingo(
        pieces["checkpoint"],
        str(pieces["lm"]),
        str(pieces["vision"]),
        tmp_path / "out",
        image_size=32,
        architecture=_architecture(model),
    )
    assert (out / "model.safetensors").is_file()
    loaded = FlamingoForConditionalGeneration.from_pretrained(str(out)).eval()
    loaded_processor = FlamingoProcessor.from_pretrained(out)
    vocab = len(processor.tokenizer)
    assert len(loaded_processor.tokenizer) == vocab == loaded.config.text_config.vocab_size
    assert loaded.get_input_embeddings().weight.shape[0] == vocab
    ids = [
        loaded_processor.tokenizer.convert_tokens_to_ids(t)
        for t in ("<|endofchunk|>", "<image>", "<PAD>")
    ]
    assert ids == [vocab - 3, vocab - 2, vocab - 1]
    assert loaded.config.media_token_id == vocab - 2
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    input_ids = processor.tokenizer("<image>Output: a street", return_tensors="pt")["input_ids"]
    vision_x = torch.randn(1, 1, 1, 3, 32, 32)
    with torch.no_grad():
        expected = model(input_ids, vision_x=vision_x, use_cache=False).logits
        actual = loaded(input_ids, vision_x=vision_x, use_cache=False).logits
    assert torch.equal(actual, expected)


def test_convert_lists_every_missing_key(tmp_path: Path, tiny_model) -> None:
    model, _ = tiny_model
    pieces = _published_pieces(tmp_path, model)
    checkpoint = torch.load(pieces["checkpoint"], weights_only=True)
    del checkpoint["module.perceiver.latents"]
    del checkpoint["module.lang_encoder.gated_cross_attn_layers.1.ff_gate"]
    torch.save(checkpoint, pieces["checkpoint"])
    with pytest.raises(InputError) as raised:
        convert_openflamingo(
            pieces["checkpoint"],
            str(pieces["lm"]),
            str(pieces["vision"]),
            tmp_path / "out",
            architecture=_architecture(model),
        )
    message = str(raised.value)
    assert "2 expected weights not found" in message
    assert "perceiver.latents" in message
    assert "lang_encoder.transformer.blocks.1.gated_cross_attn_layer.ff_gate" in message
    assert not (tmp_path / "out").exists()  # no partial output


def test_convert_rejects_a_language_model_without_qk_layernorm(tmp_path: Path, tiny_model) -> None:
    model, _ = tiny_model
    pieces = _published_pieces(tmp_path, model)
    config = json.loads((pieces["lm"] / "config.json").read_text())
    config["attn_qk_ln"] = False
    (pieces["lm"] / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="not an MPT-1B style model"):
        convert_openflamingo(
            pieces["checkpoint"],
            str(pieces["lm"]),
            str(pieces["vision"]),
            tmp_path / "out",
            architecture=_architecture(model),
        )


@pytest.mark.slow
def test_cli_tiny_then_convert_error_is_one_line(run_cli, tmp_path: Path) -> None:
    one_thread = {**os.environ, "OMP_NUM_THREADS": "1"}  # see the one_torch_thread fixture
    run_cli(
        "model",
        "tiny",
        "--family",
        "flamingo",
        "--out",
        tmp_path / "tiny",
        check=True,
        env=one_thread,
    )
    loaded = FlamingoForConditionalGeneration.from_pretrained(str(tmp_path / "tiny"))
    assert loaded.config.model_type == "flamingo"
    assert (
        FlamingoProcessor.from_pretrained(tmp_path / "tiny").media_token_id
        == loaded.config.media_token_id
    )
    result = run_cli(
        "model", "convert-openflamingo", "--checkpoint", tmp_path / "missing.pt",
        "--lm", tmp_path, "--vision", tmp_path, "--out", tmp_path / "out", env=one_thread,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'missing.pt'}: checkpoint not found"
    ]
    assert not (tmp_path / "out").exists()


def test_convert_refuses_language_model_weights_it_would_drop(tmp_path: Path, tiny_model) -> None:
    model, _ = tiny_model
    pieces = _published_pieces(tmp_path, model)
    weights = torch.load(pieces["lm"] / "pytorch_model.bin", weights_only=True)
    weights["transformer.blocks.0.attn.out_proj.bias"] = torch.zeros(
        model.config.text_config.d_model
    )
    torch.save(weights, pieces["lm"] / "pytorch_model.bin")
    with pytest.raises(
        InputError, match=r"1 language-model weights .*blocks\.0\.attn\.out_proj\.bias"
    ):
        convert_openflamingo(
            pieces["checkpoint"], str(pieces["lm"]), str(pieces["vision"]), tmp_path / "out",
            architecture=_architecture(model),
        )  # fmt: skip
