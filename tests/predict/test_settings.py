"""`PredictSettings`: structured decoding on by default for tasks with structured answers, and
every combination that cannot work refused with a message naming the options (what
`roadscene predict` reports before loading anything)."""

from __future__ import annotations

from pathlib import Path

import pytest

from roadscene.errors import InputError
from roadscene.predict import Decoding, PredictSettings
from roadscene.targets import GrammarOptions


def test_structured_is_on_by_default_for_bvpi_only() -> None:
    bvpi = PredictSettings(max_new_tokens=50, num_beams=3).for_task("bvpi")
    assert bvpi.task == "bvpi" and bvpi.structured is True and bvpi.structured_answers
    assert bvpi.decoding() == Decoding(num_beams=3, max_new_tokens=50, grammar=GrammarOptions())
    ruled = PredictSettings(relation_from_fields=True).for_task("bvpi").decoding()
    assert ruled.grammar == GrammarOptions(relation_from_fields=True)
    # the baseline: bvpi answers without the grammar still get their views (the cue)
    free = PredictSettings(structured=False).for_task("bvpi")
    assert free.decoding().grammar is None and free.structured_answers
    for task in ("caption", "annotated"):
        settings = PredictSettings().for_task(task)
        assert settings.structured is False and not settings.structured_answers
        assert settings.decoding().grammar is None


@pytest.mark.parametrize(
    ("options", "task", "message"),
    [
        ({"structured": True}, "caption", "--structured needs a task with structured answers"),
        ({"structured": True}, "annotated", "this is the 'annotated' task: use --no-structured"),
        ({"relation_from_fields": True}, "caption", "--relation-from-fields needs --structured"),
        (
            {"relation_from_fields": True, "structured": False},
            "bvpi",
            "--relation-from-fields needs --structured",
        ),
        ({"output_format": "json"}, "caption", "--format json needs the bvpi task"),
        (
            {"output_format": "json", "structured": False},
            "annotated",
            "--format json needs the bvpi task",
        ),
        ({"shots": 2}, "bvpi", "--shots needs --shots-from"),
        ({"shots_from": Path("train.jsonl")}, "bvpi", "--shots-from needs --shots"),
    ],
)
def test_impossible_combinations_are_refused(options, task, message) -> None:
    with pytest.raises(InputError, match=message):
        PredictSettings(**options).for_task(task)


def test_allowed_combinations_pass() -> None:
    json_free = PredictSettings(output_format="json", structured=False).for_task("bvpi")
    assert json_free.decoding().grammar is None
    shots = PredictSettings(shots=2, shots_from=Path("train.jsonl")).for_task("bvpi")
    assert shots.shots == 2 and shots.structured


def test_bad_option_values_name_the_option() -> None:
    with pytest.raises(InputError, match="--format"):
        PredictSettings.from_options(output_format="xml")
    with pytest.raises(InputError, match="--batch-size"):
        PredictSettings.from_options(batch_size=0)
    with pytest.raises(InputError, match="--on-bad-image"):
        PredictSettings.from_options(on_bad_image="ignore")
