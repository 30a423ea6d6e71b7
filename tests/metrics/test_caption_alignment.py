"""Item i is always scored against reference i, whatever a text holds; a --split that would do
nothing is an error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roadscene.errors import InputError
from roadscene.metrics.captions import evaluate_captions
from roadscene.metrics.tokenize import one_line_text, ptb_tokenize

pytestmark = pytest.mark.slow  # Java

SEPARATORS = ["\r", "\r\n", "\n", "\u2028", "\u2029", "\u0085", "\v", "\f", "\x1c", "\x00"]


def test_separators_inside_a_text_never_shift_later_items() -> None:
    from pycocoevalcap.cider.cider import Cider

    predictions = ["a red car on the road", "a wide sidewalk with trees", "people crossing"]
    references = ["a red car parked", "a sidewalk with some trees", "two people crossing"]
    dirty = [
        text
        for separator in SEPARATORS
        for text in [predictions[0].replace(" on ", f" on{separator}"), *predictions[1:]]
    ]
    # one tokenizer run: references, clean predictions, then each dirty variant in turn
    tokens = ptb_tokenize([*references, *predictions, *dirty])
    clean = tokens[:6]
    for index, separator in enumerate(SEPARATORS):
        start = 6 + 3 * index
        assert tokens[start : start + 3] == clean[3:], repr(separator)
    n = len(references)
    gts = {i: [clean[i]] for i in range(n)}
    res = {i: [clean[n + i]] for i in range(n)}
    _, per_item = Cider().compute_score(gts, res)
    assert per_item[1] > 0  # item 2 matches reference 2, not reference 3


@settings(max_examples=4, deadline=None)
@given(texts=st.lists(st.text(max_size=30), min_size=20, max_size=60))
def test_one_output_line_per_text_whatever_the_texts(texts) -> None:
    assert len(ptb_tokenize(texts)) == len(texts)
    assert all("\n" not in one_line_text(t) and "\r" not in one_line_text(t) for t in texts)


def test_the_pycocoevalcap_tokens_are_kept_for_ordinary_texts() -> None:
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    texts = ["A man, a plan -- a canal: Panama!", "It's 3.5 m (about 11 ft) wide.", "", "Ok."]
    theirs = PTBTokenizer().tokenize({i: [{"caption": t}] for i, t in enumerate(texts)})
    assert ptb_tokenize(texts) == [theirs[i][0] for i in range(len(texts))]


def test_split_without_references_is_an_error(tmp_path: Path, cli_in_process) -> None:
    predictions = tmp_path / "p.jsonl"
    predictions.write_text(json.dumps({"image": "a.jpg", "text": "x", "target": "y"}) + "\n")
    code, _, err = cli_in_process("evaluate", "captions", "--predictions", predictions,
                                  "--split", "nonsense")  # fmt: skip
    assert code == 2 and "--split chooses the references of one split" in err
    references = tmp_path / "captions_test.json"
    references.write_text(json.dumps([{"image": "a.jpg", "caption": "y"}]))
    with pytest.raises(InputError, match="no reference here names a split"):
        evaluate_captions(predictions, references, split="nonsense")
