"""Training refuses meaningless settings and hostile YAML, stops on a NaN loss naming the step,
and resumes from the newest complete checkpoint when the newest one is half-written."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from transformers import TrainerCallback

from roadscene.errors import MAX_MESSAGE_CHARS, InputError
from roadscene.train.checkpoints import checkpoint_problem, resume_checkpoint
from roadscene.train.config import load_config
from roadscene.train.runner import run_training

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "configs" / "tiny-smolvlm.yaml"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("train.learning_rate=.inf", "train.learning_rate"),
        ("train.learning_rate=.nan", "train.learning_rate"),
        ("train.num_epochs=.inf", "train.num_epochs"),
        ("train.weight_decay=-.inf", "train.weight_decay"),
        ("train.max_steps=0", "train.max_steps"),
        ("train.max_steps=-7", "train.max_steps"),
        ("train.seed=-1", "train.seed"),
        ("train.batch_size=0", "train.batch_size"),
        ("finetune.lora_dropout=.nan", "finetune.lora_dropout"),
    ],
)
def test_non_finite_and_meaningless_values_name_their_field(override, field) -> None:
    with pytest.raises(InputError) as info:
        load_config(RECIPE, [override])
    assert f"'{field}'" in str(info.value)
    value = override.split("=")[1]
    assert value.lstrip("-.") in str(info.value).lower() or "got" in str(info.value)


def test_yaml_alias_bomb_is_refused_fast_and_echoes_stay_short(tmp_path, cli_in_process) -> None:
    nine = ", ".join(["*a"] * 9)
    levels = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for name, previous in zip("bcdefghi", "abcdefgh", strict=True):
        levels.append(f"{name}: &{name} [{nine.replace('*a', '*' + previous)}]")
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text("\n".join(["x-anchors:", *("  " + line for line in levels)])
                      + "\ndata:\n  task: *i\n")  # fmt: skip
    start = time.perf_counter()
    code, _, err = cli_in_process("train", recipe)
    assert time.perf_counter() - start < 5
    assert code == 2 and "expands to more than" in err and len(err) < MAX_MESSAGE_CHARS + 20
    # a large value written out (no aliases) is echoed capped
    recipe.write_text("data:\n  task: [" + ", ".join(["caption"] * 4000) + "]\n")
    code, _, err = cli_in_process("train", recipe)
    assert code == 2 and "'data.task'" in err and len(err) < 400, err


@pytest.mark.slow
def test_a_nan_loss_stops_training_naming_the_step(tiny_smolvlm_dir, tiny_bvpi_dir, tmp_path):
    config = load_config(RECIPE, [
        f"model.name_or_path={tiny_smolvlm_dir}", f"data.data_dir={tiny_bvpi_dir}",
        f"train.output_dir={tmp_path / 'run'}", "train.learning_rate=1e30", "train.max_steps=5",
        "train.warmup_steps=0", "train.lr_scheduler=constant", "train.max_grad_norm=1e30",
        "generation_eval.enabled=false", "data.eval_split=null",
    ])  # fmt: skip
    with pytest.raises(
        InputError, match=r"training stopped at step [2-5]: the training loss became (nan|inf)"
    ):
        run_training(config)
    assert not (tmp_path / "run" / "model").exists()


class StopAfterSaves(TrainerCallback):
    def __init__(self, saves: int) -> None:
        self.left = saves

    def on_save(self, args, state, control, **kwargs):
        self.left -= 1
        control.should_training_stop = self.left == 0
        return control


@pytest.fixture(scope="module")
def interrupted_run(tiny_smolvlm_dir, tiny_bvpi_dir, tmp_path_factory):
    """A LoRA run of 6 steps stopped after its checkpoints at steps 2 and 4."""
    out = tmp_path_factory.mktemp("interrupted") / "run"
    overrides = [
        f"model.name_or_path={tiny_smolvlm_dir}", f"data.data_dir={tiny_bvpi_dir}",
        f"train.output_dir={out}", "finetune.method=lora", "train.max_steps=6",
        "train.eval_steps=2", "train.save_total_limit=3", "generation_eval.enabled=false",
    ]  # fmt: skip
    run_training(load_config(RECIPE, overrides), extra_callbacks=[StopAfterSaves(2)])
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    return out, overrides


@pytest.mark.slow
def test_resume_falls_back_from_a_half_written_checkpoint(interrupted_run, tmp_path, capsys):
    source, overrides = interrupted_run
    out = tmp_path / "run"
    shutil.copytree(source, out)
    (out / "checkpoint-4" / "trainer_state.json").unlink()  # killed before the Trainer's last file
    overrides = [o if not o.startswith("train.output_dir") else f"train.output_dir={out}"
                 for o in overrides]  # fmt: skip
    result = run_training(load_config(RECIPE, overrides), resume=True)
    said = capsys.readouterr().out
    assert "checkpoint-4 cannot be resumed from: no trainer_state.json" in said
    assert "resuming from checkpoint-2" in said
    assert (out / "incomplete-checkpoint-4").is_dir()  # kept, out of the Trainer's way
    import json

    summary = json.loads((result.model_dir / "training_summary.json").read_text())
    assert summary["global_step"] == 6


@pytest.mark.slow
def test_damaged_weights_or_optimizer_are_incomplete(interrupted_run, tmp_path):
    source, _ = interrupted_run
    out = tmp_path / "run"
    shutil.copytree(source, out)
    weights = out / "checkpoint-4" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert "adapter_model.safetensors is damaged" in checkpoint_problem(out / "checkpoint-4")
    optimizer = out / "checkpoint-2" / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[: optimizer.stat().st_size // 2])
    assert "optimizer.pt is damaged" in checkpoint_problem(out / "checkpoint-2")
    with pytest.raises(InputError, match="no complete checkpoint to resume from"):
        resume_checkpoint(out, log=lambda message: None)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
