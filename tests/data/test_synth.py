"""Synthetic scenes: the renderer shows what the annotation says, deterministically; the sampler
matches SENSATION; `roadscene data synth` writes the files `data build` writes."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from roadscene.data.synth import (
    OBJECT_STYLES,
    RenderOptions,
    SceneDistribution,
    annotations_csv_text,
    image_seed,
    render_scene,
    sample_scenes,
    scene_caption,
    write_synth_dataset,
)
from roadscene.schema import OBJECT_CLASSES, POSITIONS, SceneAnnotation, read_annotations_csv
from roadscene.targets import parse_response

PLAIN = RenderOptions(weather=False, jitter=False)


def _features(images: list[np.ndarray]) -> np.ndarray:
    """12x12 block means of each channel, plus a bias column: a deliberately trivial feature."""
    stack = np.stack(images).astype(np.float32) / 255.0  # (N, 96, 96, 3)
    n, size = stack.shape[0], stack.shape[1]
    blocks = stack.reshape(n, 12, size // 12, 12, size // 12, 3).mean(axis=(2, 4))
    flat = blocks.reshape(n, -1)
    return np.hstack([flat, np.ones((n, 1), dtype=np.float32)])


def _ridge_classifier_accuracy(
    train_x: np.ndarray, train_y: list[str], test_x: np.ndarray, test_y: list[str]
) -> float:
    """One-vs-rest least squares (closed form), the simplest linear pixel classifier."""
    labels = sorted(set(train_y))
    targets = np.array([[1.0 if y == label else 0.0 for label in labels] for y in train_y])
    gram = train_x.T @ train_x + 1e-2 * np.eye(train_x.shape[1])
    weights = np.linalg.solve(gram, train_x.T @ targets)
    predicted = [labels[i] for i in (test_x @ weights).argmax(axis=1)]
    return float(np.mean([p == t for p, t in zip(predicted, test_y, strict=True)]))


def test_same_seed_same_image_and_different_seed_differs() -> None:
    scene = next(sample_scenes(SceneDistribution.builtin(), 1, seed=5))
    first = render_scene(scene, image_seed(5, 0))
    assert first.shape == (96, 96, 3) and first.dtype == np.uint8
    assert np.array_equal(first, render_scene(scene, image_seed(5, 0)))
    assert not np.array_equal(first, render_scene(scene, image_seed(6, 0)))
    big = render_scene(scene, 1, RenderOptions(size=160))
    assert big.shape == (160, 160, 3)


def test_sampling_is_deterministic_per_index() -> None:
    dist = SceneDistribution.builtin()
    long = list(sample_scenes(dist, 50, seed=3))
    short = list(sample_scenes(dist, 20, seed=3))
    assert long[:20] == short
    assert long != list(sample_scenes(dist, 50, seed=4))


def test_linear_pixel_classifier_recovers_sidewalk_and_road() -> None:
    """With weather, jitter and objects on, a linear classifier on 12x12 block colours finds
    the sidewalk and road positions of held-out images at >= 0.99 accuracy."""
    dist = SceneDistribution.builtin().with_object_rate(0.6)
    scenes = list(sample_scenes(dist, 1500, seed=11))
    images = [render_scene(s, image_seed(11, i)) for i, s in enumerate(scenes)]
    features = _features(images)
    train, test = slice(0, 1100), slice(1100, 1500)
    for field in ("sidewalk", "road"):
        labels = [getattr(s, field) for s in scenes]
        accuracy = _ridge_classifier_accuracy(
            features[train], labels[train], features[test], labels[test]
        )
        assert accuracy >= 0.99, (field, accuracy)
    # every value of both fields occurs in the test part, so the check covers them all
    assert {s.sidewalk for s in scenes[test]} == {"left", "center", "right", "unknown"}
    assert {s.road for s in scenes[test]} == {"left", "right", "front", "unknown"}


def _object_scene(cls: str, positions: list[str], *, far: bool = False) -> SceneAnnotation:
    objects = {cls: positions}
    return SceneAnnotation.build(
        "x.png", "center", "unknown", near=None if far else objects, far=objects if far else None
    )


def _changed(scene: SceneAnnotation) -> np.ndarray:
    empty = render_scene(SceneAnnotation.build("x.png", "center", "unknown"), 0, PLAIN)
    return np.abs(render_scene(scene, 0, PLAIN).astype(int) - empty.astype(int)).sum(axis=2) > 0


@pytest.mark.parametrize("cls", OBJECT_CLASSES)
def test_each_object_is_drawn_in_its_column_in_its_colour(cls: str) -> None:
    size = 96
    for index, position in enumerate(POSITIONS):
        image = render_scene(_object_scene(cls, [position]), 0, PLAIN)
        colour = np.array(OBJECT_STYLES[cls].colour)
        coloured = (np.abs(image.astype(int) - colour).sum(axis=2) < 10).nonzero()
        assert len(coloured[0]) >= 20, (cls, position)
        columns = coloured[1] // (size // 3)
        assert set(columns.tolist()) == {index}, (cls, position)
        near_rows = coloured[0]
        far_image = render_scene(_object_scene(cls, [position], far=True), 0, PLAIN)
        far_rows = (np.abs(far_image.astype(int) - colour).sum(axis=2) < 10).nonzero()[0]
        # near: low and large; far: high and small
        assert far_rows.max() < near_rows.min()
        assert len(far_rows) < len(near_rows) / 3


def test_object_images_are_pairwise_distinct() -> None:
    """18 single-object scenes (6 classes x 3 positions): no two draw the same pixels, and the
    classes differ in shape, not only in colour (the changed-pixel masks differ at one place)."""
    masks = {(c, p): _changed(_object_scene(c, [p])) for c in OBJECT_CLASSES for p in POSITIONS}
    for (key_a, mask_a), (key_b, mask_b) in combinations(masks.items(), 2):
        assert (mask_a != mask_b).sum() >= 20, (key_a, key_b)


def test_counts_are_visible() -> None:
    for cls in OBJECT_CLASSES:
        one = render_scene(_object_scene(cls, ["right"]), 0, PLAIN)
        two = render_scene(_object_scene(cls, ["right", "right"]), 0, PLAIN)
        colour = np.array(OBJECT_STYLES[cls].colour)
        # two objects side by side: the coloured columns form two separate runs
        for image, runs in ((one, 1), (two, 2)):
            cols = (np.abs(image.astype(int) - colour).sum(axis=2) < 10).any(axis=0)
            starts = int(np.sum(cols[1:] & ~cols[:-1]) + cols[0])
            assert starts == runs, (cls, runs)


def test_builtin_distribution_is_fitted_to_sensation(sensation_dir) -> None:
    fitted = SceneDistribution.from_annotations(sensation_dir / "annotations.csv")
    builtin = SceneDistribution.builtin()
    assert fitted.layout.keys() == builtin.layout.keys()
    for key, value in builtin.layout.items():
        assert fitted.layout[key] == pytest.approx(value, abs=1e-9)
    for side in ("near", "far"):
        for cls in OBJECT_CLASSES:
            a, b = getattr(fitted, side)[cls], getattr(builtin, side)[cls]
            assert a.count == pytest.approx(b.count, abs=1e-9)
            assert a.position == pytest.approx(b.position, abs=1e-3)


def test_sampled_frequencies_follow_the_distribution() -> None:
    scenes = list(sample_scenes(SceneDistribution.builtin(), 4000, seed=0))
    center = np.mean([s.sidewalk == "center" for s in scenes])
    assert center == pytest.approx(1996 / 3234, abs=0.03)  # README: Center 1996 of 3,234
    with_objects = np.mean([any(s.near[c] for c in OBJECT_CLASSES) for s in scenes])
    boosted = SceneDistribution.builtin().with_object_rate(0.8)
    boosted_rate = np.mean(
        [any(s.near[c] for c in OBJECT_CLASSES) for s in sample_scenes(boosted, 4000, seed=0)]
    )
    assert with_objects == pytest.approx(1 - 1820 / 3234, abs=0.04)
    assert boosted_rate == pytest.approx(0.8, abs=0.03)


def test_like_fits_a_small_annotation_file(tmp_path) -> None:
    scenes = [
        SceneAnnotation.build(f"a{i}.jpg", "left", "right", near={"car": ["left", "left"]})
        for i in range(3)
    ]
    path = tmp_path / "annotations.csv"
    path.write_text(annotations_csv_text(scenes), encoding="utf-8")
    dist = SceneDistribution.from_annotations(path)
    for scene in sample_scenes(dist, 30, seed=1):
        assert (scene.sidewalk, scene.road) == ("left", "right")
        assert scene.near["car"] == ["left", "left"]
        assert scene.near["person"] == [] and scene.far["car"] == []


def test_annotation_csv_round_trips(tmp_path) -> None:
    scenes = list(sample_scenes(SceneDistribution.builtin().with_object_rate(0.9), 200, seed=2))
    path = tmp_path / "annotations.csv"
    path.write_text(annotations_csv_text(scenes), encoding="utf-8")
    table = read_annotations_csv(path)
    assert table.issues == []
    assert [table.scenes[s.image] for s in scenes] == scenes


def test_caption_mentions_the_layout() -> None:
    scene = SceneAnnotation.build("x.png", "left", "front", near={"person": ["left"]})
    caption = scene_caption(scene)
    assert "left side" in caption and "crossing" in caption and "on the way" in caption


def test_write_synth_dataset_files_agree(tmp_path) -> None:
    out = tmp_path / "synth"
    result = write_synth_dataset(out, 40, seed=4, val_fraction=0.25, test_fraction=0.25)
    assert result.counts == {"train": 20, "val": 10, "test": 10}
    table = read_annotations_csv(out / "annotations.csv")
    assert len(table.scenes) == 40 and table.issues == []
    for split, count in result.counts.items():
        lines = (out / f"bvpi_sft_{split}.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(lines) == count
        captions = json.loads((out / f"captions_{split}.json").read_text(encoding="utf-8"))
        assert len(captions) == count
        for line, caption in zip(lines, captions, strict=True):
            record = json.loads(line)
            assert list(record) == [
                "image",
                "prompt",
                "response",
                "sidewalk_pos",
                "road_pos",
                "road_vs_sidewalk",
            ]
            assert (out / record["image"]).is_file() and record["image"] == caption["image"]
            scene = table.scenes[record["image"].rsplit("/", 1)[-1]]
            parsed = parse_response(record["response"])
            assert (parsed.sidewalk, parsed.road) == (scene.sidewalk, scene.road)
            assert record["response"].endswith(f"Context: {caption['caption']}")
            assert {c: m.count for c, m in parsed.near.items()} == {
                c: len(p) for c, p in scene.near.items() if p
            }
    # same seed, same bytes
    again = write_synth_dataset(
        tmp_path / "again", 40, seed=4, val_fraction=0.25, test_fraction=0.25
    )
    for name in ("annotations.csv", "bvpi_sft_train.jsonl", "images/synth_000007.png"):
        assert (out / name).read_bytes() == (again.out_dir / name).read_bytes()


def test_data_synth_cli(tmp_path, run_cli, sensation_dir) -> None:
    out = tmp_path / "cli"
    result = run_cli(
        "data", "synth", "--n", "30", "--out", out, "--seed", "1",
        "--like", sensation_dir / "annotations.csv", "--no-context", "--conditions", "clean,fog",
        check=True,
    )  # fmt: skip
    assert "wrote 30 synthetic scenes" in result.stdout
    assert "bvpi_sft_test_fog.jsonl" in result.stdout
    assert (out / "conditions" / "fog").is_dir() and not (out / "conditions" / "clean").exists()
    report = json.loads((out / "synth_report.json").read_text())
    assert report["splits"] == {"train": 24, "val": 3, "test": 3}
    assert "annotations.csv" in report["distribution"]
    record = json.loads((out / "bvpi_sft_train.jsonl").read_text().splitlines()[0])
    assert "Context:" not in record["response"]
    assert len(list((out / "images").glob("*.png"))) == 30


def test_data_synth_cli_bad_input(tmp_path, run_cli) -> None:
    missing = run_cli(
        "data", "synth", "--n", "5", "--out", tmp_path / "x", "--like", tmp_path / "no.csv"
    )
    assert missing.returncode == 2 and "no.csv" in missing.stderr and "not found" in missing.stderr
    assert not (tmp_path / "x").exists()
    bad = run_cli("data", "synth", "--n", "5", "--out", tmp_path / "y", "--test-fraction", "1.5")
    assert bad.returncode == 2 and "fraction" in bad.stderr
    assert not (tmp_path / "y").exists()
    snow = run_cli(
        "data", "synth", "--n", "5", "--out", tmp_path / "z", "--conditions", "rain,snow"
    )
    assert snow.returncode == 2 and "unknown condition 'snow'; allowed: clean, rain" in snow.stderr
    assert not (tmp_path / "z").exists()


def test_conditions_render_the_same_test_scenes(tmp_path) -> None:
    from roadscene.data.synth.conditions import CONDITIONS

    result = write_synth_dataset(tmp_path / "d", 20, seed=2, conditions=CONDITIONS)
    out = result.out_dir
    test = [json.loads(line) for line in (out / "bvpi_sft_test.jsonl").read_text().splitlines()]
    clean_pixels = [np.asarray(Image.open(out / row["image"])) for row in test]
    for condition in CONDITIONS:
        rows = [
            json.loads(line)
            for line in (out / f"bvpi_sft_test_{condition}.jsonl").read_text().splitlines()
        ]
        # the same scenes and answers, under the condition; the truth joins by base name
        assert [r["response"] for r in rows] == [r["response"] for r in test]
        assert [Path(r["image"]).name for r in rows] == [Path(r["image"]).name for r in test]
        assert {r["condition"] for r in rows} == {condition}
        pixels = [np.asarray(Image.open(out / r["image"])) for r in rows]
        differs = [not np.array_equal(a, b) for a, b in zip(pixels, clean_pixels, strict=True)]
        assert all(differs) if condition != "clean" else not any(differs), condition
    assert result.report["conditions"]["night"] == "bvpi_sft_test_night.jsonl"
    # the train images are untouched by the conditions (same bytes as a dataset without them)
    plain = write_synth_dataset(tmp_path / "p", 20, seed=2)
    assert (out / "images" / "synth_000003.png").read_bytes() == (
        plain.out_dir / "images" / "synth_000003.png"
    ).read_bytes()
    night = np.asarray(Image.open(out / "conditions" / "night" / Path(test[0]["image"]).name))
    assert night.mean() < 0.5 * clean_pixels[0].mean()  # night is dark
