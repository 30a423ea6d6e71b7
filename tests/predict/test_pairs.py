"""On-policy preference pairs (`roadscene data pairs`): the kinds of mistake, sampled answers for
every family, the pair file and its report, resuming, and bad input."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from roadscene.errors import InputError
from roadscene.models import list_families
from roadscene.predict import ModelCard, Predictor
from roadscene.predict.pairs import (
    MISTAKES,
    PairSettings,
    build_pairs,
    mistakes,
    report_file,
    samples_file,
)
from roadscene.predict.settings import Decoding
from roadscene.targets import parse_response

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRUTH = (
    "Sidewalk: left. Road: right. RoadVsSidewalk: right_of. Nearby: a person close on the left; "
    "2 cars close on the center and right. Far: a traffic sign farther away on the left."
)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (TRUTH, []),
        # counts, far objects and the context do not make a pair
        (
            TRUTH.replace("2 cars", "3 cars").replace(
                " Far: a traffic sign farther away on the left.", " Context: a street."
            ),
            [],
        ),  # fmt: skip
        (TRUTH.replace("Sidewalk: left", "Sidewalk: right"), ["wrong_sidewalk"]),
        (
            TRUTH.replace(
                "Road: right. RoadVsSidewalk: right_of",
                "Road: front. RoadVsSidewalk: crossing_front",
            ),
            ["wrong_road", "wrong_relation"],
        ),  # fmt: skip
        (TRUTH.replace("a person close on the left; ", ""), ["missed_close_object"]),
        (
            TRUTH.replace("Nearby: ", "Nearby: an obstacle close on the center; "),
            ["invented_close_object"],
        ),  # fmt: skip
        (
            TRUTH.replace("person close on the left", "person close on the right"),
            ["wrong_close_position"],
        ),  # fmt: skip
        (
            "Sidewalk: left. Nearby: no important close objects visible.",
            ["wrong_road", "wrong_relation", "missed_close_object"],
        ),  # fmt: skip
    ],
)
def test_mistakes_that_matter_to_a_pedestrian(answer: str, expected: list[str]) -> None:
    assert mistakes(answer, parse_response(TRUTH)) == expected


@pytest.mark.parametrize("family", list_families())
def test_sampling_gives_several_answers_per_image_for_every_family(
    family: str, tiny_model_dir_for
) -> None:
    from PIL import Image

    from roadscene.data.examples import VisionTextExample

    predictor = Predictor.load(ModelCard.read(tiny_model_dir_for(family)), device="cpu")
    examples = [
        VisionTextExample(images=[Image.new("RGB", (40, 30), colour)], prompt="Describe.")
        for colour in ((200, 30, 30), (30, 30, 200))
    ]
    decoding = Decoding(max_new_tokens=5, temperature=1.0, samples=3)
    import torch

    torch.manual_seed(0)
    texts = predictor.generate_batch(examples, decoding)
    assert len(texts) == 6
    torch.manual_seed(0)
    assert predictor.generate_batch(examples, decoding) == texts  # seeded: repeatable
    with pytest.raises(ValueError, match="set a temperature"):
        Decoding(samples=2)


@pytest.fixture(scope="module")
def pairs_run(tiny_smolvlm_dir: Path, tiny_bvpi_dir: Path, tmp_path_factory) -> tuple:
    """Pairs from the untrained tiny SmolVLM (grammar on, so every answer parses)."""
    settings = PairSettings(samples=3, batch_size=3, max_new_tokens=40, seed=1)
    predictor = Predictor.load(ModelCard.read(tiny_smolvlm_dir), device="cpu")
    out = tmp_path_factory.mktemp("pairs") / "train_pairs.jsonl"
    summary = build_pairs(
        tiny_bvpi_dir / "bvpi_sft_train.jsonl", out, predictor, settings, progress=False
    )
    return predictor, settings, out, summary


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_pairs_reject_the_models_wrong_answers(pairs_run, tiny_bvpi_dir: Path) -> None:
    _, settings, out, summary = pairs_run
    source = {number: row for number, row in enumerate(read_jsonl(tiny_bvpi_dir /
                                                                    "bvpi_sft_train.jsonl"), 1)}  # fmt: skip
    pairs = read_jsonl(out)
    assert pairs, "an untrained model makes mistakes"
    kinds: Counter[str] = Counter()
    per_image: Counter[int] = Counter()
    for pair in pairs:
        row = source[pair["line"]]
        # the published pair layout, the truth chosen, the model's wrong answer rejected
        assert list(pair)[:7] == ["image", "prompt", "chosen", "rejected", "sidewalk_pos",
                                  "road_pos", "road_vs_sidewalk"]  # fmt: skip
        assert (pair["image"], pair["prompt"], pair["chosen"]) == (
            row["image"], row["prompt"], row["response"],
        )  # fmt: skip
        assert pair["mistakes"] == mistakes(pair["rejected"], parse_response(row["response"]))
        assert pair["mistakes"]
        kinds.update(pair["mistakes"])
        per_image[pair["line"]] += 1
    assert max(per_image.values()) <= settings.pairs_per_image
    report = json.loads(report_file(out).read_text())
    assert report == summary.report
    assert report["pairs"] == len(pairs) and report["rows"] == 8
    assert report["pairs_by_mistake"] == {kind: kinds[kind] for kind in MISTAKES}
    assert report["samples"]["drawn"] == 8 * settings.samples
    assert report["rows_with_pairs"] == len(per_image)

    # the pair file is what the preference stage reads
    from roadscene.data.pairs import load_pairs

    assert len(load_pairs(out, tiny_bvpi_dir)) == len(pairs)


@pytest.mark.slow
def test_a_rerun_continues_and_draws_what_the_uninterrupted_run_drew(
    pairs_run, tiny_bvpi_dir: Path, tmp_path: Path
) -> None:
    predictor, settings, full_out, _ = pairs_run
    out = tmp_path / "train_pairs.jsonl"
    lines = samples_file(full_out).read_text().splitlines(keepends=True)
    # a crash after the first batch (3 rows) while writing the second one
    samples_file(out).write_text("".join(lines[:4]) + lines[4][:25])
    build_pairs(tiny_bvpi_dir / "bvpi_sft_train.jsonl", out, predictor, settings, progress=False)
    assert samples_file(out).read_text() == samples_file(full_out).read_text()
    assert out.read_text() == full_out.read_text()

    other = settings.model_copy(update={"temperature": 0.5})
    with pytest.raises(InputError, match="other settings"):
        build_pairs(tiny_bvpi_dir / "bvpi_sft_train.jsonl", out, predictor, other, progress=False)


def test_rows_without_a_structured_answer_are_refused(tmp_path: Path, tiny_bvpi_dir) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"image": "a.png", "prompt": "Hi", "response": "A street."}) + "\n")
    card = ModelCard(base=str(tiny_bvpi_dir), adapter=None, family="smolvlm")
    with pytest.raises(InputError, match="not a structured answer") as err:
        build_pairs(data, tmp_path / "p.jsonl", card, progress=False)
    assert ":1" in str(err.value)
    with pytest.raises(InputError, match="--samples"):
        PairSettings.from_options(samples=0)
