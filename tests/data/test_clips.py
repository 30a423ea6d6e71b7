"""Clip rows: a `video` (decoded with PyAV) or a list of `frames`, sampled evenly to N frames with
their timestamps; never padded or made up; missing, undecodable or short clips are one clear
error (or skipped and counted)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from roadscene.data.clips import (
    ClipSettings,
    open_frames_clip,
    open_video_clip,
    sample_indices,
    write_video,
)
from roadscene.data.examples import RecordExamples
from roadscene.data.images import check_images
from roadscene.data.records import load_records
from roadscene.data.windows import (
    frames_window_plan,
    plan_windows,
    video_window_plan,
    video_windows,
)
from roadscene.errors import InputError


def _frames(count: int, size: int = 32) -> list[np.ndarray]:
    """Frame i is a flat grey of level 12 * i (easy to recognise after decoding)."""
    return [np.full((size, size, 3), 12 * i, dtype=np.uint8) for i in range(count)]


def _level(image: Image.Image) -> int:
    return round(float(np.asarray(image, dtype=np.float32).mean()) / 12)


def _mp4(path: Path, frames: list[np.ndarray], fps: int) -> Path:
    """An MP4 with FFmpeg's own MPEG-4 part 2 encoder (MP4 headers state the frame count)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        stream.codec_context.qscale = 2
        for pixels in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def test_sample_indices_are_even_from_first_to_last_frame() -> None:
    assert sample_indices(16, 4) == [0, 5, 10, 15]
    assert sample_indices(8, 8) == list(range(8))
    assert sample_indices(10, 1) == [9]  # one frame: the latest
    with pytest.raises(ValueError):
        sample_indices(3, 4)  # never repeated


@pytest.mark.parametrize("suffix", [".webm", ".mp4"])
def test_a_video_gives_n_frames_with_their_timing(tmp_path, suffix) -> None:
    path = tmp_path / f"clip{suffix}"
    if suffix == ".webm":  # WebM headers say 0 frames: the frames are counted by decoding
        write_video(path, _frames(16), fps=8)
    else:
        _mp4(path, _frames(16), fps=8)
    clip = open_video_clip(path, 4)
    assert clip.indices == (0, 5, 10, 15)
    assert clip.timestamps == pytest.approx((0.0, 0.625, 1.25, 1.875))
    assert (clip.fps, clip.total_frames, clip.duration) == (8.0, 16, 2.0)
    assert [_level(frame) for frame in clip.frames] == [0, 5, 10, 15]
    assert clip.metadata() == {
        "total_num_frames": 16,
        "fps": 8.0,
        "duration": 2.0,
        "frames_indices": [0, 5, 10, 15],
    }
    last = clip.last_only()
    assert (last.indices, _level(last.frames[0])) == ((15,), 15)


def test_bad_videos_are_one_clear_error(tmp_path) -> None:
    short = tmp_path / "short.webm"
    write_video(short, _frames(3), fps=8)
    with pytest.raises(InputError, match=r"has 3 frames, fewer than the 4 asked.*never repeated"):
        open_video_clip(short, 4, source=Path("d.jsonl"), line=7)
    with pytest.raises(InputError, match=r"row d\.jsonl:7"):
        open_video_clip(short, 4, source=Path("d.jsonl"), line=7)
    text = tmp_path / "notes.webm"
    text.write_text("not a video\n")
    with pytest.raises(InputError, match="undecodable video"):
        open_video_clip(text, 4)
    with pytest.raises(InputError, match="video not found"):
        open_video_clip(tmp_path / "missing.mp4", 4)
    with pytest.raises(InputError, match="is a folder"):
        open_video_clip(tmp_path, 4)


def test_a_frame_list_is_sampled_and_a_missing_frame_named(tmp_path) -> None:
    paths = []
    for index, pixels in enumerate(_frames(6)):
        paths.append(tmp_path / f"f{index}.png")
        Image.fromarray(pixels).save(paths[-1])
    clip = open_frames_clip(paths, 3, fps=2.0)
    assert clip.indices == (0, 2, 5) and clip.timestamps == (0.0, 1.0, 2.5)
    assert [_level(frame) for frame in clip.frames] == [0, 2, 5]
    with pytest.raises(InputError, match="fewer than the 7 asked"):
        open_frames_clip(paths, 7)
    paths[5].unlink()
    with pytest.raises(InputError, match=r"f5\.png.*image not found"):
        open_frames_clip(paths, 3)


def _rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_rows_name_a_video_or_frames_and_bad_clips_are_skipped_and_counted(tmp_path) -> None:
    write_video(tmp_path / "good.webm", _frames(8), fps=4)
    write_video(tmp_path / "short.webm", _frames(2), fps=4)
    (tmp_path / "broken.webm").write_bytes(b"\x1aE\xdf\xa3 garbage")
    for index, pixels in enumerate(_frames(4)):
        Image.fromarray(pixels).save(tmp_path / f"f{index}.png")
    answer = {"response": "Sidewalk: left. Road: right. RoadVsSidewalk: right_of. Nearby: none."}
    data = _rows(
        tmp_path / "rows.jsonl",
        [
            {"video": "good.webm", **answer},
            {"frames": [f"f{i}.png" for i in range(4)], "fps": 2, **answer},
            {"video": "short.webm", **answer},
            {"video": "broken.webm", **answer},
            {"frames": ["f0.png", "nope.png", "f2.png"], **answer},
            {"image": "f0.png", **answer},
        ],
    )
    records = load_records("bvpi", data, tmp_path, clip=ClipSettings(frames=3))
    assert [r.clip.kind if r.clip else "image" for r in records] == [
        "video", "frames", "video", "video", "frames", "image",
    ]  # fmt: skip
    assert records[0].reference() == {"image": "good.webm", "video": "good.webm"}
    assert records[1].reference()["frames"] == ["f0.png", "f1.png", "f2.png", "f3.png"]
    assert records[1].image == "f0.png"
    kept, bad = check_images(records, "skip")
    assert [r.line for r in kept] == [1, 2, 6]
    reasons = {line: reason for _, line, _, reason in bad.rows}
    assert "fewer than the 3 asked" in reasons[3]
    assert "undecodable video" in reasons[4]
    assert "image not found" in reasons[5]
    with pytest.raises(InputError, match="fewer than the 3 asked"):
        check_images(records, "error")
    examples = RecordExamples(kept)
    video, frames, image = examples[0], examples[1], examples[2]
    assert video.clip is not None and len(video.clip.frames) == 3 and video.images == []
    assert frames.clip.timestamps == (0.0, 1.0, 1.5) and frames.clip.fps == 2.0
    assert image.clip is None and len(image.images) == 1


def test_a_row_with_an_image_and_a_clip_is_an_error(tmp_path) -> None:
    data = _rows(tmp_path / "rows.jsonl", [{"image": "a.png", "video": "b.webm", "response": "x"}])
    with pytest.raises(InputError, match=r"rows\.jsonl:1.*one of image, video or frames"):
        load_records("bvpi", data, tmp_path)
    data = _rows(tmp_path / "rows.jsonl", [{"frames": "a.png", "response": "x"}])
    with pytest.raises(InputError, match="'frames' must be a non-empty list"):
        load_records("bvpi", data, tmp_path)
    data = _rows(tmp_path / "rows.jsonl", [{"frames": ["a.png"], "fps": -1, "response": "x"}])
    with pytest.raises(InputError, match="'fps' must be a positive number"):
        load_records("bvpi", data, tmp_path)


def test_seen_last_keeps_only_the_last_sampled_frame(tmp_path) -> None:
    write_video(tmp_path / "c.webm", _frames(8), fps=4)
    data = _rows(tmp_path / "rows.jsonl", [{"video": "c.webm", "response": "x"}])
    [record] = load_records("bvpi", data, tmp_path, clip=ClipSettings(frames=4, seen="last"))
    clip = RecordExamples([record])[0].clip
    assert clip.indices == (7,) and _level(clip.frames[0]) == 7 and clip.total_frames == 8


def test_windows_along_a_longer_clip(tmp_path) -> None:
    plan = plan_windows([i / 4 for i in range(10)], 4.0, 3, 1.0)  # 2.5 s at 4 fps, 1 s windows
    assert [(w.start, w.picks) for w in plan.windows] == [(0.0, (0, 2, 3)), (1.0, (4, 6, 7))]
    assert (plan.skipped_frames, plan.skipped_seconds) == (2, 0.5)  # the last 0.5 s
    path = tmp_path / "long.webm"
    write_video(path, _frames(20), fps=4)  # 5 s: two windows of 2 s and a last one of 1 s
    windows = list(video_windows(path, video_window_plan(path, 4, 2.0)))
    assert [(w.start, w.end) for w in windows] == [(0.0, 2.0), (2.0, 4.0), (4.0, 5.0)]
    second = windows[1].clip
    assert [_level(f) for f in second.frames] == [8, 10, 13, 15]
    assert second.indices == (0, 2, 5, 7) and second.timestamps[0] == 0.0  # timed in the window
    with pytest.raises(InputError, match="use a longer --window-seconds or give --fps"):
        frames_window_plan([tmp_path / f"{i}.png" for i in range(8)], 4, 2.0, 1.0)
