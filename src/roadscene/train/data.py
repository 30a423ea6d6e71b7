"""Task datasets: rows of the files `roadscene data build` writes -> examples -> tensors.

Tasks
- `caption`: `captions_{split}.json` (array of {image, caption}); prompt "Describe this road
  scene."; answer = caption.
- `bvpi`: `bvpi_sft_{split}.jsonl` (image, prompt, response, ...); answer = response.
- `annotated`: `bvpi_sft_{split}.jsonl`; the prompt carries the annotation (fields and near/far
  objects, parsed from the response) as JSON; the answer is the navigation cue for those fields
  followed by the context caption (annotation-conditioned captioning).

Image paths are resolved against `image_root` (absolute paths are kept). A missing or unreadable
image raises InputError naming it; with `on_bad_image="skip"` the row is skipped and counted.
Never a substituted image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from roadscene.errors import InputError
from roadscene.io import read_records

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from roadscene.models.base import ModelFamily, VisionTextExample

ANNOTATED_PROMPT = (
    "Annotation: {annotation}\nGiven this annotation, tell a blind pedestrian what to do, then "
    "describe the scene."
)


@dataclass
class ExampleRecord:
    """One data row before its image is read."""

    image: str  # as written in the data file
    image_path: Path  # resolved
    prompt: str
    answer: str | None
    source: Path
    line: int
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class BadImages:
    """Rows skipped with `on_bad_image=skip`: (data file, line, image path, reason)."""

    rows: list[tuple[str, int, str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)


def task_file(task: str, split: str, data_dir: str | Path) -> Path:
    """The data file a task reads for a split."""
    name = f"captions_{split}.json" if task == "caption" else f"bvpi_sft_{split}.jsonl"
    return Path(data_dir) / name


def resolve_image(image: str, image_root: str | Path) -> Path:
    path = Path(image)
    return path if path.is_absolute() else Path(image_root) / path


def _require(record: dict[str, Any], key: str, path: Path, line: int) -> str:
    value = record.get(key)
    if not isinstance(value, str) or (key != "caption" and not value):
        raise InputError(f"missing or non-string '{key}'", path=path, line=line, field=key)
    return value


def annotation_json(response: str) -> tuple[str, str]:
    """(annotation as compact JSON, answer) for the `annotated` task.

    The annotation (fields, near/far objects with counts and positions) is parsed from the
    response; the answer is the navigation cue those fields give (`roadscene.predict.cue`)
    followed by the context caption.
    """
    from roadscene.predict.cue import cue_for_parsed
    from roadscene.targets import parse_response

    parsed = parse_response(response)
    view = parsed.to_dict()
    annotation = {key: view[key] or "unknown" for key in ("sidewalk", "road", "relation")}
    annotation |= {"near": view["near"], "far": view["far"]}
    answer = f"{cue_for_parsed(parsed).text} {parsed.context or ''}".strip()
    return json.dumps(annotation, separators=(",", ":")), answer


def load_records(
    task: str,
    file: str | Path,
    image_root: str | Path,
    *,
    limit: int | None = None,
    require_answer: bool = True,
) -> list[ExampleRecord]:
    """Rows of a task file as records (answers required for training, optional for predict)."""
    from roadscene.targets import CAPTION_PROMPT, DEFAULT_PROMPT

    file = Path(file)
    records: list[ExampleRecord] = []
    for line, row in read_records(file):
        image = row.get("image", row.get("image_path"))
        if not isinstance(image, str) or not image:
            raise InputError("missing or non-string 'image'", path=file, line=line, field="image")
        if task == "caption":
            prompt = row.get("prompt") if isinstance(row.get("prompt"), str) else CAPTION_PROMPT
            answer = row.get("caption", row.get("target"))
            if require_answer:
                answer = _require(row, "caption" if "caption" in row else "target", file, line)
        elif task == "bvpi":
            prompt = row.get("prompt") if isinstance(row.get("prompt"), str) else DEFAULT_PROMPT
            answer = row.get("response")
            if require_answer:
                answer = _require(row, "response", file, line)
        elif task == "annotated":
            response = _require(row, "response", file, line)
            annotation, answer = annotation_json(response)
            prompt = ANNOTATED_PROMPT.format(annotation=annotation)
        else:
            raise InputError(f"unknown task '{task}'; allowed: caption, bvpi, annotated")
        meta = {k: v for k, v in row.items() if k not in {"image", "prompt"}}
        records.append(
            ExampleRecord(
                image=image,
                image_path=resolve_image(image, image_root),
                prompt=prompt,
                answer=answer if isinstance(answer, str) else None,
                source=file,
                line=line,
                meta=meta,
            )
        )
        if limit is not None and len(records) >= limit:
            break
    return records


def open_image(path: Path, *, source: Path | None = None, line: int | None = None) -> Image.Image:
    """The image as RGB; missing or unreadable -> InputError naming the image (and data row)."""
    from PIL import Image, UnidentifiedImageError

    where = f" (row {source}:{line})" if source is not None else ""
    if not path.is_file():
        raise InputError(f"image not found{where}", path=path)
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise InputError(f"unreadable image: {err}{where}", path=path) from None


def check_images(
    records: list[ExampleRecord], on_bad_image: Literal["error", "skip"]
) -> tuple[list[ExampleRecord], BadImages]:
    """Open every image once up front so a bad one fails before training starts."""
    kept: list[ExampleRecord] = []
    bad = BadImages()
    for record in records:
        try:
            open_image(record.image_path, source=record.source, line=record.line)
        except InputError as err:
            if on_bad_image == "error":
                raise
            bad.rows.append((str(record.source), record.line, str(record.image_path), err.reason))
            continue
        kept.append(record)
    return kept, bad


def to_example(record: ExampleRecord, *, with_answer: bool = True) -> VisionTextExample:
    from roadscene.models.base import VisionTextExample

    return VisionTextExample(
        images=[open_image(record.image_path, source=record.source, line=record.line)],
        prompt=record.prompt,
        answer=record.answer if with_answer else None,
        image_ref=record.image,
        meta={"line": record.line, **record.meta},
    )


class EncodedDataset:
    """A map-style dataset of `family.encode` features (torch Dataset protocol).

    Encoding (chat template, tokenisation, image processing) happens once per example per epoch,
    or once in total with `cache=True`; the collator then only pads.
    """

    def __init__(
        self, records: list[ExampleRecord], family: ModelFamily, processor: Any, *, cache: bool
    ) -> None:
        self.records = records
        self.family = family
        self.processor = processor
        self.cache: dict[int, dict[str, torch.Tensor]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        features = self.family.encode(self.processor, to_example(self.records[index]))
        if self.cache is not None:
            self.cache[index] = features
        return features
