"""Safety metrics: published (compat) figures reproduced exactly, strict invariants, robustness."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from roadscene.errors import InputError
from roadscene.metrics.safety import evaluate_safety
from roadscene.schema import SceneAnnotation

PRED_FILE = "predictions/smol_bvpi_test.jsonl"
RATE_KEYS = {"rate", "precision", "recall", "f1", "balanced_accuracy", "macro_f1"}


def _evaluate(sensation_dir: Path, predictions: Any, **kwargs: Any) -> dict[str, Any]:
    return evaluate_safety(
        predictions,
        captions_csv=sensation_dir / "captions.csv",
        annotations_csv=sensation_dir / "annotations.csv",
        **kwargs,
    ).report


def _lines(sensation_dir: Path, name: str = PRED_FILE) -> list[str]:
    return (sensation_dir / name).read_text(encoding="utf-8").splitlines()


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def published_report(sensation_dir: Path) -> dict[str, Any]:
    return _evaluate(sensation_dir, sensation_dir / PRED_FILE)


def test_compat_reproduces_the_published_figures_exactly(published_report: dict) -> None:
    compat = published_report["compat"]
    assert published_report["n"] == 333
    assert {k: v["count"] for k, v in compat["presence"].items()} == {
        "sidewalk_pos": 333,
        "road_pos": 333,
        "road_vs_sidewalk": 329,
    }
    assert {k: v["correct"] for k, v in compat["accuracy"].items()} == {
        "sidewalk_pos": 201,
        "road_pos": 178,
        "road_vs_sidewalk": 170,
    }
    expected = {  # truth present / tp / fn / fp, docs/evaluation.md
        "person": (42, 27, 15, 47),
        "car": (9, 5, 4, 166),
        "bicycle": (14, 9, 5, 39),
        "obstacle": (81, 74, 7, 219),
        "traffic_sign": (41, 24, 17, 72),
        "traffic_light": (10, 5, 5, 9),
    }
    got = {c: (b["gt_present"], b["tp"], b["fn"], b["fp"]) for c, b in compat["objects"].items()}
    assert got == expected


def test_compat_nearby_section_gives_the_published_object_table(sensation_dir: Path) -> None:
    report = _evaluate(sensation_dir, sensation_dir / PRED_FILE, mode="compat", section="nearby")
    published = {  # recall / precision, rounded to 2 decimals as published
        "person": (0.57, 0.42),
        "car": (0.44, 0.06),
        "bicycle": (0.57, 0.42),
        "obstacle": (0.73, 0.25),
        "traffic_sign": (0.39, 0.21),
        "traffic_light": (0.20, 1.00),
    }
    got = {
        c: (round(b["recall"], 2), round(b["precision"], 2))
        for c, b in report["compat"]["objects"].items()
    }
    assert got == published
    assert "strict" not in report


def _strict_rates(block: Any, path: str = "") -> list[tuple[str, float | None]]:
    found = []
    if isinstance(block, dict):
        for key, value in block.items():
            if key in RATE_KEYS and not isinstance(value, dict):
                found.append((f"{path}/{key}", value))
            else:
                found += _strict_rates(value, f"{path}/{key}")
    return found


def test_truth_as_prediction_scores_one_on_every_strict_rate(sensation_dir: Path) -> None:
    report = _evaluate(sensation_dir, sensation_dir / "reference" / "bvpi_sft_test.jsonl")
    strict = {k: v for k, v in report["strict"].items() if k != "baselines"}
    rates = [(path, value) for path, value in _strict_rates(strict) if value is not None]
    assert len(rates) > 100  # fields, labels, both object sides, micro/macro
    assert [(p, v) for p, v in rates if v != 1.0] == []
    # ... while the published definition penalises the truth (docs/evaluation.md: car ~0.07)
    assert report["compat"]["objects"]["car"]["precision"] == pytest.approx(9 / 121)


def test_constant_majority_answer_scores_the_majority_baseline(
    sensation_dir: Path, tmp_path: Path
) -> None:
    train = [json.loads(x) for x in _lines(sensation_dir, "reference/bvpi_sft_train.jsonl")]
    majority = {
        key: Counter(row[key] for row in train).most_common(1)[0][0]
        for key in ("sidewalk_pos", "road_pos", "road_vs_sidewalk")
    }
    text = (
        f"Sidewalk: {majority['sidewalk_pos']}. Road: {majority['road_pos']}. "
        f"RoadVsSidewalk: {majority['road_vs_sidewalk']}. "
        "Nearby: no important close objects visible."
    )
    images = [json.loads(x)["image"] for x in _lines(sensation_dir, PRED_FILE)]
    report = _evaluate(sensation_dir, [(image, text) for image in images], mode="strict")
    strict = report["strict"]
    for name, baseline in strict["baselines"]["fields"].items():
        assert baseline["label"] == majority[name]
        model = strict["fields"][name]
        assert model["accuracy"] == baseline["accuracy"]
        assert model["balanced_accuracy"] == baseline["balanced_accuracy"]
        assert model["macro_f1"] == baseline["macro_f1"]
    # the README's figure: always "center" scores 0.589 on sidewalk
    assert strict["fields"]["sidewalk_pos"]["accuracy"]["correct"] == 196
    assert strict["objects"]["near"]["micro"]["tp"] == 0


def test_missing_lines_count_as_wrong_and_are_reported(sensation_dir: Path, tmp_path: Path) -> None:
    lines = _lines(sensation_dir)
    removed = lines[::33][:10]
    kept = [line for line in lines if line not in removed]
    report = _evaluate(sensation_dir, _write(tmp_path / "p.jsonl", kept))
    assert report["missing"] == 10
    assert report["n"] == 333
    full = evaluate_safety(
        sensation_dir / PRED_FILE,
        captions_csv=sensation_dir / "captions.csv",
        annotations_csv=sensation_dir / "annotations.csv",
    )
    removed_images = {json.loads(line)["image"] for line in removed}
    removed_correct = sum(
        row["compat"]["field_correct"]["sidewalk"]
        for row in full.details
        if row["image"] in removed_images
    )
    compat = report["compat"]["accuracy"]["sidewalk_pos"]
    assert compat["total"] == 333
    assert compat["correct"] == 201 - removed_correct
    strict = report["strict"]["fields"]["sidewalk_pos"]
    assert (strict["accuracy"]["total"], strict["answered"]) == (333, 323)
    assert sum(row[-1] for row in strict["confusion"]["matrix"]) == 10  # the "none" column


def test_duplicates_are_an_error_naming_the_image_unless_a_policy_is_chosen(
    sensation_dir: Path, tmp_path: Path
) -> None:
    lines = _lines(sensation_dir)
    first = json.loads(lines[0])
    changed = json.dumps({**first, "response": "Sidewalk: left. Road: front."})
    path = _write(tmp_path / "dup.jsonl", [*lines, changed])
    with pytest.raises(InputError) as err:
        _evaluate(sensation_dir, path)
    assert first["image"] in str(err.value)
    assert err.value.line == 334
    kept_first = _evaluate(sensation_dir, path, on_duplicate="first")
    kept_last = _evaluate(sensation_dir, path, on_duplicate="last")
    assert kept_first["n"] == kept_last["n"] == 333
    assert kept_first["counts"]["duplicates"] == 1
    full = _evaluate(sensation_dir, sensation_dir / PRED_FILE)
    assert kept_first["compat"] == full["compat"]
    assert kept_last["compat"]["presence"]["road_vs_sidewalk"]["count"] == 328


def test_unknown_images_are_reported_and_ignored(sensation_dir: Path, tmp_path: Path) -> None:
    lines = _lines(sensation_dir)
    extra = json.dumps({"image": "training/images/not-in-test.jpg", "response": "Sidewalk: left."})
    report = _evaluate(sensation_dir, _write(tmp_path / "p.jsonl", [*lines, extra]))
    assert report["counts"]["unknown_images"] == 1
    assert report["counts"]["unknown_image_examples"] == ["training/images/not-in-test.jpg"]
    assert report["n"] == 333 and report["missing"] == 0


def test_empty_text_is_scored_as_no_answer(sensation_dir: Path, tmp_path: Path) -> None:
    lines = _lines(sensation_dir)
    lines[3] = json.dumps({**json.loads(lines[3]), "response": ""})
    report = _evaluate(sensation_dir, _write(tmp_path / "p.jsonl", lines))
    assert report["compat"]["presence"]["sidewalk_pos"]["count"] == 332
    assert report["strict"]["fields"]["sidewalk_pos"]["answered"] == 332
    assert report["missing"] == 0


def test_malformed_json_line_is_an_error_naming_the_line(
    sensation_dir: Path, tmp_path: Path
) -> None:
    lines = _lines(sensation_dir)
    lines[4] = lines[4][:-5]
    path = _write(tmp_path / "p.jsonl", lines)
    with pytest.raises(InputError) as err:
        _evaluate(sensation_dir, path)
    assert err.value.line == 5
    assert str(path) in str(err.value)


def test_in_memory_truth_scenes_and_records() -> None:
    truth = {
        "a.jpg": SceneAnnotation.build("a.jpg", "left", "right", near={"person": ["left"]}),
        "b.jpg": SceneAnnotation.build("b.jpg", "center", "front", far={"car": ["right", "right"]}),
    }
    predictions = [
        {
            "image": "imgs/a.jpg",
            "text": "Sidewalk: left. Road: right. RoadVsSidewalk: right_of. "
            "Nearby: a person close on the right.",
        },
        (
            "b.jpg",
            "Sidewalk: center. Road: left. RoadVsSidewalk: left_of. Nearby: no important "
            "close objects visible. Far: 2 cars farther away on the right.",
        ),
    ]
    result = evaluate_safety(predictions, truth, mode="strict")
    strict = result.report["strict"]
    assert "baselines" not in strict  # no train split given
    assert strict["fields"]["sidewalk_pos"]["accuracy"]["rate"] == 1.0
    assert strict["fields"]["road_pos"]["accuracy"]["correct"] == 1
    person = strict["objects"]["near"]["per_class"]["person"]
    assert (
        person["tp"],
        person["position_accuracy"]["rate"],
        person["count_accuracy"]["rate"],
    ) == (
        1,
        0.0,
        1.0,
    )
    car = strict["objects"]["far"]["per_class"]["car"]
    assert (car["tp"], car["position_accuracy"]["rate"], car["count_accuracy"]["rate"]) == (
        1,
        1.0,
        1.0,
    )
    assert strict["consistency"]["rate"] == 1.0
    assert [row["image"] for row in result.details] == ["imgs/a.jpg", "b.jpg"]


def test_strict_reads_sections_and_whole_words_where_compat_does_not() -> None:
    truth = {"a.jpg": SceneAnnotation.build("a.jpg", "center", "left")}
    text = (
        "Sidewalk: center. Road: left. RoadVsSidewalk: left_of. Nearby: no important close "
        "objects visible. Far: a car farther away on the left. Context: a signpost and a manhole."
    )
    report = evaluate_safety([("a.jpg", text)], truth).report
    assert report["compat"]["objects"]["car"]["fp"] == 1  # Far: counted as close
    assert report["compat"]["objects"]["traffic_sign"]["fp"] == 1  # "signpost"
    assert report["compat"]["objects"]["person"]["fp"] == 1  # "manhole"
    assert report["strict"]["objects"]["near"]["micro"]["fp"] == 0
    assert report["strict"]["objects"]["far"]["per_class"]["car"]["fp"] == 1


def test_bad_choices_name_the_allowed_values(sensation_dir: Path) -> None:
    with pytest.raises(InputError, match="compat, strict, both"):
        _evaluate(sensation_dir, sensation_dir / PRED_FILE, mode="lenient")
    with pytest.raises(InputError, match="train, val, test"):
        _evaluate(sensation_dir, sensation_dir / PRED_FILE, split="dev")


def test_chat_transcripts_are_scored_after_the_last_assistant_marker() -> None:
    truth = {"a.jpg": SceneAnnotation.build("a.jpg", "center", "left")}
    text = "User: e.g. Sidewalk: left. Road: right.\nAssistant: Sidewalk: center. Road: left."
    cleaned = evaluate_safety([("a.jpg", text)], truth, mode="strict").report["strict"]
    raw = evaluate_safety([("a.jpg", text)], truth, mode="strict", clean="none").report["strict"]
    assert cleaned["fields"]["sidewalk_pos"]["accuracy"]["correct"] == 1
    assert raw["fields"]["sidewalk_pos"]["accuracy"]["correct"] == 0
