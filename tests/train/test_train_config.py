"""Training config: every shipped recipe loads; precedence defaults -> YAML -> --set; errors name
the bad value and the allowed ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from roadscene.errors import InputError
from roadscene.train.config import TrainConfig, load_config, read_saved_config, save_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("recipe", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_recipe_loads(recipe: Path) -> None:
    config = load_config(recipe)
    assert isinstance(config, TrainConfig)
    assert recipe.read_text().startswith("#"), "recipes start with the command that runs them"


def test_published_caption_recipe_values() -> None:
    config = load_config(
        Path(__file__).resolve().parents[2] / "configs/smolvlm2-2.2b-caption-lora.yaml"
    )
    assert config.data.task == "caption"
    assert (config.train.learning_rate, config.train.num_epochs) == (2e-4, 3)
    assert (config.train.batch_size, config.train.grad_accum) == (2, 4)
    assert (config.finetune.lora_r, config.finetune.lora_alpha, config.finetune.lora_dropout) == (
        16,
        32,
        0.05,
    )


def test_precedence_defaults_yaml_cli(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  learning_rate: 0.001\n  batch_size: 4\n")
    config = load_config(recipe, ["train.batch_size=16", "data.on_bad_image=skip"])
    assert config.train.learning_rate == 0.001  # YAML over default
    assert config.train.batch_size == 16  # --set over YAML
    assert config.train.grad_accum == TrainConfig().train.grad_accum  # default kept
    assert config.data.on_bad_image == "skip"


def test_bad_values_name_value_and_allowed(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"'finetune.method'.*'lorax'.*'lora', 'qlora' or 'full'"):
        load_config(None, ["finetune.method=lorax"])
    with pytest.raises(
        InputError, match=r"unknown key 'train.lr'; keys of 'train': .*learning_rate"
    ):
        load_config(None, ["train.lr=1"])
    with pytest.raises(InputError, match=r"unknown family 'llava'; allowed: .*smolvlm"):
        load_config(None, ["model.family=llava"])
    with pytest.raises(InputError, match="not key=value"):
        load_config(None, ["train.batch_size"])
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("train:\n  batch_size: 0\n")
    with pytest.raises(
        InputError, match=r"bad.yaml: 'train.batch_size': .*greater than or equal to 1"
    ):
        load_config(recipe)
    recipe.write_text("trainer:\n  batch_size: 2\n")
    with pytest.raises(InputError, match=r"unknown section 'trainer'; allowed: model, finetune"):
        load_config(recipe)
    recipe.write_text("train: [1, 2\n")
    with pytest.raises(InputError, match="malformed YAML"):
        load_config(recipe)


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    config = load_config(
        None, ["train.learning_rate=0.005", "finetune.target_modules=[q_proj, k_proj]"]
    )
    save_config(config, tmp_path)
    again = read_saved_config(tmp_path)
    assert again == config
    assert again.finetune.target_modules == ["q_proj", "k_proj"]
