"""The structured-decoding bar (docs/structured.md): an UNTRAINED tiny model of every registered
family, decoding with the answer grammar over 64 images, gives 100 % complete answers with valid
values; with `--relation-from-fields` the relation is always the rule's. Batch 1 and 4, greedy
and 3 beams."""

from __future__ import annotations

import json
import random
from pathlib import Path

import jsonschema
import pytest

from roadscene.models import list_families
from roadscene.predict import ModelCard, PredictSettings, predict_file
from roadscene.predict.runner import resolve_task
from roadscene.schema import (
    OBJECT_CLASSES,
    POSITIONS,
    RELATION_VALUES,
    ROAD_VALUES,
    SIDEWALK_VALUES,
    form_json_schema,
    road_vs_sidewalk,
)
from roadscene.targets import DEFAULT_PROMPT, GrammarOptions, parse_response

N_IMAGES = 64
# Within this budget the grammar processor closes the Nearby list in time (see
# GrammarLogitsProcessor), so the mandatory header and Nearby list are never cut.
MAX_NEW_TOKENS = 96

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def images_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 small random-noise images and a bvpi data file (no targets) listing them."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("bar_images")
    rng = random.Random(0)
    lines = []
    for index in range(N_IMAGES):
        size = (rng.randint(24, 64), rng.randint(24, 64))
        pixels = bytes(rng.randrange(256) for _ in range(size[0] * size[1] * 3))
        Image.frombytes("RGB", size, pixels).save(folder / f"img_{index:02d}.png")
        lines.append(json.dumps({"image": f"img_{index:02d}.png", "prompt": DEFAULT_PROMPT}))
    data = folder / "bvpi_sft_bar.jsonl"
    data.write_text("\n".join(lines) + "\n")
    return data


@pytest.fixture
def tiny_model_dir(request: pytest.FixtureRequest, tiny_model_dir_for) -> Path:
    """The family's shared tiny random-init model (conftest's `tiny_model_dir_for`)."""
    return tiny_model_dir_for(request.param)


def _check_answers(out: Path, *, relation_from_fields: bool) -> list[dict]:
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == N_IMAGES
    schema = form_json_schema()
    for row in rows:
        parsed = parse_response(row["prediction"])
        where = row["prediction"]
        assert parsed.complete, where
        assert parsed.sidewalk in SIDEWALK_VALUES, where
        assert parsed.road in ROAD_VALUES, where
        assert parsed.relation in RELATION_VALUES, where
        for mention in parsed.near.values():
            assert mention.count is not None and mention.count >= 1, where
            assert mention.positions and set(mention.positions) <= set(POSITIONS), where
            assert len(mention.positions) <= mention.count, where
        assert set(parsed.near) <= set(OBJECT_CLASSES)
        # the optional Far list may be cut by the token budget, never the Nearby list
        assert not [p for p in parsed.unparsed if "close" in p], where
        assert parsed.nearby_none == (not parsed.near), where
        if relation_from_fields:
            assert parsed.relation == road_vs_sidewalk(parsed.sidewalk, parsed.road), where
        assert row["parsed"]["complete"]
        assert row["cue"]["text"] and row["cue"]["action"]
        jsonschema.validate(row["annotation"], schema)
    return rows


@pytest.mark.parametrize("tiny_model_dir", list_families(), indirect=True)
@pytest.mark.parametrize(("batch_size", "num_beams"), [(1, 1), (4, 1), (1, 3), (4, 3)])
def test_untrained_model_always_answers_in_format(
    tiny_model_dir, images_file, tmp_path, batch_size, num_beams
) -> None:
    card = ModelCard.read(tiny_model_dir)
    settings = PredictSettings(
        batch_size=batch_size,
        num_beams=num_beams,
        max_new_tokens=MAX_NEW_TOKENS,
        relation_from_fields=True,
        output_format="json",
    )
    # the grammar (with the relation rule) and the cue/annotation views are on
    resolved = settings.for_task(resolve_task(settings.task, images_file, card))
    assert resolved.decoding().grammar == GrammarOptions(relation_from_fields=True)
    assert resolved.structured_answers
    out = tmp_path / "pred.jsonl"
    predict_file(images_file, out, card, settings, progress=False)
    _check_answers(out, relation_from_fields=True)


@pytest.mark.parametrize("tiny_model_dir", list_families(), indirect=True)
def test_untrained_model_free_relation_and_unconstrained_baseline(
    tiny_model_dir, images_file, tmp_path
) -> None:
    # the model chooses the relation too: still 100 % well-formed
    card = ModelCard.read(tiny_model_dir)
    settings = PredictSettings(batch_size=4, max_new_tokens=MAX_NEW_TOKENS, output_format="json")
    assert settings.for_task("bvpi").decoding().grammar == GrammarOptions()
    out = tmp_path / "free.jsonl"
    predict_file(images_file, out, card, settings, progress=False)
    rows = _check_answers(out, relation_from_fields=False)
    # and the grammar is what does it: the same untrained model without it is never complete
    baseline = PredictSettings(
        batch_size=4, max_new_tokens=MAX_NEW_TOKENS, limit=8, structured=False
    )
    assert baseline.for_task("bvpi").decoding().grammar is None
    out = tmp_path / "unconstrained.jsonl"
    predict_file(images_file, out, card, baseline, progress=False)
    unconstrained = [json.loads(line) for line in out.read_text().splitlines()]
    assert not any(parse_response(r["prediction"]).complete for r in unconstrained)
    assert all("cue" in r and "annotation" not in r for r in unconstrained)
    assert len(rows) == N_IMAGES
