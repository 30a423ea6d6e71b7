"""The preference stage (`stage: dpo`, TRL's DPOTrainer) on tiny models (CPU): the published
pair format through `roadscene train`, the reference is the SFT model, resume equals an
uninterrupted run, the batches are the family's SFT encoding, and the recipe's checks."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from roadscene.errors import InputError
from roadscene.models import get_family, list_families
from roadscene.train.config import TrainConfig, load_config
from roadscene.train.runner import run_training

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[2]
DPO_RECIPE = REPO / "configs" / "smolvlm2-2.2b-bvpi-dpo.yaml"
TINY = (
    "train.batch_size=4", "train.grad_accum=1", "train.eval_batch_size=4", "train.warmup_steps=0",
    "train.gradient_checkpointing=false", "train.dataloader_num_workers=0", "train.num_threads=1",
    "train.logging_steps=1", "generation_eval.num_examples=4", "generation_eval.max_new_tokens=12",
    "data.max_eval_examples=4",
)  # fmt: skip
DPO_FAMILIES = [name for name in list_families() if not get_family(name).preference_limitation]


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    """Synthetic scenes as `roadscene data synth` writes them: bvpi_sft_* and the published
    pair format bvpi_dpo_{train,val}.jsonl (chosen = structured answer, rejected = caption)."""
    from roadscene.data.synth import write_synth_dataset

    out = tmp_path_factory.mktemp("synth") / "data"
    write_synth_dataset(out, 24, seed=0, val_fraction=0.25, test_fraction=0.25)
    return out


@pytest.fixture(scope="module")
def sft_run(tiny_smolvlm_dir: Path, synth_dir: Path, tmp_path_factory) -> Path:
    """A short LoRA SFT run of the tiny SmolVLM (its model folder holds the adapter)."""
    out = tmp_path_factory.mktemp("sft") / "run"
    config = load_config(
        REPO / "configs" / "smolvlm2-2.2b-bvpi-lora.yaml",
        [f"model.name_or_path={tiny_smolvlm_dir}", f"data.data_dir={synth_dir}",
         f"train.output_dir={out}", "train.max_steps=6", "train.eval_steps=6",
         "train.learning_rate=0.01", "generation_eval.enabled=false", *TINY],
    )  # fmt: skip
    return run_training(config).model_dir


def dpo_overrides(start: Path, data: Path, out: Path, *more: str) -> list[str]:
    return [
        f"model.name_or_path={start}", f"data.data_dir={data}", f"train.output_dir={out}",
        "train.learning_rate=0.003", "train.lr_scheduler=constant", *TINY, *more,
    ]  # fmt: skip


def log_history(run: Path) -> list[dict]:
    newest = max(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return json.loads((newest / "trainer_state.json").read_text())["log_history"]


@pytest.mark.slow
def test_dpo_on_published_pairs_through_the_train_command(
    sft_run: Path, synth_dir: Path, tiny_smolvlm_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip("trl")
    from typer.testing import CliRunner

    from roadscene.cli.app import app

    out = tmp_path / "dpo"
    overrides = dpo_overrides(sft_run, synth_dir, out, "train.max_steps=4", "train.eval_steps=2")
    # `roadscene train RECIPE --set ...`, in this process (the command, without a second start-up)
    result = CliRunner().invoke(app, ["train", str(DPO_RECIPE), *(f"--set={o}" for o in overrides)])
    assert result.exit_code == 0, result.output[-3000:]
    assert f"saved {out / 'model'}" in result.output

    model_dir = out / "model"
    saved = {path.name for path in model_dir.iterdir()}
    assert {"adapter_model.safetensors", "roadscene_config.yaml", "training_summary.json"} <= saved
    assert "ref" not in saved  # the frozen reference copy stays in the checkpoints only
    assert all((c / "roadscene_config.yaml").is_file() for c in out.glob("checkpoint-*"))
    summary = json.loads((model_dir / "training_summary.json").read_text())
    assert summary["stage"] == "dpo" and summary["global_step"] == 4
    assert summary["train_pairs"] == 12 and summary["eval_pairs"] == 4  # data.max_eval_examples
    metrics = summary["metrics"]
    for key in ("eval_rewards/margins", "eval_rewards/accuracies", "eval_preference_accuracy",
                "eval_logp_margin", "eval_field_accuracy", "eval_loss"):  # fmt: skip
        assert key in metrics, key
    assert [json.loads(line)["step"] for line in (out / "generation_eval.jsonl").open()][:2] == [
        2,
        4,
    ]

    history = log_history(out)
    steps = [entry for entry in history if "rewards/margins" in entry]
    assert [entry["step"] for entry in steps] == [1, 2, 3, 4]
    # The reference is the SFT model the policy starts as (a frozen copy of its adapter): at the
    # first step both rewards are 0 and the loss is ln 2. Had the reference been the base model
    # (adapter disabled), the SFT adapter's own change would show as a reward.
    first = steps[0]
    assert first["rewards/chosen"] == pytest.approx(0, abs=1e-4)
    assert first["rewards/rejected"] == pytest.approx(0, abs=1e-4)
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert steps[-1]["rewards/margins"] > 0, "DPO did not separate chosen from rejected"

    from roadscene.predict import ModelCard

    card = ModelCard.read(model_dir)  # the DPO adapter applies to the SFT run's base model
    assert (card.base, card.adapter, card.family) == (
        str(tiny_smolvlm_dir),
        str(model_dir),
        "smolvlm",
    )


@pytest.mark.slow
def test_dpo_resume_equals_uninterrupted(sft_run: Path, synth_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("trl")
    from roadscene.train.callbacks import StopAfterSaveCallback

    def config(out: Path) -> TrainConfig:
        more = ("train.max_steps=6", "train.eval_steps=3", "data.eval_split=null",
                "generation_eval.enabled=false")  # fmt: skip
        return load_config(DPO_RECIPE, dpo_overrides(sft_run, synth_dir, out, *more))

    straight = run_training(config(tmp_path / "a"))
    interrupted = config(tmp_path / "b")
    run_training(interrupted, extra_callbacks=[StopAfterSaveCallback()])
    assert [p.name for p in (tmp_path / "b").glob("checkpoint-*")] == ["checkpoint-3"]
    with pytest.raises(InputError, match="--resume"):
        run_training(interrupted)
    # a newer checkpoint the kill cut short (no trainer_state.json): resume falls back past it
    torn = tmp_path / "b" / "checkpoint-4"
    shutil.copytree(tmp_path / "b" / "checkpoint-3", torn)
    (torn / "trainer_state.json").unlink()
    resumed = run_training(interrupted, resume=True)
    assert (tmp_path / "b" / "incomplete-checkpoint-4").is_dir()

    a = load_file(straight.model_dir / "adapter_model.safetensors")
    b = load_file(resumed.model_dir / "adapter_model.safetensors")
    start = load_file(sft_run / "adapter_model.safetensors")
    assert a.keys() == b.keys() == start.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6)
    assert any(not torch.equal(a[name], start[name]) for name in a), "DPO changed nothing"
    losses = {
        run: [e["loss"] for e in log_history(run) if "rewards/margins" in e and e["step"] > 3]
        for run in (tmp_path / "a", tmp_path / "b")
    }
    assert losses[tmp_path / "a"] == pytest.approx(losses[tmp_path / "b"], abs=1e-6)


@pytest.mark.slow
def test_dpo_stops_on_a_nan_loss_naming_the_step(
    sft_run: Path, synth_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip("trl")
    more = ("train.learning_rate=1e30", "train.max_grad_norm=1e30", "train.max_steps=5",
            "data.eval_split=null", "generation_eval.enabled=false")  # fmt: skip
    config = load_config(DPO_RECIPE, dpo_overrides(sft_run, synth_dir, tmp_path / "run", *more))
    with pytest.raises(
        InputError, match=r"training stopped at step [1-5]: the training loss became (nan|inf)"
    ):
        run_training(config)
    assert not (tmp_path / "run" / "model").exists()


def test_dpo_checks_its_run_folder_before_loading(sft_run: Path, synth_dir: Path, tmp_path: Path):
    """As for SFT: output_dir must be new, empty or a run folder; checked before any work."""
    pytest.importorskip("trl")
    theirs = tmp_path / "notes"
    theirs.mkdir()
    (theirs / "keep.txt").write_text("keep\n")
    config = load_config(DPO_RECIPE, dpo_overrides(sft_run, synth_dir, theirs))
    with pytest.raises(InputError, match="is not a training run folder written by roadscene"):
        run_training(config)
    assert [p.name for p in theirs.iterdir()] == ["keep.txt"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("family", "method"), [(name, "lora") for name in DPO_FAMILIES] + [("smolvlm", "full")]
)
def test_dpo_from_a_full_model_for_every_family(
    family: str, method: str, tiny_model_dir_for, synth_dir: Path, tmp_path: Path
) -> None:
    """New adapters (or every weight) on a full model; the reference is that model."""
    pytest.importorskip("trl")
    overrides = dpo_overrides(
        tiny_model_dir_for(family), synth_dir, tmp_path / "run", f"model.family={family}",
        f"finetune.method={method}", "train.max_steps=2", "data.eval_split=null",
        "generation_eval.enabled=false",
    )  # fmt: skip
    result = run_training(load_config(DPO_RECIPE, overrides))
    saved = {path.name for path in result.model_dir.iterdir()}
    assert ("model.safetensors" if method == "full" else "adapter_model.safetensors") in saved
    first = next(e for e in log_history(tmp_path / "run") if "rewards/margins" in e)
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-4)


def test_preference_batches_are_the_sft_encoding(tiny_smolvlm_dir: Path, synth_dir: Path) -> None:
    from roadscene.data.examples import VisionTextExample
    from roadscene.data.images import open_image
    from roadscene.data.pairs import load_pairs
    from roadscene.models.base import IGNORE_INDEX
    from roadscene.train.preference import PreferenceCollator

    family = get_family("smolvlm")
    processor = family.load(tiny_smolvlm_dir, device="cpu").processor
    pairs = load_pairs(synth_dir / "bvpi_dpo_train.jsonl", synth_dir, limit=2)
    batch = PreferenceCollator(family, processor, pairs)([{"index": 0}, {"index": 1}])
    assert batch["input_ids"].shape[0] == 4 and "labels" not in batch
    for row, (pair, answer) in enumerate(
        [(pairs[0], pairs[0].chosen), (pairs[1], pairs[1].chosen),
         (pairs[0], pairs[0].rejected), (pairs[1], pairs[1].rejected)]
    ):  # fmt: skip
        example = VisionTextExample([open_image(pair.image_path)], pair.prompt, answer)
        sft = family.encode(processor, example)
        length = len(sft["input_ids"])
        assert torch.equal(batch["input_ids"][row, :length], sft["input_ids"])
        assert torch.equal(
            batch["completion_mask"][row, :length].bool(), sft["labels"] != IGNORE_INDEX
        )
        assert not batch["attention_mask"][row, length:].any()

    prompt = int((sft["labels"] == IGNORE_INDEX).sum())
    cut = PreferenceCollator(family, processor, pairs, max_length=prompt + 3)([{"index": 1}])
    assert cut["input_ids"].shape[1] <= prompt + 3 and int(cut["completion_mask"][1].sum()) == 3
    with pytest.raises(InputError, match=r"dpo.max_length=10 leaves no answer") as err:
        PreferenceCollator(family, processor, pairs, max_length=10)([{"index": 0}])
    assert ":1" in str(err.value)  # names the pair's line


def test_preference_recipe_checks() -> None:
    config = load_config(DPO_RECIPE, ["stage=dpo", "dpo.beta=0.3", "dpo.loss_type=[sigmoid,sft]",
                                      "dpo.loss_weights=[1.0,0.2]"])  # fmt: skip
    assert (config.stage, config.dpo.beta, config.dpo.loss_type) == ("dpo", 0.3, ["sigmoid", "sft"])
    with pytest.raises(InputError, match="only applies with stage: dpo"):
        load_config(None, ["dpo.beta=0.2"])
    with pytest.raises(InputError, match="loss_weights has 1 values for 2"):
        load_config(DPO_RECIPE, ["dpo.loss_type=[sigmoid,sft]", "dpo.loss_weights=[1.0]"])
    with pytest.raises(InputError, match="'dpo.loss_type.0'.*got 'dop'.*sigmoid"):
        load_config(DPO_RECIPE, ["dpo.loss_type=[dop]"])
    with pytest.raises(InputError, match="data.task is 'caption'"):
        load_config(DPO_RECIPE, ["data.task=caption"])
    with pytest.raises(InputError, match="stage"):
        load_config(None, ["stage=ppo"])
    # the supervised stage's inputs are refused, not silently ignored
    with pytest.raises(InputError, match=r"data.train_file only applies with stage: sft"):
        load_config(DPO_RECIPE, ["data.train_file=rows.jsonl"])
    with pytest.raises(InputError, match=r"data.augment only applies with stage: sft"):
        load_config(DPO_RECIPE, ["data.augment={hflip: 0.5}"])
    with pytest.raises(InputError, match=r"train.motion_loss_weight only applies with stage: sft"):
        load_config(DPO_RECIPE, ["train.motion_loss_weight=5"])
    # Flamingo: the limitation is named, before anything loads.
    with pytest.raises(InputError, match="not available for the flamingo family.*fused LM head"):
        load_config(DPO_RECIPE, ["model.family=flamingo"])
