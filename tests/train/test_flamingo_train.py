"""`roadscene train` with the flamingo family (tiny model, CPU): overfitting reproduces the
training answers; resuming equals an uninterrupted run; recipe checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from roadscene.errors import InputError
from roadscene.train.config import TrainConfig, load_config
from roadscene.train.runner import run_training

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "configs" / "tiny-flamingo.yaml"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_config(model_dir: Path, data_dir: Path, out: Path, *overrides: str) -> TrainConfig:
    return load_config(
        RECIPE,
        [
            f"model.name_or_path={model_dir}",
            f"data.data_dir={data_dir}",
            f"train.output_dir={out}",
            "train.num_threads=1",
            *overrides,
        ],
    )


def test_published_recipes_carry_the_published_hyper_parameters() -> None:
    for name, task in (
        ("openflamingo-3b-bvpi.yaml", "bvpi"),
        ("openflamingo-3b-caption.yaml", "caption"),
    ):
        config = load_config(REPO / "configs" / name)
        train, options = config.train, config.family_options
        assert (config.model.family, config.data.task, config.model.dtype) == (
            "flamingo",
            task,
            "float32",
        )
        assert (train.num_epochs, train.batch_size, train.learning_rate) == (5, 2, 3e-5)
        assert (train.warmup_steps, train.lr_scheduler) == (100, "constant_with_warmup")
        assert options["gate_lr_multiplier"] == 50 and options["gate_regularization"] == 0.2
        assert options["text_dropout"] == 0.3 and options["cross_attention_weight_decay"] == 0.1


def test_bad_family_option_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="text_dropout"):
        load_config(RECIPE, ["family_options.text_dropout=1.5"])
    with pytest.raises(InputError, match="gate_lr"):
        load_config(RECIPE, ["family_options.gate_lr=3"])


@pytest.mark.slow
def test_overfit_eight_examples_reproduces_them(
    tiny_flamingo_dir: Path, tiny_bvpi_dir: Path, tmp_path: Path
) -> None:
    from roadscene.predict import ModelCard, PredictSettings, predict_file

    config = tiny_config(tiny_flamingo_dir, tiny_bvpi_dir, tmp_path / "run", "train.eval_steps=200")
    result = run_training(config)
    summary = json.loads((result.model_dir / "training_summary.json").read_text())
    assert summary["train_rows"] == 8 and summary["metrics"]["eval_field_accuracy"] == 1.0
    out = tmp_path / "pred.jsonl"
    predict_file(
        tiny_bvpi_dir / "bvpi_sft_test.jsonl",
        out,
        ModelCard.read(result.model_dir),
        PredictSettings(batch_size=8),
        progress=False,
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 8
    for row in rows:
        assert row["prediction"] == row["target"]
    # Frozen parts are bit-identical to the initial model.
    before = load_file(tiny_flamingo_dir / "model.safetensors")
    after = load_file(result.model_dir / "model.safetensors")
    for name, tensor in before.items():
        frozen = name.startswith("vision_encoder.") or (
            name.startswith("lang_encoder.")
            and ".gated_cross_attn_layer." not in name
            and "wte" not in name
        )
        if frozen:
            assert torch.equal(after[name], tensor), name


@pytest.mark.slow
def test_resume_equals_uninterrupted(
    tiny_flamingo_dir: Path, tiny_bvpi_dir: Path, tmp_path: Path
) -> None:
    from roadscene.train.callbacks import StopAfterSaveCallback

    # Text dropout and gate regularisation on: both must replay identically after resuming.
    overrides = (
        "train.max_steps=8", "train.eval_steps=4", "train.batch_size=4",
        "generation_eval.enabled=false", "family_options.text_dropout=0.5",
        "family_options.gate_regularization=0.2",
    )  # fmt: skip
    straight = run_training(
        tiny_config(tiny_flamingo_dir, tiny_bvpi_dir, tmp_path / "a", *overrides)
    )
    interrupted = tiny_config(tiny_flamingo_dir, tiny_bvpi_dir, tmp_path / "b", *overrides)
    run_training(interrupted, extra_callbacks=[StopAfterSaveCallback()])
    assert [p.name for p in (tmp_path / "b").glob("checkpoint-*")] == ["checkpoint-4"]
    resumed = run_training(interrupted, resume=True)

    a = load_file(straight.model_dir / "model.safetensors")
    b = load_file(resumed.model_dir / "model.safetensors")
    initial = load_file(tiny_flamingo_dir / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6)
    assert not torch.equal(a["perceiver.latents"], initial["perceiver.latents"]), "nothing trained"
