"""Synthetic clips: the last frame is the still image, each motion moves its object the way its
word says, the training stream times its frames like a written clip, and the files of
`data synth --clips` carry the motion truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from roadscene.data.clips import ClipSettings, open_video_clip
from roadscene.data.synth import (
    CLIP_MOTIONS,
    ClipOptions,
    RenderedClips,
    SceneDistribution,
    render_clip,
    render_scene,
    sample_motion,
)
from roadscene.data.synth.render import OBJECT_STYLES
from roadscene.schema import MOVING_CLASSES, SceneAnnotation, read_annotations_csv


def _person(motion: str | None) -> SceneAnnotation:
    return SceneAnnotation.build(
        "c.webm",
        "center",
        "unknown",
        near={"person": ["center"]},
        motion={"person": motion} if motion else {},
    )


def _person_box(pixels: np.ndarray) -> tuple[int, float, float]:
    """(pixel count, mean column, mean row) of the person's purple."""
    colour = np.array(OBJECT_STYLES["person"].colour, dtype=np.int16)
    mask = np.abs(pixels.astype(np.int16) - colour).sum(axis=-1) < 60
    rows, cols = np.nonzero(mask)
    if not mask.any():  # out of view
        return 0, float("nan"), float("nan")
    return int(mask.sum()), float(cols.mean()), float(rows.mean())


def test_the_last_frame_is_the_still_image_and_motions_move_the_object() -> None:
    still = render_scene(_person(None), [0, 1], None)
    first, middle = {}, {}
    for motion in CLIP_MOTIONS:
        frames = render_clip(_person(motion), [0, 1], None, ClipOptions(frames=8))
        assert len(frames) == 8
        assert np.array_equal(frames[-1], still), motion  # the end of every clip is the same
        first[motion], middle[motion] = _person_box(frames[0]), _person_box(frames[3])
    end = _person_box(still)
    assert first["approaching"][0] < 0.5 * end[0]  # far down the path: small
    assert first["approaching"][2] < end[2] - 5  # ... and higher in the image
    assert first["moving away"][0] > 2 * end[0]  # right in front: large, and in view
    assert abs(first["moving away"][2] - end[2]) < 5
    # from one side, at walking pace: out of view at first, then in view beside its place
    assert first["crossing"][0] == 0
    assert middle["crossing"][0] > 0.6 * end[0] and abs(middle["crossing"][1] - end[1]) > 20
    assert 0.6 * end[0] < first["standing still"][0] < end[0]  # the walker closes in a little
    assert abs(first["standing still"][1] - end[1]) < 3
    # a clip whose motion names no word for the person: it stands still
    unnamed = render_clip(_person(None), [0, 1], None, ClipOptions(frames=8))
    assert _person_box(unnamed[0]) == first["standing still"]


def test_motions_are_drawn_uniformly_for_close_moving_classes_only() -> None:
    scene = SceneAnnotation.build(
        "c.webm", "left", "right", near={"person": ["left"], "obstacle": ["right"]},
        far={"car": ["left"]},
    )  # fmt: skip
    rng = np.random.default_rng(0)
    drawn = [(sample_motion(scene, rng).motion or {}).get("person") for _ in range(2000)]
    shares = {m: drawn.count(m) / len(drawn) for m in CLIP_MOTIONS}
    assert all(0.21 < share < 0.29 for share in shares.values()), shares
    moved = sample_motion(scene, np.random.default_rng(1))
    assert set(moved.motion or {}) <= {"person"}  # the obstacle and the far car never move


def test_rendered_clips_are_timed_like_a_written_clip(tmp_path) -> None:
    from roadscene.data.clips import write_video
    from roadscene.schema import MOVING_CLASSES as moving

    distribution = SceneDistribution.builtin().with_object_rate(0.9, moving)
    stream = RenderedClips(
        distribution, length=3, prompt="p", seed=5, settings=ClipSettings(frames=4)
    )
    example = stream[2]
    scene = stream.scene(2)
    assert example.answer is not None and example.clip is not None
    frames = render_clip(scene, [5, 7, 2, 2], None, ClipOptions())
    write_video(tmp_path / "c.webm", frames, fps=8)
    decoded = open_video_clip(tmp_path / "c.webm", 4)
    assert example.clip.metadata() == decoded.metadata()
    assert example.clip.timestamps == pytest.approx(decoded.timestamps)
    for rendered, read in zip(example.clip.frames, decoded.frames, strict=True):
        difference = np.abs(np.asarray(rendered, np.int16) - np.asarray(read, np.int16)).mean()
        assert difference < 4  # the codec's loss only
    last = RenderedClips(
        distribution, length=3, prompt="p", seed=5, settings=ClipSettings(frames=4, seen="last")
    )[2]
    assert last.clip.indices == (15,) and last.answer == example.answer
    assert np.array_equal(np.asarray(last.clip.frames[0]), np.asarray(example.clip.frames[-1]))


def test_data_synth_clips_writes_clips_with_their_motion(tmp_path, run_cli) -> None:
    out = tmp_path / "synth"
    result = run_cli(
        "data", "synth", "--out", out, "--n", "6", "--clips", "--clip-frames", "6", "--fps", "3",
        "--moving-rate", "0.9", "--size", "48", "--seed", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "clips of 6 frames at 3 fps" in result.stdout
    rows = [json.loads(line) for split in ("train", "val", "test")
            for line in (out / f"bvpi_sft_{split}.jsonl").read_text().splitlines()]  # fmt: skip
    assert len(rows) == 6 and all(list(row)[0] == "video" for row in rows)
    table = read_annotations_csv(out / "annotations.csv")
    assert not table.issues
    for row in rows:
        name = row["video"].rsplit("/", 1)[1]
        scene = table.scenes[name]
        assert scene.motion == row["motion"]
        assert set(scene.motion) <= set(MOVING_CLASSES)
        for word in row["motion"].values():
            assert word in row["response"]
        clip = open_video_clip(out / row["video"], 6)
        assert (clip.total_frames, clip.fps) == (6, 3.0)
    report = json.loads((out / "synth_report.json").read_text())
    assert report["clips"] == {"frames": 6, "fps": 3} and sum(report["motions"].values()) > 0
    odd = run_cli("data", "synth", "--out", tmp_path / "odd", "--n", "2", "--clips", "--size", "33")
    assert odd.returncode == 2 and "even image size" in odd.stderr


def test_a_clip_is_augmented_with_one_draw_for_all_its_frames() -> None:
    pytest.importorskip("albumentations")
    from PIL import Image

    from roadscene.data.augment import TRANSFORMS, Augmenter, AugmentSection
    from roadscene.data.clips import Clip
    from roadscene.data.examples import VisionTextExample

    section = AugmentSection.model_validate(
        {"transforms": {t: {"p": 0.5, "strength": 0.7} for t in TRANSFORMS}, "hflip": 0.5}
    )
    augmenter = Augmenter(section, seed=0)
    frame = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 48, 3), np.uint8))
    clip = Clip((frame,) * 4, (0.0, 0.5, 1.0, 1.5), (0, 2, 4, 6), 4.0, 8)
    answer = (
        "Sidewalk: left. Road: right. RoadVsSidewalk: right_of. Nearby: a person close on the "
        "left, approaching."
    )
    example = VisionTextExample(images=[], clip=clip, prompt="p", answer=answer)
    flips = set()
    for index in range(8):
        out = augmenter(example, index, task="bvpi")
        pixels = [np.asarray(f) for f in out.clip.frames]
        assert all(np.array_equal(p, pixels[0]) for p in pixels)  # the same transform
        assert out.clip.indices == clip.indices and out.clip.fps == clip.fps
        flipped = out.meta["augment"]["hflip"]
        flips.add(flipped)
        assert out.answer.endswith("right, approaching." if flipped else "left, approaching.")
    assert flips == {True, False}
