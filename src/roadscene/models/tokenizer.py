"""Tokenizers trained locally for tiny models (nothing comes from the hub), and the corpus they
are trained on."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from roadscene.errors import InputError


def train_bpe(
    texts: Sequence[str],
    *,
    vocab_size: int,
    special_tokens: Sequence[str],
    split_pattern: str | None = None,
) -> Any:
    """A byte-level BPE `tokenizers.Tokenizer` trained on `texts`; `special_tokens` take the first
    ids, in order. `split_pattern` is a pre-tokenizer regex applied before the byte-level step
    (as GPT-4 / Qwen tokenizers split words, numbers and punctuation), with NFC normalisation."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    if split_pattern is None:
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        bpe.normalizer = normalizers.NFC()
        bpe.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(split_pattern), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        list(texts),
        trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(special_tokens),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    return bpe


def read_corpus(path: str | Path) -> list[str]:
    """Texts for a tiny tokenizer: a JSON/JSONL data file (its `response`, `caption`, `prompt`
    and `target` strings) or a plain text file (one text per line)."""
    from roadscene.io import read_records, read_text, split_lines

    path = Path(path)
    if path.suffix in {".json", ".jsonl"}:
        texts = []
        for _, record in read_records(path):
            texts.extend(
                str(record[key])
                for key in ("prompt", "response", "caption", "target")
                if isinstance(record.get(key), str)
            )
        if not texts:
            raise InputError(
                "no 'prompt', 'response', 'caption' or 'target' strings to train on", path=path
            )
        return texts
    return [line for line in split_lines(read_text(path)) if line.strip()]
