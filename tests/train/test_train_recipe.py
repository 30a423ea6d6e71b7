"""Training on the data recipe's inputs: an exported conversational file with augmentation, and
a task mix whose realised proportions the run records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from roadscene.data.formats import export_messages
from roadscene.train.config import load_config, read_saved_config
from roadscene.train.runner import run_training

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "configs" / "tiny-smolvlm.yaml"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(model_dir: Path, data_dir: Path, out: Path, *overrides: str):
    return load_config(
        RECIPE,
        [
            f"model.name_or_path={model_dir}",
            f"data.data_dir={data_dir}",
            f"train.output_dir={out}",
            "train.max_steps=2",
            "data.eval_split=null",
            "generation_eval.enabled=false",
            *overrides,
        ],
    )


def test_export_then_train_on_the_conversational_file_with_augmentation(
    tiny_smolvlm_dir: Path, tiny_bvpi_dir: Path, tmp_path: Path
) -> None:
    exported = tmp_path / "export" / "train_messages.jsonl"
    export_messages("bvpi", tiny_bvpi_dir / "bvpi_sft_train.jsonl", exported)
    augment = {"transforms": {"rain": {"p": 0.5}, "night": {"p": 0.5}}, "hflip": 0.5}
    config = _config(
        tiny_smolvlm_dir,
        tmp_path / "unused",  # the file is given; nothing is read from data_dir
        tmp_path / "run",
        f"data.train_file={exported}",
        f"data.augment={json.dumps(augment)}",
        "data.cache_encoded=false",  # the recipe caches; augmented pixels change every epoch
    )
    result = run_training(config)
    summary = json.loads((result.model_dir / "training_summary.json").read_text())
    assert summary["train_rows"] == 8 and summary["global_step"] == 2
    saved = read_saved_config(result.model_dir)
    assert saved is not None and saved.data.augment.hflip == 0.5
    assert saved.data.train_file == str(exported)
    prompts = json.loads((result.model_dir / "roadscene_prompts.json").read_text())
    assert prompts["prompts"] == [{"prompt": "Describe the scene.", "count": 8}]


def test_a_task_mix_run_records_its_realised_proportions(
    tiny_smolvlm_dir: Path, tiny_bvpi_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    captions = tmp_path / "captions_train.json"
    rows = [
        {"image": str(tiny_bvpi_dir / "images" / f"{i}.png"), "caption": f"scene {i}"}
        for i in range(8)
    ]
    captions.write_text(json.dumps(rows))
    mix = {
        "sources": [
            {"task": "caption", "file": str(captions), "weight": 0.7},
            {"task": "bvpi", "file": "bvpi_sft_train.jsonl", "weight": 0.3},
        ],
        "annotated_share": 0.2,
        "length": 400,
    }
    config = _config(
        tiny_smolvlm_dir, tiny_bvpi_dir, tmp_path / "run", f"data.mix={json.dumps(mix)}"
    )
    result = run_training(config)
    summary = json.loads((result.model_dir / "training_summary.json").read_text())
    plan = summary["mix"]
    assert plan["items"] == summary["train_rows"] == 400
    assert plan["configured_sources"] == {
        "caption:captions_train.json": 0.7,
        "bvpi:bvpi_sft_train.jsonl": 0.3,
    }
    assert plan["sources"]["caption:captions_train.json"] == pytest.approx(0.7, abs=0.06)
    assert plan["annotated"] == pytest.approx(0.2, abs=0.06)
    assert "task mix over 400 items: caption:captions_train.json 0." in capsys.readouterr().out


def test_few_shot_items_train_beside_plain_ones_with_flamingo(
    tiny_flamingo_dir: Path, tiny_bvpi_dir: Path, tmp_path: Path
) -> None:
    import torch
    from PIL import Image

    from roadscene.data.examples import VisionTextExample
    from roadscene.models import get_family

    # a batch of a plain row and a row with two demonstrations: the plain row's image axis is
    # padded, and its logits are those it has alone
    family = get_family("flamingo")
    loaded = family.load(str(tiny_flamingo_dir), dtype=torch.float32)
    image = Image.new("RGB", (32, 32), (200, 30, 30))
    plain = VisionTextExample([image], "Describe.", "Sidewalk: left.")
    shot = VisionTextExample(
        [Image.new("RGB", (32, 32), (0, 90, 200))], "Describe.", "Road: right."
    )
    few = VisionTextExample([image], "Describe.", "Sidewalk: left.", demonstrations=[shot, shot])
    encoded = [family.encode(loaded.processor, e) for e in (plain, few)]
    batch = family.collate(loaded.processor, encoded, padding_side="right")
    alone = family.collate(loaded.processor, encoded[:1], padding_side="right")
    assert batch["vision_x"].shape[1] == 3 and alone["vision_x"].shape[1] == 1
    with torch.no_grad():
        both = loaded.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        single = loaded.model(**{k: v for k, v in alone.items() if k != "labels"}).logits
    length = single.shape[1]
    assert torch.allclose(both[0, :length], single[0], atol=1e-5)

    mix = {"sources": [{"task": "bvpi", "file": "bvpi_sft_train.jsonl", "weight": 1}],
           "few_shot_share": 0.5, "shots": 2, "length": 16}  # fmt: skip
    config = load_config(
        REPO / "configs" / "tiny-flamingo.yaml",
        [
            f"model.name_or_path={tiny_flamingo_dir}",
            f"data.data_dir={tiny_bvpi_dir}",
            f"train.output_dir={tmp_path / 'run'}",
            "train.max_steps=2",
            "train.batch_size=4",
            "data.eval_split=null",
            "generation_eval.enabled=false",
            f"data.mix={json.dumps(mix)}",
        ],
    )
    summary = json.loads((run_training(config).model_dir / "training_summary.json").read_text())
    assert summary["global_step"] == 2 and 0 < summary["mix"]["few_shot"] < 1
