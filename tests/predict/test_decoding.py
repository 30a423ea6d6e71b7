"""Grammar-constrained decoding (`roadscene.predict.decoding`): the answer grammar compiled per
tokenizer and the prefix-keyed grammar logits processor (fast unit tests on the tiny SmolVLM
tokenizer). The grammar itself is tested in tests/targets/test_grammar.py."""

from __future__ import annotations

import random

import pytest
import torch

from roadscene.predict.decoding import (
    GrammarLogitsProcessor,
    compile_answer_grammar,
    model_vocab_size,
    structured_logits_processor,
)
from roadscene.targets import GrammarOptions

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
