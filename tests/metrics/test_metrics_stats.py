"""Corpus statistics: Wilson intervals, balanced accuracy, macro-F1, confusion matrices."""

from __future__ import annotations

import pytest

from roadscene.metrics.stats import (
    classification_summary,
    majority_label,
    prf,
    wilson_interval,
)


def test_wilson_interval_matches_published_values() -> None:
    # Reference values: Newcombe (1998), Table I (81/263 -> 0.2553, 0.3662; 0/10 -> 0, 0.2775).
    low, high = wilson_interval(81, 263)
    assert low == pytest.approx(0.2553, abs=1e-4)
    assert high == pytest.approx(0.3662, abs=1e-4)
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    assert wilson_interval(10, 10) == (pytest.approx(0.7225, abs=1e-4), 1.0)
    assert wilson_interval(0, 0) is None


def test_balanced_accuracy_and_macro_f1_match_sklearn_documentation_examples() -> None:
    # sklearn docs: balanced_accuracy_score([0,1,0,0,1,0], [0,1,0,0,0,1]) == 0.625
    summary = classification_summary(
        ["a", "b", "a", "a", "b", "a"], ["a", "b", "a", "a", "a", "b"], ["a", "b"]
    )
    assert summary["balanced_accuracy"] == pytest.approx(0.625)
    # sklearn docs: f1_score([0,1,2,0,1,2], [0,2,1,0,0,1], average="macro") == 0.2666...
    summary = classification_summary(
        ["x", "y", "z", "x", "y", "z"], ["x", "z", "y", "x", "x", "y"], ["x", "y", "z"]
    )
    assert summary["macro_f1"] == pytest.approx(0.26666666, abs=1e-6)
    assert summary["accuracy"]["rate"] == pytest.approx(2 / 6)


def test_missing_answers_are_wrong_and_appear_in_the_none_column() -> None:
    summary = classification_summary(
        ["left", "right", "unknown"], ["left", None, None], ["left", "right", "unknown"]
    )
    assert summary["accuracy"]["correct"] == 1
    assert summary["accuracy_known_truth"]["total"] == 2
    assert summary["answered"] == 1
    confusion = summary["confusion"]
    assert confusion["columns"][-1] == "none"
    assert confusion["matrix"][1] == [0, 0, 0, 1]  # truth right -> no answer
    # labels never seen in truth or predictions do not enter macro averages
    assert summary["per_label"]["unknown"]["f1"] == 0.0  # in truth, never predicted


def test_values_outside_the_label_list_are_kept_not_dropped() -> None:
    summary = classification_summary(["left"], ["front"], ["left", "right"])
    assert summary["confusion"]["columns"] == ["left", "right", "front", "none"]
    assert summary["confusion"]["matrix"][0][2] == 1


def test_prf_is_undefined_without_denominator_and_f1_zero_when_missed() -> None:
    block = prf(tp=0, fp=0, fn=3)
    assert block["precision"] is None
    assert block["recall"] == 0.0
    assert block["f1"] == 0.0
    assert prf(0, 0, 0)["f1"] is None


def test_majority_label_breaks_ties_by_first_occurrence() -> None:
    assert majority_label(["b", "a", "a", "b", "c"]) == "b"
    assert majority_label([]) is None
