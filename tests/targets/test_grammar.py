"""The structured-answer grammar (`roadscene.targets.grammar`): it accepts every answer
`render_response` writes and nothing that would break the format. Acceptance is checked on the
answer's bytes with xgrammar (any vocabulary will do: here one token per byte)."""

from __future__ import annotations

import functools
import json
import random

import pytest

from roadscene.schema import (
    OBJECT_CLASSES,
    POSITIONS,
    ROAD_VALUES,
    SIDEWALK_VALUES,
    SceneAnnotation,
)
from roadscene.targets import render_response
from roadscene.targets.grammar import GrammarOptions, answer_grammar

xgr = pytest.importorskip("xgrammar")


@functools.cache
def _compiled(**options):
    """The answer grammar compiled for a byte vocabulary (256 byte tokens and a stop token)."""
    vocab = [bytes([byte]) for byte in range(256)] + [b""]
    info = xgr.TokenizerInfo(
        vocab, xgr.VocabType.RAW, vocab_size=len(vocab), stop_token_ids=[len(vocab) - 1]
    )
    grammar = answer_grammar(GrammarOptions(**options))
    return xgr.GrammarCompiler(info, max_threads=1).compile_grammar(grammar)


def _accepts(compiled, text: str) -> bool:
    matcher = xgr.GrammarMatcher(compiled)
    return matcher.accept_string(text) and matcher.is_completed()


def _random_scene(rng: random.Random) -> SceneAnnotation:
    def objects() -> dict[str, list[str]]:
        return {
            cls: [rng.choice(POSITIONS) for _ in range(rng.choice([0, 0, 0, 1, 2, 3, 7, 20]))]
            for cls in OBJECT_CLASSES
        }

    return SceneAnnotation.build(
        "x.jpg", rng.choice(SIDEWALK_VALUES), rng.choice(ROAD_VALUES), near=objects(), far=objects()
    )


@pytest.mark.parametrize("relation_from_fields", [False, True])
def test_grammar_accepts_every_rendered_target(relation_from_fields) -> None:
    compiled = _compiled(relation_from_fields=relation_from_fields)
    rng = random.Random(0)
    captions = [None, "", "A busy street with a bus stop, trees (and a café) – 2 lanes."]
    for _ in range(300):
        text = render_response(_random_scene(rng), rng.choice(captions))
        assert _accepts(compiled, text), text
        assert _accepts(compiled, " " + text)  # SmolVLM answers start after "Assistant:"


def test_grammar_accepts_the_published_targets(sensation_dir) -> None:
    compiled = _compiled(relation_from_fields=True)
    rows = (sensation_dir / "reference" / "bvpi_sft_val.jsonl").read_text().splitlines()
    for row in rows:
        response = json.loads(row)["response"]
        assert _accepts(compiled, response), response


@pytest.mark.parametrize(
    "text",
    [
        "Sidewalk: left. Road: right. RoadVsSidewalk: crossing_fron. Nearby: no important close "
        "objects visible.",  # invented value
        "Sidewalk: left. Road: right. RoadVsSidewalk: right_of.",  # Nearby missing
        "Road: right. Sidewalk: left. RoadVsSidewalk: right_of. Nearby: no important close "
        "objects visible.",  # wrong order
        "Sidewalk: front. Road: right. RoadVsSidewalk: right_of. Nearby: no important close "
        "objects visible.",  # sidewalk cannot be front
        "Sidewalk: left. Road: right. RoadVsSidewalk: right_of. Nearby: a obstacle close on the "
        "left.",  # article
        "Sidewalk: left. Road: right. RoadVsSidewalk: right_of. Nearby: 2 person close on the "
        "left.",  # agreement
        "Sidewalk: left. Road: right. RoadVsSidewalk: right_of. Nearby: a person close on the "
        "left and right.",  # one object, two positions
        "Sidewalk: left. Road: right. RoadVsSidewalk: right_of. Nearby: 2 people close across "
        "the left, center, and right.",  # two objects, three positions
        "Sidewalk: left. Road: right. RoadVsSidewalk: right_of. Nearby: a car close on the "
        "left; a person close on the right.",  # render order
        "Sidewalk: left. Road: right. RoadVsSidewalk: right_of. Nearby: a car close on the "
        "left; a car close on the right.",  # class twice
        "Sidewalk: left. Road: right. RoadVsSidewalk: right_of. Nearby: no important close "
        "objects visible. Context: <image>",  # special-token look-alike in the free text
        "Sidewalk: left. Road: right. RoadVsSidewalk: right_of. Nearby: no important close "
        "objects visible. Context: two\nlines",
    ],
)
def test_grammar_rejects_malformed_answers(text) -> None:
    assert not _accepts(_compiled(), text)


def test_relation_from_fields_allows_only_the_rule() -> None:
    free = _compiled()
    ruled = _compiled(relation_from_fields=True)
    wrong = (
        "Sidewalk: left. Road: right. RoadVsSidewalk: left_of. Nearby: no important close "
        "objects visible."
    )
    right = wrong.replace("left_of", "right_of")
    assert _accepts(free, wrong) and _accepts(free, right)
    assert not _accepts(ruled, wrong) and _accepts(ruled, right)


@pytest.mark.parametrize("max_chars", [10, 100, 201, 600])
def test_context_is_bounded(max_chars) -> None:
    compiled = _compiled(context_max_chars=max_chars)
    head = (
        "Sidewalk: left. Road: left. RoadVsSidewalk: unknown. Nearby: no important close "
        "objects visible. Context: "
    )
    for length in {1, 2, 99, 100, 101, 199, 200, 201, max_chars - 1, max_chars} - {0}:
        if length <= max_chars:
            assert _accepts(compiled, head + "x" * length), length
    assert not _accepts(compiled, head + "x" * (max_chars + 1))
    assert not _accepts(compiled, head + " x")  # the caption does not start with a space
    assert "context" not in answer_grammar(GrammarOptions(context_max_chars=0))


def test_grammar_options_are_validated() -> None:
    with pytest.raises(ValueError, match="max_count"):
        GrammarOptions(max_count=1)
