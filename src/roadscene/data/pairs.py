"""Preference pairs: rows of `bvpi_dpo_{split}.jsonl` (the published exports: chosen = the
structured answer, rejected = the free caption) or of the on-policy pairs `roadscene data pairs`
writes (rejected = the model's own wrong answer). Read as records, image not yet opened.

A row holds `image`, `prompt`, `chosen` and `rejected` (non-empty strings, chosen != rejected);
other keys (`sidewalk_pos`, `mistakes`, ...) are kept as `meta`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from roadscene.data.images import resolve_image
from roadscene.errors import InputError
from roadscene.io import read_records


@dataclass
class PairRecord:
    """One preference pair before its image is read."""

    clip: ClassVar[None] = None  # pairs are about one image, never a clip (`check_images`)

    image: str  # as written in the data file
    image_path: Path  # resolved
    prompt: str
    chosen: str
    rejected: str
    source: Path
    line: int
    meta: dict[str, Any] = field(default_factory=dict)


def pair_file(split: str, data_dir: str | Path) -> Path:
    """The published pair file of a split."""
    return Path(data_dir) / f"bvpi_dpo_{split}.jsonl"


def load_pairs(
    file: str | Path, image_root: str | Path, *, limit: int | None = None
) -> list[PairRecord]:
    """Rows of a pair file; a missing or empty field, or a pair whose two answers are the same
    (nothing to prefer), is an InputError naming the line."""
    file = Path(file)
    pairs: list[PairRecord] = []
    for line, row in read_records(file):
        values = {}
        for key in ("image", "prompt", "chosen", "rejected"):
            value = row.get(key)
            if not isinstance(value, str) or not value.strip():
                raise InputError(f"missing or empty '{key}'", path=file, line=line, field=key)
            values[key] = value
        if values["chosen"].strip() == values["rejected"].strip():
            raise InputError(
                "chosen and rejected are the same answer", path=file, line=line, field="rejected"
            )
        pairs.append(
            PairRecord(
                **values,
                image_path=resolve_image(values["image"], image_root),
                source=file,
                line=line,
                meta={k: v for k, v in row.items() if k not in values},
            )
        )
        if limit is not None and len(pairs) >= limit:
            break
    return pairs
