"""`roadscene demo`: a shortened run goes end to end (data -> train -> predict -> evaluate) and
writes every report file; the same seed gives the same numbers; the gallery shows what it says."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from roadscene.data.synth import RenderOptions, render_scene
from roadscene.demo import SUMMARY_FILE, DemoConfig, run_demo
from roadscene.errors import InputError
from roadscene.report.gallery import GalleryItem, gallery_html, item_verdicts
from roadscene.schema import SceneAnnotation
from roadscene.targets import render_response


def _tiny_config(out: Path, *, caption_metrics: bool) -> DemoConfig:
    return DemoConfig(
        out=out,
        steps=3,
        batch_size=4,
        warmup_steps=1,
        n_train=6,
        n_val=2,
        n_test=5,
        predict_batch_size=5,
        max_new_tokens=16,
        gallery_size=3,
        caption_metrics=caption_metrics,
        sizes={
            "vision_hidden_size": 32,
            "vision_layers": 1,
            "text_hidden_size": 32,
            "text_layers": 1,
            "num_attention_heads": 2,
            "vocab_size": 300,
        },
    )


@pytest.fixture(scope="module")
def short_demo(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("demo") / "run"
    return run_demo(_tiny_config(out, caption_metrics=True), log=lambda _: None)


@pytest.mark.slow
def test_short_demo_writes_every_report_file(short_demo) -> None:
    out = short_demo.out
    expected = [
        "data/annotations.csv",
        "data/bvpi_sft_test.jsonl",
        "data/captions_test.json",
        "model-init/config.json",
        "train/model/roadscene_config.yaml",
        "train/model/training_summary.json",
        "predictions_test.jsonl",
        SUMMARY_FILE,
        "report/report.md",
        "report/gallery.html",
        "report/safety/report.md",
        "report/safety/report.json",
        "report/safety/confusion_sidewalk_pos.png",
        "report/safety/objects_near_precision_recall.png",
        "report/captions/report.md",
        "report/captions/report.json",
    ]
    missing = [name for name in expected if not (out / name).is_file()]
    assert missing == []
    predictions = (out / "predictions_test.jsonl").read_text().splitlines()
    assert len(predictions) == 5
    # default prediction settings: grammar-constrained, and every line has its navigation cue
    for line in predictions:
        row = json.loads(line)
        assert row["cue"]["text"] and row["cue"]["action"], row
    summary = json.loads((out / SUMMARY_FILE).read_text())
    stages = ["1/5 data", "2/5 model", "3/5 train", "4/5 predict", "5/5 evaluate", "total"]
    assert list(summary["seconds"]) == stages
    assert summary["steps_done"] == summary["steps_planned"] == 3
    assert summary["stopped_by_budget"] is False
    assert set(summary["metrics"]) >= {"sidewalk accuracy", "close-object recall (micro)", "CIDEr"}
    # the headline numbers are the strict report's, not a private recount
    safety = json.loads((out / "report/safety/report.json").read_text())
    sidewalk = safety["strict"]["fields"]["sidewalk_pos"]["accuracy"]["rate"]
    assert summary["metrics"]["sidewalk accuracy"] == sidewalk
    assert safety["n"] == 5 and safety["missing"] == 0
    report = (out / "report/report.md").read_text()
    assert "| sidewalk accuracy |" in report and "gallery.html" in report
    gallery = (out / "report/gallery.html").read_text()
    assert gallery.count("data:image/png;base64,") >= 3


@pytest.mark.slow
def test_same_seed_gives_the_same_numbers(short_demo, tmp_path) -> None:
    again = run_demo(_tiny_config(tmp_path / "again", caption_metrics=False), log=lambda _: None)
    first = (short_demo.out / "predictions_test.jsonl").read_bytes()
    assert (again.out / "predictions_test.jsonl").read_bytes() == first
    safety = {k: v for k, v in short_demo.metrics.items() if k not in {"CIDEr", "BLEU-4",
                                                                      "METEOR", "ROUGE-L"}}  # fmt: skip
    assert again.metrics == safety


def test_demo_refuses_a_used_folder(tmp_path) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / SUMMARY_FILE).write_text("{}")
    with pytest.raises(InputError, match="not empty"):
        run_demo(_tiny_config(tmp_path / "used", caption_metrics=False), log=lambda _: None)


def test_sizes_are_overrides_on_the_family_demo_sizes(tmp_path) -> None:
    from roadscene.models import get_family

    family = get_family("smolvlm")
    config = DemoConfig(sizes={"text_layers": 1})
    assert config.model_sizes() == {
        **family.sizes(family.demo_sizes).model_dump(),
        "text_layers": 1,
    }
    assert DemoConfig().model_sizes() == family.sizes(family.demo_sizes).model_dump()
    # a size the family does not have, or a bad value, is refused before anything is written
    with pytest.raises(InputError, match="no size 'nope'"):
        DemoConfig(out=tmp_path / "d", sizes={"nope": 1})
    with pytest.raises(InputError, match="text_layers"):
        DemoConfig(out=tmp_path / "d", sizes={"text_layers": 0})
    assert not (tmp_path / "d").exists()


def test_default_steps_follow_the_minutes() -> None:
    assert DemoConfig(minutes=2).train_steps() == 2 * DemoConfig(minutes=1).train_steps()
    assert DemoConfig(minutes=2, steps=17).train_steps() == 17


def test_demo_cli_rejects_bad_values(run_cli, tmp_path) -> None:
    bad = run_cli("demo", "--out", tmp_path / "d", "--family", "nope")
    assert bad.returncode == 2 and "family" in bad.stderr
    assert not (tmp_path / "d").exists()


def test_gallery_marks_right_and_wrong_parts(tmp_path) -> None:
    scene = SceneAnnotation.build("a.png", "left", "right", near={"person": ["center"]})
    path = tmp_path / "a.png"
    Image.fromarray(render_scene(scene, 0, RenderOptions())).save(path)
    target = render_response(scene, None)
    right = GalleryItem(path, scene, target, target)
    wrong = GalleryItem(
        path, scene, target, "Sidewalk: left. Road: left. RoadVsSidewalk: unknown. Nearby: none."
    )
    assert all(item_verdicts(right).values())
    verdicts = item_verdicts(wrong)
    assert verdicts["sidewalk"] and not verdicts["road"] and not verdicts["close objects"]
    page = gallery_html([right, wrong], "t")
    assert page.count("data:image/png;base64,") == 2
    assert page.count("&#10007;") == sum(not v for v in verdicts.values())
    # the true cue for a person in the center with the road on the right: step left
    assert "left" in page.split("truth: cue and target")[1].lower()
    assert np.asarray(Image.open(path)).shape == (96, 96, 3)


@pytest.mark.slow
def test_resume_finishes_a_stopped_demo(short_demo, tmp_path) -> None:
    """A demo stopped during prediction continues with --resume: training is kept, only the
    missing test images are predicted, and the numbers equal the uninterrupted run's."""
    import shutil

    stopped = tmp_path / "stopped"
    shutil.copytree(short_demo.out, stopped)
    lines = (stopped / "predictions_test.jsonl").read_text().splitlines(keepends=True)
    (stopped / "predictions_test.jsonl").write_text("".join(lines[:2]))
    (stopped / SUMMARY_FILE).unlink()
    # reporting options (here: caption metrics) may change on resume; the run's settings not
    config = _tiny_config(stopped, caption_metrics=False).model_copy(update={"resume": True})
    resumed = run_demo(config, log=lambda _: None)
    assert resumed.metrics == {k: v for k, v in short_demo.metrics.items() if k in resumed.metrics}
    assert "sidewalk accuracy" in resumed.metrics
    assert (stopped / "predictions_test.jsonl").read_bytes() == (
        short_demo.out / "predictions_test.jsonl"
    ).read_bytes()
    # other settings than the stopped run's are refused
    other = config.model_copy(update={"seed": 1})
    with pytest.raises(InputError, match="seed"):
        run_demo(other, log=lambda _: None)


@pytest.mark.slow
def test_demo_trains_with_augmentation_and_scores_each_condition(tmp_path) -> None:
    from roadscene.data.augment import weather_preset

    config = _tiny_config(tmp_path / "weather", caption_metrics=False).model_copy(
        update={"augment": weather_preset(0.5, 0.7), "conditions": ["fog", "night"]}
    )
    result = run_demo(config, log=lambda _: None)
    summary = json.loads((result.out / SUMMARY_FILE).read_text())
    assert list(summary["conditions"]) == ["clean", "fog", "night"] == list(result.by_condition)
    assert summary["conditions"]["clean"] == result.metrics
    assert summary["train_seconds_per_step"] > 0
    for condition in ("fog", "night"):
        lines = (result.out / f"predictions_test_{condition}.jsonl").read_text().splitlines()
        assert len(lines) == 5
        assert (result.out / "report" / f"safety_{condition}" / "report.md").is_file()
    saved = (result.out / "train" / "model" / "roadscene_config.yaml").read_text()
    assert "night:" in saved and "p: 0.5" in saved
    with pytest.raises(ValueError, match="unknown condition 'snow'"):
        DemoConfig(conditions=["snow"])
