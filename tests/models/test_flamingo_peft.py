"""Flamingo with PEFT (`finetune.method: lora | qlora`): what gets adapters and what trains,
QLoRA's 4-bit MosaicGPT, save / load / merge of a trained adapter, and the refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from roadscene.data.examples import VisionTextExample
from roadscene.errors import InputError
from roadscene.models import get_family
from roadscene.models.finetune import FinetuneSection
from roadscene.train.config import load_config
from roadscene.train.runner import run_training

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[2]
CROSS_ATTENTION_LEAVES = {"to_q", "to_kv", "to_out", "1", "3"}  # attn.to_*, ff.1, ff.3


def _lora_layers(model) -> dict[str, str]:
    """module name -> PEFT layer class name, for every module carrying LoRA weights."""
    return {
        name: type(module).__name__
        for name, module in model.named_modules()
        if hasattr(module, "lora_A") and len(module.lora_A)
    }


def _batch(family, processor):
    from PIL import Image

    example = VisionTextExample(
        images=[Image.new("RGB", (40, 30), (200, 40, 90))],
        prompt="Describe the scene.",
        answer="Sidewalk: left. Road: right. RoadVsSidewalk: right_of.",
    )
    return family.collate(processor, [family.encode(processor, example)])


def test_lora_targets_the_cross_attention_and_trains_the_perceiver(tiny_flamingo_dir) -> None:
    family = get_family("flamingo")
    loaded = family.load(tiny_flamingo_dir, device="cpu")
    model = family.prepare_for_training(loaded.model, FinetuneSection(method="lora", lora_r=4))
    layers = _lora_layers(model)
    assert layers and all(".gated_cross_attn_layer." in name for name in layers)
    assert {name.rsplit(".", 1)[1] for name in layers} == CROSS_ATTENTION_LEAVES
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert all("lora_" in name or ".perceiver.modules_to_save." in name for name in trainable)
    assert any("perceiver.modules_to_save.default.latents" in name for name in trainable)
    # the gates, the CLIP tower and MosaicGPT stay frozen
    assert not any(name.endswith(("attn_gate", "ff_gate")) for name in trainable)

    # the frozen language model's attention is an opt-in target
    model = family.prepare_for_training(
        family.load(tiny_flamingo_dir, device="cpu").model,
        FinetuneSection(method="lora", target_modules=["to_q", "to_kv", "Wqkv", "out_proj"]),
    )
    leaves = {name.rsplit(".", 1)[1] for name in _lora_layers(model)}
    assert leaves == {"to_q", "to_kv", "Wqkv", "out_proj"}


def test_qlora_quantises_only_the_language_model(tiny_flamingo_dir) -> None:
    bnb = pytest.importorskip("bitsandbytes")
    family = get_family("flamingo")
    loaded = family.load(tiny_flamingo_dir, quantization="4bit", device="cpu")
    quantised = {n for n, m in loaded.model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    assert quantised and all(
        n.startswith("lang_encoder.") and ".gated_cross_attn_layer." not in n for n in quantised
    )
    assert {n.rsplit(".", 1)[1] for n in quantised} == {"Wqkv", "out_proj", "mlp_up", "mlp_down"}
    model = family.prepare_for_training(loaded.model, FinetuneSection(method="qlora"))
    assert set(_lora_layers(model).values()) == {"Linear"}  # cross-attention: not quantised


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_trained_adapter_saves_loads_and_merges(
    method: str, tiny_flamingo_dir: Path, tiny_bvpi_dir: Path, tmp_path: Path
) -> None:
    if method == "qlora":
        pytest.importorskip("bitsandbytes")
    config = load_config(
        REPO / "configs" / "tiny-flamingo.yaml",
        [
            f"model.name_or_path={tiny_flamingo_dir}",
            f"data.data_dir={tiny_bvpi_dir}",
            f"train.output_dir={tmp_path / 'run'}",
            f"finetune.method={method}",
            "family_options.gate_init=null",
            "train.max_steps=6",
            "train.batch_size=4",
            "train.eval_steps=6",
            "train.num_threads=1",
            "generation_eval.enabled=false",
        ],
    )
    result = run_training(config)
    saved = {path.name for path in result.model_dir.iterdir()}
    assert {"adapter_model.safetensors", "tokenizer.json", "roadscene_config.yaml"} <= saved
    assert "model.safetensors" not in saved  # the adapter only, with the perceiver inside

    from roadscene.predict import ModelCard, Predictor

    card = ModelCard.read(result.model_dir)
    assert (card.family, card.base) == ("flamingo", str(tiny_flamingo_dir))
    predictor = Predictor.load(card, device="cpu")  # the adapter on the fp32 base
    answers = predictor.predict([_example_without_answer()], batch_size=1)
    assert len(answers) == 1
    family = predictor.family
    batch = _batch(family, predictor.processor)
    # float64: the tiny model's unit-scale tied embedding gives logits of ~10, where float32
    # rounding alone differs by ~1e-5 between the merged and the unmerged computation.
    model = predictor.model.double()
    base = family.load(tiny_flamingo_dir, device="cpu", dtype=torch.float64).model
    batch["vision_x"] = batch["vision_x"].double()
    with torch.no_grad():
        unmerged = model(**batch).logits
        plain = base(**batch).logits
        merged_model = model.merge_and_unload()
        merged = merged_model(**batch).logits
    assert type(merged_model).__name__ == "FlamingoForConditionalGeneration"
    assert not _lora_layers(merged_model)
    torch.testing.assert_close(merged, unmerged, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(plain, unmerged, atol=1e-4), "the adapter changed nothing"


def _example_without_answer() -> VisionTextExample:
    from PIL import Image

    return VisionTextExample(images=[Image.new("RGB", (32, 32), (10, 200, 30))], prompt="Hi.")


def test_peft_refusals(tmp_path: Path, tiny_bvpi_dir: Path) -> None:
    family = get_family("flamingo")
    closed = family.build_tiny(tmp_path / "closed", seed=0)  # every gate at 0
    model = family.load(closed, device="cpu").model
    with pytest.raises(InputError, match="gate of this Flamingo model is 0"):
        family.prepare_for_training(model, FinetuneSection(method="lora"))
    with pytest.raises(InputError, match="gate_init"):
        family.prepare_for_training(model, FinetuneSection(method="lora"), {"gate_init": 0.5})
    with pytest.raises(InputError, match="finetune.method 'full'.*allowed: lora, qlora"):
        load_config(None, ["model.family=flamingo", "finetune.method=full"])
    with pytest.raises(InputError, match="all-linear"):
        family.lora_targets("all-linear")
