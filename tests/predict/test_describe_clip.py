"""`roadscene describe` on clips: one answer per window of N frames along a video or a folder of
frames, a cue per window, and a cue repeated from the window before is not spoken again."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from roadscene.data.clips import write_video
from roadscene.predict import ModelCard, Predictor
from roadscene.predict.describe import describe_images
from roadscene.predict.speech import espeak_path

ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
HEADER = "Sidewalk: left. Road: right. RoadVsSidewalk: right_of. Nearby: "


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """A 4.5 s clip at 4 fps (18 frames): with 1 s windows of 3 frames, 4 windows and a last
    half second left over."""
    path = tmp_path_factory.mktemp("long_clip") / "walk.webm"
    frames = [np.full((32, 32, 3), 10 * i, dtype=np.uint8) for i in range(18)]
    write_video(path, frames, fps=4)
    return path


def test_each_window_is_answered_and_only_changes_are_spoken(
    tiny_smolvlm_dir, long_clip, monkeypatch
) -> None:
    predictor = Predictor.load(ModelCard.read(tiny_smolvlm_dir))
    answers = iter(
        [
            HEADER + "no important close objects visible.",
            HEADER + "no important close objects visible.",  # the same cue again: not spoken
            HEADER + "a person close on the center.",
            HEADER + "a person close on the center, approaching.",  # now it approaches
        ]
    )
    seen = []

    def scripted(examples, decoding, **_):
        seen.append((examples[0].clip, decoding.grammar))
        return [next(answers)]

    monkeypatch.setattr(predictor, "generate_batch", scripted)
    notes: list[str] = []
    described = list(
        describe_images([long_clip], predictor, window_s=1.0, clip_frames=3, notes=notes.append)
    )
    assert [d.window for d in described] == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0), (3.0, 4.0)]
    assert [(d.spoken, d.decision.reason) for d in described] == [
        (True, "first"),
        (False, "unchanged"),
        (True, "action changed"),
        (True, "approaching"),
    ]
    assert described[3].cue.text == "Person approaching ahead: step to the left."
    assert described[3].to_dict()["window"] == [3.0, 4.0]
    assert "walk.webm [3.0-4.0 s]" in described[3].to_text()
    assert "1 person (center), approaching" in described[3].to_text()
    assert notes == [
        f"{long_clip}: the last 0.5 s (2 frames) make no full window of 3 frames and are not "
        "described"
    ]
    clips = [clip for clip, _ in seen]
    assert [len(c.frames) for c in clips] == [3, 3, 3, 3] and clips[1].indices == (0, 2, 3)
    assert all(grammar.motion for _, grammar in seen)  # motion words allowed for clips


def test_describe_cli_on_a_clip_and_a_folder_of_frames(
    run_cli, tiny_smolvlm_dir, long_clip, tmp_path
) -> None:
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(6):
        Image.new("RGB", (40, 40), (40 * index, 90, 30)).save(folder / f"{index:03d}.png")
    out_wav = tmp_path / "cues.wav"
    speak = ["--wav", out_wav] if espeak_path() is not None else []
    result = run_cli(
        "describe", long_clip, folder, "--model", tiny_smolvlm_dir, "--json",
        "--window-seconds", "1.5", "--clip-frames", "3", "--fps", "2", "--max-new-tokens", "60",
        *speak, env=ONE_THREAD,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    windows = [(line["image"], line["window"]) for line in lines]
    assert windows == [
        (str(long_clip), [0.0, 1.5]),
        (str(long_clip), [1.5, 3.0]),
        (str(long_clip), [3.0, 4.5]),
        (str(folder), [0.0, 1.5]),
        (str(folder), [1.5, 3.0]),
    ]
    assert all(line["cue"]["text"] and isinstance(line["spoken"], bool) for line in lines)
    assert lines[0]["spoken"] and lines[3]["spoken"]  # each clip's first cue
    if speak:
        assert out_wav.stat().st_size > 1000


def test_a_clip_too_short_for_one_window_is_one_line(run_cli, tiny_smolvlm_dir, tmp_path) -> None:
    short = tmp_path / "short.webm"
    write_video(short, [np.zeros((32, 32, 3), np.uint8)] * 2, fps=4)
    result = run_cli(
        "describe", short, "--model", tiny_smolvlm_dir, "--clip-frames", "3", env=ONE_THREAD
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {short}: video has 2 frames, fewer than the 3 asked (clip frames); frames are "
        "never repeated or made up: use a longer clip or fewer frames"
    ]
