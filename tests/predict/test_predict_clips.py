"""`predict` on clip rows (a `video` or `frames`): the output line names the clip, batched answers
equal one-by-one answers byte for byte, and a clip that cannot be used (undecodable, too short, a
missing frame) is one line and exit code 2, or skipped and counted with --on-bad-image skip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from roadscene.data.clips import ClipSettings
from roadscene.predict import ModelCard, Predictor, PredictSettings, predict_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def clip_rows(tiny_clips_dir: Path, tmp_path_factory) -> Path:
    """The tiny clips' rows (every split: 6 videos) and a frames row of 3 images."""
    from PIL import Image

    root = tmp_path_factory.mktemp("clip_rows")
    rows = []
    for split in ("train", "test"):
        for line in (tiny_clips_dir / f"bvpi_sft_{split}.jsonl").read_text().splitlines():
            row = json.loads(line)
            row["video"] = str(tiny_clips_dir / row["video"])
            rows.append(row)
    for index, colour in enumerate([(200, 0, 0), (0, 200, 0), (0, 0, 200)]):
        Image.new("RGB", (48, 48), colour).save(root / f"f{index}.png")
    rows.append({"frames": [f"f{i}.png" for i in range(3)], "fps": 2, "prompt": rows[0]["prompt"]})
    data = root / "clips.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return data


def test_batched_clip_prediction_equals_one_by_one(tiny_smolvlm_dir, clip_rows, tmp_path) -> None:
    predictor = Predictor.load(ModelCard.read(tiny_smolvlm_dir))
    settings = dict(max_new_tokens=40, clip=ClipSettings(frames=3))
    batched, single = tmp_path / "batched.jsonl", tmp_path / "single.jsonl"
    predict_file(clip_rows, batched, predictor, PredictSettings(batch_size=4, **settings),
                 progress=False)  # fmt: skip
    predict_file(clip_rows, single, predictor, PredictSettings(batch_size=1, **settings),
                 progress=False)  # fmt: skip
    assert batched.read_bytes() == single.read_bytes()
    lines = [json.loads(line) for line in batched.read_text().splitlines()]
    assert len(lines) == 7
    assert all(line["image"] == line["video"] for line in lines[:6])
    assert lines[6]["frames"] == ["f0.png", "f1.png", "f2.png"] and lines[6]["image"] == "f0.png"
    assert all(line["parsed"]["complete"] and "cue" in line for line in lines)


def test_bad_clips_stop_with_one_line_or_are_skipped(
    tiny_smolvlm_dir, tiny_clips_dir, tmp_path, cli_in_process
) -> None:
    from PIL import Image

    from roadscene.data.clips import write_video

    write_video(tmp_path / "short.webm", [_grey(), _grey()], fps=2)
    for name in ("a.png", "b.png"):
        Image.fromarray(_grey()).save(tmp_path / name)
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really")
    good = sorted((tiny_clips_dir / "clips").iterdir())[0]
    rows = {
        "short": {"video": "short.webm"},
        "broken": {"video": "broken.mp4"},
        "missing frame": {"frames": ["a.png", "gone.png", "b.png"]},
    }
    messages = {
        "short": "has 2 frames, fewer than the 3 asked",
        "broken": "undecodable video",
        "missing frame": "gone.png: image not found",
    }
    for name, bad in rows.items():
        data = tmp_path / f"{name}.jsonl"
        data.write_text(json.dumps({"video": str(good)}) + "\n" + json.dumps(bad) + "\n")
        out = tmp_path / f"{name}.out.jsonl"
        code, _, err = cli_in_process(
            "predict", "--model", tiny_smolvlm_dir, "--data", data, "--out", out,
            "--clip-frames", "3", "--max-new-tokens", "8",
        )  # fmt: skip
        assert code == 2, err
        assert len(err.strip().splitlines()) == 1 and messages[name] in err, err
        assert not out.exists()  # nothing half-written
        code, stdout, err = cli_in_process(
            "predict", "--model", tiny_smolvlm_dir, "--data", data, "--out", out,
            "--clip-frames", "3", "--max-new-tokens", "8", "--on-bad-image", "skip",
        )  # fmt: skip
        assert code == 0, err
        assert "skipped 1 rows" in stdout and messages[name] in stdout
        assert len(out.read_text().splitlines()) == 1


def _grey():
    import numpy as np

    return np.full((32, 32, 3), 90, dtype=np.uint8)
