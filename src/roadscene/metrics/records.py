"""Prediction records: reading prediction files, cleaning texts, joining them to a split.

A prediction file is a JSON array or JSONL of objects. Image key: `image` or `image_path`.
Prediction text: the first present of `text`, `response`, `prediction`. Extra keys are ignored.
Joining is by image base name (`roadscene.schema.image_key`), the key the SENSATION files share.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from roadscene.errors import InputError
from roadscene.io import read_records
from roadscene.schema import image_key

IMAGE_KEYS: tuple[str, ...] = ("image", "image_path")
TEXT_KEYS: tuple[str, ...] = ("text", "response", "prediction")
DUPLICATE_POLICIES: tuple[str, ...] = ("error", "first", "last")
CLEAN_MODES: tuple[str, ...] = ("auto", "none")
CHAT_MARKER = "Assistant:"

DuplicatePolicy = Literal["error", "first", "last"]
CleanMode = Literal["auto", "none"]


@dataclass(frozen=True)
class PredictionRecord:
    """One prediction: the image it describes, its raw text, and where it came from."""

    image: str
    text: str
    line: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return image_key(self.image)


def check_choice(name: str, value: str, allowed: Iterable[str]) -> None:
    """Fail with a message naming the bad value and the allowed ones."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise InputError(f"{name} must be one of {', '.join(allowed)}; got '{value}'", field=name)


def clean_text(text: str, mode: CleanMode = "auto") -> str:
    """`auto`: keep what follows the last chat marker `Assistant:` (stripped), when present."""
    check_choice("clean", mode, CLEAN_MODES)
    if mode == "auto" and CHAT_MARKER in text:
        return text.rsplit(CHAT_MARKER, 1)[1].strip()
    return text


def _first_key(obj: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    return next((k for k in keys if k in obj), None)


def record_from_object(
    obj: Mapping[str, Any], *, path: str | Path | None = None, line: int | None = None
) -> PredictionRecord:
    """A PredictionRecord from one JSON object; a missing or non-string field is an InputError."""
    image_field = _first_key(obj, IMAGE_KEYS)
    if image_field is None:
        raise InputError(
            f"no image key (expected one of {', '.join(IMAGE_KEYS)})", path=path, line=line
        )
    text_field = _first_key(obj, TEXT_KEYS)
    if text_field is None:
        raise InputError(
            f"no prediction text (expected one of {', '.join(TEXT_KEYS)})", path=path, line=line
        )
    image, text = obj[image_field], obj[text_field]
    if not isinstance(image, str) or not image.strip():
        raise InputError(
            "image must be a non-empty string", path=path, line=line, field=image_field
        )
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise InputError(
            f"expected a string, got {type(text).__name__}", path=path, line=line, field=text_field
        )
    extra = {k: v for k, v in obj.items() if k not in (image_field, text_field)}
    return PredictionRecord(image=image, text=text, line=line, extra=extra)


def read_predictions(path: str | Path) -> list[PredictionRecord]:
    """All records of a prediction file, in file order (line numbers kept for messages)."""
    return [record_from_object(obj, path=path, line=line) for line, obj in read_records(path)]


def as_records(
    predictions: str | Path | Iterable[PredictionRecord | Mapping[str, Any] | tuple[str, str]],
) -> tuple[list[PredictionRecord], str | None]:
    """Predictions given as a file, PredictionRecords, JSON-like dicts or (image, text) pairs.

    Returns the records and the file path (None for in-memory records).
    """
    if isinstance(predictions, str | Path):
        return read_predictions(predictions), str(predictions)
    records: list[PredictionRecord] = []
    for index, item in enumerate(predictions, start=1):
        if isinstance(item, PredictionRecord):
            records.append(item)
        elif isinstance(item, Mapping):
            records.append(record_from_object(item, path="<predictions>", line=index))
        elif isinstance(item, tuple) and len(item) == 2:
            records.append(PredictionRecord(image=str(item[0]), text=str(item[1]), line=index))
        else:
            raise InputError(
                f"cannot read prediction #{index} of type {type(item).__name__}",
                path="<predictions>",
                line=index,
            )
    return records, None


@dataclass
class JoinedPredictions:
    """Predictions joined to the images a split asks for.

    `by_key` maps each wanted image key to its prediction (absent = missing); the counts say what
    was dropped or missing, so nothing disappears silently.
    """

    by_key: dict[str, PredictionRecord]
    missing: list[str]
    unknown_images: list[str]
    duplicates: list[str]
    n_records: int

    def counts(self) -> dict[str, Any]:
        return {
            "prediction_records": self.n_records,
            "missing": len(self.missing),
            "unknown_images": len(self.unknown_images),
            "duplicates": len(self.duplicates),
            "missing_examples": self.missing[:10],
            "unknown_image_examples": self.unknown_images[:10],
            "duplicate_examples": self.duplicates[:10],
        }


def join_predictions(
    records: list[PredictionRecord],
    wanted_keys: Iterable[str],
    *,
    on_duplicate: DuplicatePolicy = "error",
    source: str | None = None,
) -> JoinedPredictions:
    """Join predictions to the wanted image keys (base names).

    Duplicates (two records for one image) are an InputError naming the image and both lines,
    unless `on_duplicate` is `first` or `last`. Records for images outside `wanted_keys` are
    listed in `unknown_images` and ignored.
    """
    check_choice("on_duplicate", on_duplicate, DUPLICATE_POLICIES)
    wanted = list(dict.fromkeys(wanted_keys))
    wanted_set = set(wanted)
    by_key: dict[str, PredictionRecord] = {}
    duplicates: list[str] = []
    unknown: list[str] = []
    for record in records:
        key = record.key
        if key not in wanted_set:
            unknown.append(record.image)
            continue
        if key in by_key:
            if on_duplicate == "error":
                raise InputError(
                    f"duplicate prediction for image '{record.image}' (first at line "
                    f"{by_key[key].line}); choose a policy with --on-duplicate first|last",
                    path=source or "<predictions>",
                    line=record.line,
                )
            duplicates.append(record.image)
            if on_duplicate == "first":
                continue
        by_key[key] = record
    missing = [k for k in wanted if k not in by_key]
    return JoinedPredictions(by_key, missing, unknown, duplicates, len(records))
