"""Exporting task data in the conversational format other fine-tuning tools read.

One row per example: `{"messages": [user turn (an image part, then the prompt), assistant turn
(the answer)], "images": [path]}`, the layout TRL's vision SFT and similar tools take, as JSONL
(`export_messages`) or as a Hugging Face `datasets` dataset saved on disk with the images
embedded (`save_hf_dataset`, needs the optional `datasets`). Image paths in the JSONL are
relative to the file's own folder, so the file moves with its images; `roadscene train` reads
such a file as a task input (`data.train_file`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from roadscene.data.records import ExampleRecord, load_records
from roadscene.errors import InputError

FORMATS: tuple[str, ...] = ("messages", "hf-dataset")


def message_row(record: ExampleRecord, image: str) -> dict[str, Any]:
    """One example as a conversation: the user turn holds the image and the prompt."""
    return {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "text", "text": record.prompt}],
            },
            {"role": "assistant", "content": [{"type": "text", "text": record.answer or ""}]},
        ],
        "images": [image],
    }


def _records(task: str, data: Path, image_root: Path | None) -> list[ExampleRecord]:
    records = load_records(task, data, image_root if image_root is not None else data.parent)
    for record in records:
        if record.clip is not None:
            raise InputError(
                f"the conversational format holds one image per row; this row names a "
                f"{record.clip.kind} clip (row {data}:{record.line})",
                path=record.image_path,
            )
        if not record.image_path.is_file():
            raise InputError(f"image not found (row {data}:{record.line})", path=record.image_path)
    return records


def export_messages(
    task: str, data: str | Path, out: str | Path, *, image_root: str | Path | None = None
) -> int:
    """Write `data` (a task file) as conversational JSONL to `out`; returns the row count."""
    from roadscene.io import atomic_write, dumps_line

    data, out = Path(data), Path(out)
    records = _records(task, data, Path(image_root) if image_root is not None else None)
    base = out.resolve().parent
    with atomic_write(out) as handle:
        for record in records:
            image = os.path.relpath(record.image_path.resolve(), base)
            handle.write(dumps_line(message_row(record, Path(image).as_posix())) + "\n")
    return len(records)


def save_hf_dataset(
    task: str, data: str | Path, out_dir: str | Path, *, image_root: str | Path | None = None
) -> int:
    """Save `data` as a `datasets.Dataset` (columns `messages`, `images`; images embedded) in
    `out_dir` (`datasets.load_from_disk` reads it back); returns the row count."""
    try:
        from datasets import Dataset, Features, Image, List, Value
    except ImportError:
        raise InputError(
            "saving a Hugging Face dataset needs `datasets`; install it with pip install "
            "'roadscene[hf]'"
        ) from None
    from roadscene.io import atomic_dir

    data = Path(data)
    records = _records(task, data, Path(image_root) if image_root is not None else None)
    part = {"type": Value("string"), "text": Value("string")}
    features = Features(
        {
            "messages": List({"role": Value("string"), "content": List(part)}),
            "images": List(Image()),
        }
    )
    rows = [message_row(record, str(record.image_path.resolve())) for record in records]
    dataset = Dataset.from_list(rows, features=features)
    with atomic_dir(out_dir) as tmp:
        dataset.save_to_disk(str(tmp))  # image files are embedded into the arrow data
    return len(rows)
