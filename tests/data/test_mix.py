"""The task mix: realised proportions, seeding, few-shot demonstrations and bad settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from roadscene.data.mix import MixedExamples, MixSection
from roadscene.data.records import ANNOTATED_PROMPT, ExampleRecord, annotation_json, load_records
from roadscene.errors import InputError
from roadscene.train.config import load_config

ANSWER = (
    "Sidewalk: left. Road: right. RoadVsSidewalk: right_of. Nearby: a person close on the left."
)


def _records(task: str, n: int) -> list[ExampleRecord]:
    answer = ANSWER
    return [
        ExampleRecord(f"{task}{i}.png", Path(f"{task}{i}.png"), "Describe.", answer if task == "bvpi" else f"caption {i}", Path(f"{task}.jsonl"), i + 1, meta={"response": answer})
        for i in range(n)
    ]  # fmt: skip


MIX = MixSection.model_validate(
    {
        "sources": [
            {"task": "caption", "file": "captions_train.json", "weight": 0.7},
            {"task": "bvpi", "file": "bvpi_sft_train.jsonl", "weight": 0.3},
        ],
        "annotated_share": 0.2,
        "few_shot_share": 0.08,
        "shots": 2,
        "length": 5000,
    }
)


def test_realised_proportions_are_within_two_percent_over_5000_draws() -> None:
    mixed = MixedExamples(MIX, [_records("caption", 40), _records("bvpi", 25)], seed=3)
    plan = mixed.plan()
    assert plan["items"] == 5000
    assert plan["sources"]["caption:captions_train.json"] == pytest.approx(0.7, abs=0.02)
    assert plan["sources"]["bvpi:bvpi_sft_train.jsonl"] == pytest.approx(0.3, abs=0.02)
    assert plan["annotated"] == pytest.approx(0.2, abs=0.02)
    assert plan["few_shot"] == pytest.approx(0.08, abs=0.02)
    # the draws depend on (seed, index) only; another seed draws other items
    again = MixedExamples(MIX, [_records("caption", 40), _records("bvpi", 25)], seed=3)
    assert [again.draw(i) for i in reversed(range(200))][::-1] == [
        mixed.draw(i) for i in range(200)
    ]
    other = MixedExamples(MIX, [_records("caption", 40), _records("bvpi", 25)], seed=4)
    assert [other.draw(i) for i in range(50)] != [mixed.draw(i) for i in range(50)]


def test_items_carry_their_task_form_and_demonstrations(monkeypatch: pytest.MonkeyPatch) -> None:
    import roadscene.data.mix as mix_module
    from roadscene.data.examples import VisionTextExample

    def fake_example(record: ExampleRecord) -> VisionTextExample:  # no image files here
        return VisionTextExample([], record.prompt, record.answer, record.image, dict(record.meta))

    monkeypatch.setattr(mix_module, "to_example", fake_example)
    mixed = MixedExamples(MIX, [_records("caption", 40), _records("bvpi", 25)], seed=1)
    seen = set()
    for index in range(400):
        draw, item = mixed.draw(index), mixed[index]
        seen.add((item.meta["task"], bool(item.demonstrations)))
        if item.meta["task"] == "annotated":
            assert item.prompt.startswith(ANNOTATED_PROMPT.split("{")[0])
            assert (item.prompt, item.answer) == (
                ANNOTATED_PROMPT.format(annotation=annotation_json(ANSWER)[0]),
                annotation_json(ANSWER)[1],
            )
        assert len(item.demonstrations) == (2 if draw.shots else 0)
        assert draw.row not in draw.shots  # never the query itself
    assert {task for task, _ in seen} == {"caption", "bvpi", "annotated"}
    assert (True in {shot for _, shot in seen}) and (False in {shot for _, shot in seen})


@pytest.mark.parametrize(
    ("mix", "message"),
    [
        ({"sources": [{"task": "caption", "file": "a.json", "weight": 0}]}, "weights sum to 0"),
        ({"sources": [{"task": "caption", "file": "a.json", "weight": -1}]}, "must be >= 0"),
        ({"sources": [{"task": "caption", "file": "a.json", "weight": 1}], "annotated_share": 0.1}, "more than the bvpi sources' share"),
        ({"sources": [{"task": "bvpi", "file": "a.jsonl", "weight": 1}], "few_shot_share": 1.5}, "a share must be in [0, 1]"),
        ({"sources": [{"task": "caption", "file": "a.json", "weight": 1}], "few_shot_share": 0.1}, "needs a family that takes in-context demonstrations; 'smolvlm' does not"),
    ],
)  # fmt: skip
def test_bad_mix_settings_are_one_line_errors(mix: dict, message: str) -> None:
    with pytest.raises(InputError) as err:
        load_config(None, [f"data.mix={json.dumps(mix)}", "model.family=smolvlm"])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_few_shot_share_is_accepted_for_a_family_that_takes_demonstrations() -> None:
    mix = {"sources": [{"task": "caption", "file": "a.json", "weight": 1}], "few_shot_share": 0.1}
    config = load_config(None, [f"data.mix={json.dumps(mix)}", "model.family=flamingo"])
    assert config.data.mix is not None and config.data.mix.few_shot_share == 0.1


def test_a_missing_source_file_is_a_one_line_error(tiny_bvpi_dir: Path, tmp_path: Path) -> None:
    from roadscene.train.runner import run_training

    mix = {
        "sources": [
            {"task": "bvpi", "file": "bvpi_sft_train.jsonl", "weight": 1},
            {"task": "caption", "file": "captions_absent.json", "weight": 1},
        ]
    }
    config = load_config(
        None,
        [
            f"data.mix={json.dumps(mix)}",
            f"data.data_dir={tiny_bvpi_dir}",
            f"train.output_dir={tmp_path / 'run'}",
        ],
    )
    with pytest.raises(InputError) as err:
        run_training(config)  # fails on the data, before any model is loaded
    assert "captions_absent.json" in str(err.value) and "mix source file not found" in str(
        err.value
    )
    assert len(load_records("bvpi", tiny_bvpi_dir / "bvpi_sft_train.jsonl", tiny_bvpi_dir)) == 8
