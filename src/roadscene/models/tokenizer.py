"""Tokenizers trained locally for tiny models (nothing comes from the hub), and the corpus they
are trained on."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from roadscene.errors import InputError


def train_bpe(texts: Sequence[str], *, vocab_size: int, special_tokens: Sequence[str]) -> Any:
    """A byte-level BPE `tokenizers.Tokenizer` trained on `texts`; `special_tokens` take the first
    ids, in order."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
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
    from roadscene.io import read_records, read_text

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
    return [line for line in read_text(path).splitlines() if line.strip()]
