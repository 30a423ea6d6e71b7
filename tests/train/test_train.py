"""Training on the tiny SmolVLM (CPU): overfitting, resume, LoRA merge, QLoRA, torchrun, bad
images, and what the run folder holds."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from roadscene.errors import InputError
from roadscene.train.config import TrainConfig, load_config
from roadscene.train.runner import run_training

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "configs" / "tiny-smolvlm.yaml"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_config(model_dir: Path, data_dir: Path, out: Path, *overrides: str) -> TrainConfig:
    return load_config(
        RECIPE,
        [
            f"model.name_or_path={model_dir}",
            f"data.data_dir={data_dir}",
            f"train.output_dir={out}",
            *overrides,
        ],
    )


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def overfit_run(tiny_smolvlm_dir: Path, tiny_bvpi_dir: Path, tmp_path_factory) -> Path:
    """Full fine-tuning of the tiny model on 8 examples for 200 steps."""
    out = tmp_path_factory.mktemp("overfit") / "run"
    config = tiny_config(
        tiny_smolvlm_dir, tiny_bvpi_dir, out, "train.max_steps=200", "train.eval_steps=100"
    )
    result = run_training(config)
    return result.model_dir


@pytest.mark.slow
def test_overfit_reproduces_targets_and_saves_everything(
    overfit_run: Path, tiny_bvpi_dir: Path
) -> None:
    from roadscene.predict import ModelCard, PredictSettings, predict_file

    names = {p.name for p in overfit_run.iterdir()}
    # weights, processor with chat template, resolved config: predict needs nothing else
    assert {"model.safetensors", "processor_config.json", "chat_template.jinja"} <= names
    assert {"tokenizer.json", "roadscene_config.yaml", "training_summary.json"} <= names
    summary = json.loads((overfit_run / "training_summary.json").read_text())
    assert summary["train_rows"] == 8 and summary["skipped_bad_images"] == 0
    assert summary["metrics"]["eval_field_accuracy"] == 1.0
    # checkpoints carry the resolved config too
    checkpoints = sorted(overfit_run.parent.glob("checkpoint-*"))
    assert checkpoints and all((c / "roadscene_config.yaml").is_file() for c in checkpoints)
    log = read_jsonl(overfit_run.parent / "generation_eval.jsonl")
    assert [entry["step"] for entry in log][:2] == [100, 200]

    out = overfit_run.parent / "pred.jsonl"
    predict_file(
        tiny_bvpi_dir / "bvpi_sft_test.jsonl",
        out,
        ModelCard.read(overfit_run),
        PredictSettings(batch_size=8),
        progress=False,
    )
    rows = read_jsonl(out)
    assert len(rows) == 8
    for row in rows:
        assert row["prediction"] == row["target"]


@pytest.mark.slow
def test_describe_asks_what_the_model_was_trained_on(
    overfit_run: Path, tiny_bvpi_dir: Path, run_cli, tmp_path: Path
) -> None:
    """The model was trained on "Describe the scene.", not the published prompt: `describe`
    asks it that prompt (saved with the model) and gives what `predict` gives: the truth."""
    one_thread = {**os.environ, "OMP_NUM_THREADS": "1"}
    data = tiny_bvpi_dir / "bvpi_sft_test.jsonl"
    out = tmp_path / "pred.jsonl"
    run_cli("predict", "--model", overfit_run, "--data", data, "--out", out, check=True,
            env=one_thread)  # fmt: skip
    rows = read_jsonl(out)
    images = [tiny_bvpi_dir / row["image"] for row in rows]
    result = run_cli("describe", *images, "--model", overfit_run, "--json", check=True,
                     env=one_thread)  # fmt: skip
    described = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["prompt"] for d in described] == ["Describe the scene."] * len(rows)
    assert [d["answer"] for d in described] == [row["prediction"] for row in rows]
    assert [d["answer"] for d in described] == [row["target"] for row in rows]


@pytest.mark.slow
def test_batched_equals_one_by_one_greedy(
    overfit_run: Path, tiny_bvpi_dir: Path, tmp_path: Path
) -> None:
    from roadscene.predict import ModelCard, Predictor, PredictSettings, predict_file

    predictor = Predictor.load(ModelCard.read(overfit_run))
    data = tiny_bvpi_dir / "bvpi_sft_test.jsonl"
    outputs = {}
    for batch_size in (1, 3, 8):
        out = tmp_path / f"b{batch_size}.jsonl"
        # a short length cap also exercises rows cut off mid-answer
        settings = PredictSettings(batch_size=batch_size, max_new_tokens=12)
        predict_file(data, out, predictor, settings, progress=False)
        outputs[batch_size] = out.read_bytes()
    assert outputs[1] == outputs[3] == outputs[8]


@pytest.mark.slow
def test_save_reload_identical_logits(
    overfit_run: Path, tiny_bvpi_dir: Path, tmp_path: Path
) -> None:
    from roadscene.data.examples import to_example
    from roadscene.data.records import load_records
    from roadscene.models import get_family

    family = get_family("smolvlm")
    loaded = family.load(overfit_run)
    record = load_records("bvpi", tiny_bvpi_dir / "bvpi_sft_val.jsonl", tiny_bvpi_dir)[1]
    batch = family.collate(loaded.processor, [family.encode(loaded.processor, to_example(record))])
    with torch.no_grad():
        before = loaded.model(**batch).logits
    loaded.model.save_pretrained(tmp_path / "again")
    loaded.processor.save_pretrained(tmp_path / "again")
    reloaded = family.load(tmp_path / "again")
    with torch.no_grad():
        after = reloaded.model(**batch).logits
    assert torch.equal(before, after)


@pytest.mark.slow
def test_resume_equals_uninterrupted(
    tiny_smolvlm_dir: Path, tiny_bvpi_dir: Path, tmp_path: Path
) -> None:
    from roadscene.train.callbacks import StopAfterSaveCallback

    overrides = ("finetune.method=lora", "train.max_steps=8", "train.eval_steps=4",
                 "train.batch_size=4", "train.learning_rate=0.003", "generation_eval.enabled=false")  # fmt: skip
    straight = run_training(
        tiny_config(tiny_smolvlm_dir, tiny_bvpi_dir, tmp_path / "a", *overrides)
    )

    interrupted_cfg = tiny_config(tiny_smolvlm_dir, tiny_bvpi_dir, tmp_path / "b", *overrides)
    run_training(interrupted_cfg, extra_callbacks=[StopAfterSaveCallback()])
    assert [p.name for p in (tmp_path / "b").glob("checkpoint-*")] == ["checkpoint-4"]
    with pytest.raises(InputError, match="--resume"):
        run_training(interrupted_cfg)  # checkpoints there, no --resume: refuse to overwrite
    resumed = run_training(interrupted_cfg, resume=True)

    a = load_file(straight.model_dir / "adapter_model.safetensors")
    b = load_file(resumed.model_dir / "adapter_model.safetensors")
    assert a.keys() == b.keys() and a
    moved = 0
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6)
        moved += int("lora_B" in name and a[name].abs().sum() > 0)
    assert moved, "LoRA B matrices never left zero: nothing was trained"

    # LoRA merged into the base gives the same logits as base + adapter
    from roadscene.data.examples import to_example
    from roadscene.data.records import load_records
    from roadscene.models import get_family

    family = get_family("smolvlm")
    loaded = family.load(tiny_smolvlm_dir, adapter=straight.model_dir)
    record = load_records("bvpi", tiny_bvpi_dir / "bvpi_sft_val.jsonl", tiny_bvpi_dir)[2]
    batch = family.collate(loaded.processor, [family.encode(loaded.processor, to_example(record))])
    base = family.load(tiny_smolvlm_dir).model
    with torch.no_grad():
        unmerged = loaded.model(**batch).logits
        merged = loaded.model.merge_and_unload()(**batch).logits
        plain = base(**batch).logits
    torch.testing.assert_close(merged, unmerged, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(plain, unmerged, atol=1e-4), "adapter had no effect"


@pytest.mark.slow
def test_qlora_cpu_trains_a_step_and_saves_adapter(
    tiny_smolvlm_dir: Path, tiny_bvpi_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb
    from transformers import TrainerCallback

    seen: dict[str, int] = {}

    class CountQuantized(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            seen["linear4bit"] = sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
            seen["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)

    config = tiny_config(tiny_smolvlm_dir, tiny_bvpi_dir, tmp_path / "q", "finetune.method=qlora",
                         "train.max_steps=1", "generation_eval.enabled=false")  # fmt: skip
    result = run_training(config, extra_callbacks=[CountQuantized()])
    assert seen["linear4bit"] > 0 and seen["trainable"] > 0
    assert (result.model_dir / "adapter_model.safetensors").is_file()
    adapter_config = json.loads((result.model_dir / "adapter_config.json").read_text())
    assert adapter_config["target_modules"] == r".*\.text_model\..*\.(q_proj|v_proj)"


def test_missing_image_is_an_error_or_skipped_and_counted(
    tiny_smolvlm_dir: Path, tiny_bvpi_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    lines = (tiny_bvpi_dir / "bvpi_sft_train.jsonl").read_text().splitlines()
    broken = json.loads(lines[2])
    broken["image"] = "images/missing.png"
    lines[2] = json.dumps(broken)
    (data / "bvpi_sft_train.jsonl").write_text("\n".join(lines[:4]) + "\n")
    (tmp_path / "not-an-image.png").write_text("hello")
    unreadable = json.loads(lines[0]) | {"image": str(tmp_path / "not-an-image.png")}
    (data / "bvpi_sft_val.jsonl").write_text(json.dumps(unreadable) + "\n" + lines[1] + "\n")
    common = (
        f"data.image_root={tiny_bvpi_dir}",
        "train.max_steps=1",
        "generation_eval.enabled=false",
    )
    with pytest.raises(
        InputError, match=r"missing.png: image not found \(row .*bvpi_sft_train.jsonl:3\)"
    ):
        run_training(tiny_config(tiny_smolvlm_dir, data, tmp_path / "e", *common))
    assert not (tmp_path / "e").exists()  # nothing written before the error

    result = run_training(
        tiny_config(tiny_smolvlm_dir, data, tmp_path / "s", *common, "data.on_bad_image=skip")
    )
    assert result.skipped_images == 2  # one missing (train), one unreadable (val)
    summary = json.loads((result.model_dir / "training_summary.json").read_text())
    assert (summary["train_rows"], summary["eval_rows"], summary["skipped_bad_images"]) == (3, 1, 2)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Two CPU processes, batch 2 each, 4 steps, a checkpoint every 2, the loss of every step.
DISTRIBUTED = ["train.max_steps=4", "train.eval_steps=2", "train.batch_size=2",
               "train.logging_steps=1", "generation_eval.num_examples=2", "train.num_threads=1"]  # fmt: skip


def _train(
    launcher: list[str], model: Path, data: Path, out: Path, *settings: str, resume: bool = False
) -> None:
    """`LAUNCHER -m roadscene train` on the tiny recipe (one OpenMP thread per process)."""
    sets = [f"model.name_or_path={model}", f"data.data_dir={data}", f"train.output_dir={out}",
            *DISTRIBUTED, *settings]  # fmt: skip
    command = [*launcher, "-m", "roadscene", "train", str(RECIPE)]
    command += [arg for setting in sets for arg in ("--set", setting)]
    command += ["--resume"] if resume else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def _step_losses(out: Path) -> dict[int, float]:
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    return {entry["step"]: entry["loss"] for entry in state["log_history"] if "loss" in entry}


@pytest.fixture(scope="module")
def torchrun_run(tiny_smolvlm_dir: Path, tiny_bvpi_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("torchrun") / "ddp"
    # `python -m torch.distributed.run` is what the `torchrun` command runs (in any venv)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_port", str(_free_port())]  # fmt: skip
    _train(torchrun, tiny_smolvlm_dir, tiny_bvpi_dir, out)
    return out


@pytest.mark.slow
def test_torchrun_two_cpu_processes(torchrun_run: Path) -> None:
    out = torchrun_run
    summary = json.loads((out / "model" / "training_summary.json").read_text())
    assert summary["global_step"] == 4
    assert (out / "model" / "model.safetensors").is_file()
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    # two processes x batch 2 per step: each step consumed 4 of the 8 rows
    assert state["train_batch_size"] == 2 and state["epoch"] == pytest.approx(2.0)
    assert sorted(_step_losses(out)) == [1, 2, 3, 4]


@pytest.mark.slow
def test_accelerate_two_cpu_processes_give_torchrun_loss_curve(
    torchrun_run: Path, tiny_smolvlm_dir: Path, tiny_bvpi_dir: Path, tmp_path: Path
) -> None:
    """`accelerate launch --config_file configs/accelerate/ddp.yaml --num_processes 2` on a
    machine without GPUs: two gloo processes, the loss of every step as under torchrun."""
    # `accelerate launch` as a module, like torchrun above
    accelerate = [sys.executable, "-m", "accelerate.commands.launch",
                  "--config_file", str(REPO / "configs" / "accelerate" / "ddp.yaml"),
                  "--num_processes", "2", "--main_process_port", str(_free_port())]  # fmt: skip
    out = tmp_path / "accelerate"
    _train(accelerate, tiny_smolvlm_dir, tiny_bvpi_dir, out)
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["epoch"] == pytest.approx(2.0)  # two processes: 4 rows a step
    reference, losses = _step_losses(torchrun_run), _step_losses(out)
    assert sorted(losses) == sorted(reference) == [1, 2, 3, 4]
    assert max(abs(losses[step] - reference[step]) for step in reference) <= 1e-4


@pytest.mark.slow
def test_two_process_checkpoint_resumes_on_one_process(
    torchrun_run: Path, tiny_smolvlm_dir: Path, tiny_bvpi_dir: Path, tmp_path: Path
) -> None:
    """Steps 1-2 on two processes (batch 2 each), steps 3-4 resumed on one (batch 4): the same
    global batch, so the same losses as the two-process run."""
    out = tmp_path / "resumed"
    out.mkdir()
    shutil.copytree(torchrun_run / "checkpoint-2", out / "checkpoint-2")
    no_eval = ["data.eval_split=null", "generation_eval.enabled=false"]  # losses only
    _train([sys.executable], tiny_smolvlm_dir, tiny_bvpi_dir, out, "train.batch_size=4",
           *no_eval, resume=True)  # fmt: skip
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["epoch"] == pytest.approx(2.0)  # 4 rows a step on one process
    reference, losses = _step_losses(torchrun_run), _step_losses(out)
    assert max(abs(losses[step] - reference[step]) for step in (3, 4)) <= 1e-4


def test_task_rows_caption_and_annotated(tiny_bvpi_dir: Path, tmp_path: Path) -> None:
    from roadscene.data.records import load_records, task_file

    captions = [{"image": f"images/{i}.png", "caption": f"Scene {i}."} for i in range(3)]
    (tmp_path / "captions_train.json").write_text(json.dumps(captions))
    rows = load_records("caption", task_file("caption", "train", tmp_path), tiny_bvpi_dir)
    assert [(r.prompt, r.answer) for r in rows][0] == ("Describe this road scene.", "Scene 0.")
    assert rows[2].image_path == tiny_bvpi_dir / "images" / "2.png"

    annotated = load_records("annotated", tiny_bvpi_dir / "bvpi_sft_train.jsonl", tiny_bvpi_dir)
    second = annotated[
        2
    ]  # "Sidewalk: right. Road: left. ... Nearby: 2 cars close on the left and right."
    annotation = json.loads(second.prompt.split("\n")[0].removeprefix("Annotation: "))
    assert annotation == {
        "sidewalk": "right",
        "road": "left",
        "relation": "left_of",
        "near": {"car": {"count": 2, "positions": ["left", "right"]}},
        "far": {},
    }
    # the answer: the navigation cue of those fields, then the context caption (none here)
    from roadscene.targets import parse_response
    from roadscene.targets.cue import cue_for_parsed

    expected_cue = cue_for_parsed(parse_response(json.loads(
        (tiny_bvpi_dir / "bvpi_sft_train.jsonl").read_text().splitlines()[2])["response"])).text  # fmt: skip
    assert second.answer == expected_cue and second.answer.endswith(".")
    with_context = tmp_path / "context.jsonl"
    response = "Sidewalk: left. Road: front. RoadVsSidewalk: crossing_front. Nearby: no important close objects visible. Context: A busy crossing."
    with_context.write_text(
        json.dumps({"image": "a.png", "prompt": "p", "response": response}) + "\n"
    )
    (row,) = load_records("annotated", with_context, tmp_path)
    assert row.answer.endswith(". A busy crossing.") and row.answer != "A busy crossing."

    (tmp_path / "bad.jsonl").write_text(json.dumps({"image": "a.png", "prompt": "p"}) + "\n")
    with pytest.raises(InputError, match=r"bad.jsonl:1: field 'response'"):
        load_records("bvpi", tmp_path / "bad.jsonl", tmp_path)


def test_caption_lora_with_checkpointing_and_length_grouping(
    tiny_smolvlm_dir: Path, tiny_bvpi_dir: Path, tmp_path: Path
) -> None:
    captions = [{"image": f"images/{i}.png", "caption": "A road. " * (i + 1)} for i in range(8)]
    for split in ("train", "val"):
        (tmp_path / f"captions_{split}.json").write_text(json.dumps(captions))
    config = tiny_config(tiny_smolvlm_dir, tmp_path, tmp_path / "run", "data.task=caption",
                         f"data.image_root={tiny_bvpi_dir}", "finetune.method=lora",
                         "train.gradient_checkpointing=true", "train.group_by_length=true",
                         "train.max_steps=2", "train.eval_steps=2", "train.batch_size=2",
                         "generation_eval.num_examples=2", "generation_eval.max_new_tokens=4")  # fmt: skip
    result = run_training(config)
    summary = json.loads((result.model_dir / "training_summary.json").read_text())
    assert summary["global_step"] == 2
    # caption answers carry no fields: the best checkpoint is chosen by eval loss
    assert "eval_loss" in summary["metrics"] and "eval_field_accuracy" in summary["metrics"]
    assert (result.model_dir / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_beam_search_batched_equals_one_by_one(
    overfit_run: Path, tiny_bvpi_dir: Path, tmp_path: Path
) -> None:
    from roadscene.predict import ModelCard, Predictor, PredictSettings, predict_file

    predictor = Predictor.load(ModelCard.read(overfit_run))
    data = tiny_bvpi_dir / "bvpi_sft_test.jsonl"
    for batch_size in (1, 8):
        settings = PredictSettings(batch_size=batch_size, num_beams=3)
        predict_file(data, tmp_path / f"b{batch_size}.jsonl", predictor, settings, progress=False)
    assert (tmp_path / "b1.jsonl").read_bytes() == (tmp_path / "b8.jsonl").read_bytes()
    rows = read_jsonl(tmp_path / "b8.jsonl")
    assert all(row["prediction"] == row["target"] for row in rows)


@pytest.mark.parametrize("freeze_vision", [False, True])
def test_full_finetune_trains_everything_or_keeps_the_vision_tower_frozen(
    tiny_smolvlm_dir, one_torch_thread, freeze_vision
):
    from roadscene.models import get_family
    from roadscene.models.finetune import prepare_model
    from roadscene.train.config import load_config

    family = get_family("smolvlm")
    model = family.load(str(tiny_smolvlm_dir)).model
    config = load_config(
        None, ["finetune.method=full", f"finetune.freeze_vision={str(freeze_vision).lower()}"]
    )
    model = prepare_model(
        model,
        config.finetune,
        family,
        gradient_checkpointing=config.train.gradient_checkpointing,
    )
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    vision = {
        name for name, _ in model.named_parameters() if name.startswith("model.vision_model.")
    }
    assert vision, "the tiny model has a vision tower"
    assert any(name.startswith("model.text_model.") for name in trainable)
    if freeze_vision:
        assert not (vision & trainable)
    else:
        assert vision <= trainable
