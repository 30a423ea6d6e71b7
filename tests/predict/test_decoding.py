"""The structured-answer grammar and the prefix-keyed grammar logits processor (fast unit tests
on the tiny SmolVLM tokenizer)."""

from __future__ import annotations

import json
import random

import jsonschema
import pytest
import torch
from roadscene.predict.structured import (
    GrammarLogitsProcessor,
    GrammarOptions,
    answer_annotation,
    answer_grammar,
    compile_answer_grammar,
    model_vocab_size,
    prediction_views,
    structured_logits_processor,
)

from roadscene.schema import (
    OBJECT_CLASSES,
    POSITIONS,
    ROAD_VALUES,
    SIDEWALK_VALUES,
    SceneAnnotation,
    form_json_schema,
)
from roadscene.targets import parse_response, render_response

xgr = pytest.importorskip("xgrammar")


@pytest.fixture(scope="module")
def tokenizer(tiny_smolvlm_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_smolvlm_dir).tokenizer


def _compiled(tokenizer, extra_rows: int = 0, **options):
    return compile_answer_grammar(
        tokenizer,
        vocab_size=len(tokenizer) + extra_rows,
        stop_token_ids=[tokenizer.eos_token_id],
        options=GrammarOptions(**options),
    )


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
def test_grammar_accepts_every_rendered_target(tokenizer, relation_from_fields) -> None:
    compiled = _compiled(tokenizer, relation_from_fields=relation_from_fields)
    rng = random.Random(0)
    captions = [None, "", "A busy street with a bus stop, trees (and a café) – 2 lanes."]
    for _ in range(300):
        text = render_response(_random_scene(rng), rng.choice(captions))
        assert _accepts(compiled, text), text
        assert _accepts(compiled, " " + text)  # SmolVLM answers start after "Assistant:"


def test_grammar_accepts_the_published_targets(tokenizer, sensation_dir) -> None:
    compiled = _compiled(tokenizer, relation_from_fields=True)
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
def test_grammar_rejects_malformed_answers(tokenizer, text) -> None:
    assert not _accepts(_compiled(tokenizer), text)


def test_relation_from_fields_allows_only_the_rule(tokenizer) -> None:
    free = _compiled(tokenizer)
    ruled = _compiled(tokenizer, relation_from_fields=True)
    wrong = (
        "Sidewalk: left. Road: right. RoadVsSidewalk: left_of. Nearby: no important close "
        "objects visible."
    )
    right = wrong.replace("left_of", "right_of")
    assert _accepts(free, wrong) and _accepts(free, right)
    assert not _accepts(ruled, wrong) and _accepts(ruled, right)


@pytest.mark.parametrize("max_chars", [10, 100, 201, 600])
def test_context_is_bounded(tokenizer, max_chars) -> None:
    compiled = _compiled(tokenizer, context_max_chars=max_chars)
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


def test_compiled_grammar_is_cached_per_tokenizer(tokenizer) -> None:
    assert _compiled(tokenizer) is _compiled(tokenizer)
    assert _compiled(tokenizer) is not _compiled(tokenizer, relation_from_fields=True)
    assert _compiled(tokenizer) is not _compiled(tokenizer, extra_rows=64)


def _allowed(compiled, prefix: tuple[int, ...], width: int) -> set[int]:
    """Tokens a fresh matcher allows after `prefix` (the reference for the processor)."""
    matcher = xgr.GrammarMatcher(compiled)
    for token in prefix:
        assert matcher.accept_token(token)
    mask = xgr.allocate_token_bitmask(1, width)
    matcher.fill_next_token_bitmask(mask, 0)
    scores = torch.zeros(1, width)
    xgr.apply_token_bitmask_inplace(scores, mask)
    return set(torch.nonzero(scores[0] == 0).flatten().tolist())


def test_special_tokens_are_never_allowed(tokenizer) -> None:
    extra = 64  # the model's logits are wider than the tokenizer's vocabulary
    width = len(tokenizer) + extra
    compiled = _compiled(tokenizer, extra_rows=extra)
    controls = {
        tokenizer.convert_tokens_to_ids(t)
        for t in [
            "<image>",
            "<fake_token_around_image>",
            "<global-img>",
            "<row_1_col_1>",
            "<|pad|>",
            "<|im_start|>",
            "<end_of_utterance>",
        ]
    } | set(range(len(tokenizer), width))
    text = (
        "Sidewalk: left. Road: left. RoadVsSidewalk: unknown. Nearby: no important close "
        "objects visible. Context: a"
    )
    prefix = tuple(tokenizer(text, add_special_tokens=False)["input_ids"])
    free_text = _allowed(compiled, prefix, width)
    assert len(free_text) > 100  # free text allows most of the vocabulary...
    # ...but no control token and no padding row; only the stop token (the answer may end here)
    assert free_text & controls == {tokenizer.eos_token_id}
    complete = tuple(tokenizer(text[: -len(" Context: a")], add_special_tokens=False)["input_ids"])
    assert tokenizer.eos_token_id in _allowed(compiled, complete, width)  # stop stays allowed


def test_processor_follows_prefixes_not_rows(tokenizer) -> None:
    """Beam search reorders and duplicates rows between steps; the mask must follow each row's
    own generated tokens."""
    width = len(tokenizer)
    compiled = _compiled(tokenizer)
    processor = GrammarLogitsProcessor(lambda vocab_size: compiled)
    rng = random.Random(1)
    prompt = torch.full((3, 5), 7)
    rows: list[tuple[int, ...]] = [(), (), ()]
    for step in range(40):
        input_ids = torch.cat([prompt, torch.tensor([list(r) for r in rows]).reshape(3, step)], 1)
        scores = processor(input_ids, torch.zeros(3, width))
        next_rows = []
        for row, prefix in enumerate(rows):
            allowed = set(torch.nonzero(scores[row] == 0).flatten().tolist())
            assert allowed == _allowed(compiled, prefix, width), (step, row)
            next_rows.append(prefix + (rng.choice(sorted(allowed - {tokenizer.eos_token_id})),))
        # beam-search-like shuffle: row 0 forks into two rows, row 2 is dropped, order changes
        parent = next_rows[0][:-1]
        allowed = _allowed(compiled, parent, width) - {tokenizer.eos_token_id}
        rows = [next_rows[1], parent + (rng.choice(sorted(allowed)),), next_rows[0]]


def test_processor_lets_dead_rows_only_stop(tokenizer) -> None:
    compiled = _compiled(tokenizer)
    processor = GrammarLogitsProcessor(lambda vocab_size: compiled)
    width = len(tokenizer)
    processor(torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, width))
    bad = tokenizer.convert_tokens_to_ids("<image>")  # never allowed: this row is dead
    scores = processor(torch.tensor([[0, 0, bad]]), torch.zeros(1, width))
    assert torch.isfinite(scores[0]).nonzero().flatten().tolist() == [tokenizer.eos_token_id]


def test_width_comes_from_the_logits(tiny_smolvlm_dir) -> None:
    from roadscene.models import get_family

    loaded = get_family("smolvlm").load(tiny_smolvlm_dir)
    assert model_vocab_size(loaded.model) == loaded.model.get_output_embeddings().weight.shape[0]
    processors = structured_logits_processor(
        loaded.processor, [loaded.processor.tokenizer.eos_token_id]
    )
    grammar_processor = processors[0]
    width = len(loaded.processor.tokenizer) + 32
    grammar_processor(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, width))
    assert grammar_processor.compiled_grammar.tokenizer_info.vocab_size == width
    with pytest.raises(ValueError, match="logits width"):
        grammar_processor(torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, width - 1))


def test_json_view_is_valid_against_the_annotation_schema(sensation_dir) -> None:
    schemas = [
        form_json_schema(),
        json.loads((sensation_dir.parent / "design" / "annotation-schema.json").read_text()),
    ]
    rng = random.Random(2)
    for _ in range(100):
        scene = _random_scene(rng)
        text = render_response(scene, "A street.")
        annotation = answer_annotation(text, "img.jpg")
        for schema in schemas:
            jsonschema.validate(annotation, schema)
        assert annotation["image"] == "img.jpg"
        assert annotation["object_present"] == ("Yes" if any(scene.near.values()) else "No")
    # even an answer missing every field gives a valid form
    for schema in schemas:
        jsonschema.validate(answer_annotation("", "img.jpg"), schema)


def test_prediction_views_carry_the_cue() -> None:
    text = (
        "Sidewalk: left. Road: front. RoadVsSidewalk: crossing_front. Nearby: no important "
        "close objects visible."
    )
    views = prediction_views(text, "a.jpg", json_view=True)
    assert views["cue"]["action"] == "stop_crossing"
    assert views["annotation"]["road_pos"] == "Front"
    assert set(prediction_views(text, "a.jpg")) == {"cue"}
    assert parse_response(text).complete


def test_budget_closes_the_nearby_list_in_time(tokenizer) -> None:
    """With few tokens left, a list may not start a new item; outside the budget it may."""
    compiled = _compiled(tokenizer)
    width = len(tokenizer)
    text = "Sidewalk: left. Road: left. RoadVsSidewalk: unknown. Nearby: a car close on the left"
    prefix = tuple(tokenizer(text, add_special_tokens=False)["input_ids"])
    semicolon = {t for t in range(width) if ";" in tokenizer.decode([t])}
    prompt = torch.zeros(1, 3, dtype=torch.long)

    def allowed(max_new_tokens: int) -> set[int]:
        processor = GrammarLogitsProcessor(
            lambda vocab_size: compiled, max_new_tokens=max_new_tokens, closing_reserve=66
        )
        processor(prompt, torch.zeros(1, width))
        for length in range(1, len(prefix) + 1):
            ids = torch.cat([prompt, torch.tensor([prefix[:length]])], 1)
            scores = processor(ids, torch.zeros(1, width))
        return set(torch.nonzero(scores[0] == 0).flatten().tolist())

    roomy, tight = allowed(1000), allowed(len(prefix) + 40)
    assert roomy & semicolon  # "; a person close ..." may follow
    assert not tight & semicolon  # only the end of this phrase: "." (or more of "left")
    assert tight and tight <= roomy
