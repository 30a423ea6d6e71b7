"""`roadscene demo --video`: a shortened run of the clip model and of its last-frame control goes
end to end (clips on disk -> clips rendered for training -> predictions -> motion scored -> report)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from roadscene.demo import SUMMARY_FILE, DemoConfig, run_demo
from roadscene.demo.config import VIDEO_BAR
from roadscene.io import read_records
from roadscene.predict import ModelCard
from roadscene.train.config import read_saved_config


def _short(out: Path, **options) -> DemoConfig:
    return DemoConfig(
        out=out,
        video=True,
        clip_frames=3,
        steps=2,
        batch_size=2,
        warmup_steps=1,
        n_train=2,
        n_val=1,
        n_test=3,
        predict_batch_size=3,
        max_new_tokens=24,
        gallery_size=2,
        caption_metrics=False,
        threads=1,
        sizes={
            "vision_hidden_size": 32,
            "vision_layers": 1,
            "text_hidden_size": 32,
            "text_layers": 1,
            "num_attention_heads": 2,
            "vocab_size": 300,
        },
        **options,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("frames_seen", "family"), [("all", None), ("last", None), ("all", "smolvlm")]
)
def test_short_video_demo_scores_motion(tmp_path, frames_seen, family) -> None:
    given = {"family": family} if family else {}
    config = _short(tmp_path / "run", frames_seen=frames_seen, **given)
    result = run_demo(config, log=lambda _: None)
    out = result.out
    rows = [row for _, row in read_records(out / "data" / "bvpi_sft_test.jsonl")]
    assert len(rows) == 3 and all(row["video"].endswith(".webm") for row in rows)
    predictions = [row for _, row in read_records(out / "predictions_test.jsonl")]
    assert [p["video"] for p in predictions] == [row["video"] for row in rows]
    card = ModelCard.read(out / "train" / "model")
    assert card.family == (family or "qwen3vl")  # Qwen3-VL unless another is given
    assert (card.clip.frames, card.clip.seen) == (3, frames_seen)
    # the control trains with the same objective: motion words weighted alike
    assert read_saved_config(out / "train" / "model").train.motion_loss_weight == 15.0
    for name in ("motion accuracy", "motion majority-class rate", "sidewalk accuracy"):
        assert name in result.metrics
    summary = json.loads((out / SUMMARY_FILE).read_text())
    report = (out / "report" / "report.md").read_text()
    gallery = (out / "report" / "gallery.html").read_text()
    assert 'class="clip"' in gallery  # clips shown as their frames side by side
    if frames_seen == "last":
        assert summary["bar"] == {k: v for k, v in VIDEO_BAR.items() if k != "motion accuracy"}
        majority = result.metrics["motion majority-class rate"]
        if majority is not None:
            assert summary["motion_ceiling"] == pytest.approx(majority + 0.15)
        assert "the last frame of each clip only (the control)" in report
    else:
        assert summary["bar"] == VIDEO_BAR
        assert "seeing 3 frames of each clip" in report


def test_video_options_are_checked() -> None:
    with pytest.raises(ValueError, match="frames_seen applies to --video only"):
        DemoConfig(frames_seen="last")
    with pytest.raises(ValueError, match="motion_loss_weight applies to --video only"):
        DemoConfig(motion_loss_weight=3)
    with pytest.raises(ValueError, match="--conditions applies to the still-image demo"):
        DemoConfig(video=True, conditions=["fog"])
    assert (
        DemoConfig(video=True, minutes=3.75).train_steps()
        == DemoConfig(video=True).train_steps() // 2
    )


def test_clips_train_in_small_batches_within_a_shorter_budget() -> None:
    clips, images = DemoConfig(video=True), DemoConfig()
    assert (clips.family, clips.batch_size, clips.minutes, clips.train_steps()) == (
        "qwen3vl",
        8,
        7.5,
        1500,
    )
    assert (images.family, images.batch_size, images.minutes, images.train_steps()) == (
        "smolvlm",
        32,
        8.5,
        910,
    )
    given = DemoConfig(video=True, family="smolvlm", batch_size=16, minutes=8.5)
    # what is given is kept
    assert (given.family, given.batch_size, given.minutes) == ("smolvlm", 16, 8.5)
    # the settings a demo folder records read back the same
    assert DemoConfig.model_validate(clips.model_dump()).train_steps() == 1500
