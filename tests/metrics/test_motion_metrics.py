"""Strict motion figures: scored only where the truth says how things move (clips), over the
close people, bicycles and cars both truth and answer name, beside the majority-class rate;
still-image reports stay as they were."""

from __future__ import annotations

import pytest

from roadscene.metrics.safety import evaluate_safety
from roadscene.metrics.safety_strict import score_strict_sample
from roadscene.schema import SceneAnnotation
from roadscene.targets import render_response

HEADER = "Sidewalk: left. Road: right. RoadVsSidewalk: right_of. Nearby: "


def _scene(name: str, motion: dict | None, near: dict | None = None) -> SceneAnnotation:
    return SceneAnnotation.build(
        name, "left", "right", near=near or {"person": ["center"]}, motion=motion
    )


def test_motion_accuracy_and_majority_rate() -> None:
    truth = {
        "a.webm": _scene("a.webm", {"person": "approaching"}),
        "b.webm": _scene("b.webm", {}),  # the person stands still
        "c.webm": _scene("c.webm", {"person": "approaching"}),
        "d.webm": _scene(
            "d.webm", {"person": "crossing"}, {"person": ["left"], "obstacle": ["right"]}
        ),
        "e.webm": _scene("e.webm", {"person": "moving away"}),
    }
    predictions = [
        ("a.webm", HEADER + "a person close on the center, approaching."),  # right
        ("b.webm", HEADER + "a person close on the center."),  # right: static
        ("c.webm", HEADER + "a person close on the center, moving away."),  # wrong
        (
            "d.webm",
            HEADER + "an obstacle close on the right; a person close on the left, crossing.",
        ),
        ("e.webm", HEADER + "no important close objects visible."),  # not named: not scored
    ]
    report = evaluate_safety(predictions, truth, mode="strict").report["strict"]
    motion = report["motion"]
    assert motion["n"] == 4  # e is missed, so its motion is not scored; obstacles never are
    assert motion["accuracy"]["rate"] == pytest.approx(3 / 4)
    assert motion["majority_label"] == "approaching"
    assert motion["majority_rate"]["rate"] == pytest.approx(2 / 4)
    assert motion["confusion"]["labels"] == ["static", "approaching", "moving away", "crossing"]


def test_standing_still_and_no_motion_word_score_alike() -> None:
    named = _scene("a.webm", {"person": "standing still"})
    unnamed = _scene("b.webm", {})  # an older clip annotation: a class left out stands still
    assert named.moving("person") == unnamed.moving("person") == "static"
    predictions = [
        ("a.webm", HEADER + "a person close on the center."),
        ("b.webm", HEADER + "a person close on the center, standing still."),
    ]
    truth = {"a.webm": named, "b.webm": unnamed}
    motion = evaluate_safety(predictions, truth, mode="strict").report["strict"]["motion"]
    assert motion["n"] == 2 and motion["accuracy"]["rate"] == pytest.approx(1.0)
    wrong = [("a.webm", HEADER + "a person close on the center, approaching.")]
    wrong_report = evaluate_safety(wrong, {"a.webm": named}, mode="strict").report["strict"]
    assert wrong_report["motion"]["accuracy"]["rate"] == pytest.approx(0.0)


def test_still_image_truth_reports_no_motion() -> None:
    still = _scene("a.jpg", None)
    text = render_response(still, None)
    report = evaluate_safety([("a.jpg", text)], {"a.jpg": still}, mode="strict").report
    assert "motion" not in report["strict"]
    sample = score_strict_sample(text + "", still)
    assert all("motion" not in o for o in sample["objects"]["near"].values())
