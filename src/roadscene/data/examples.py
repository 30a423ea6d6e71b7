"""What a model family consumes: one example = its image(s) or its clip, the user prompt and, for
training or scoring, the answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from roadscene.data.images import open_image

if TYPE_CHECKING:
    from PIL import Image

    from roadscene.data.clips import Clip
    from roadscene.data.records import ExampleRecord


@dataclass
class VisionTextExample:
    """One item: its image(s) or its clip, the user prompt and (for training / scoring) the
    answer.

    A clip example carries `clip` (sampled frames with their timestamps) and no `images`; each
    model family encodes it through its own video path (`ModelFamily.supports_clips`).
    `image_ref` is the image path as written in the data file (echoed into predictions);
    `meta` carries extra fields from the data file (line number, target fields...);
    `demonstrations` are solved examples shown before this one (few-shot, for families that
    take them).
    """

    images: list[Image.Image]
    prompt: str
    answer: str | None = None
    image_ref: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    demonstrations: list[VisionTextExample] = field(default_factory=list)
    clip: Clip | None = None

    def __post_init__(self) -> None:
        if self.images and self.clip is not None:
            raise ValueError("an example holds images or a clip, not both")

    @property
    def frames(self) -> list[Image.Image]:
        """Every picture the example shows: its clip's frames, else its images."""
        return list(self.clip.frames) if self.clip is not None else list(self.images)


def to_example(record: ExampleRecord, *, with_answer: bool = True) -> VisionTextExample:
    """The record with its image or clip opened (an InputError names a missing or unreadable
    one)."""
    if record.clip is not None:
        clip = record.clip.open(source=record.source, line=record.line)
        images: list[Image.Image] = []
    else:
        clip = None
        images = [open_image(record.image_path, source=record.source, line=record.line)]
    return VisionTextExample(
        images=images,
        clip=clip,
        prompt=record.prompt,
        answer=record.answer if with_answer else None,
        image_ref=record.image,
        meta={"line": record.line, **record.meta},
    )


class RecordExamples:
    """Records as a sequence of examples, each image opened when its item is asked for."""

    def __init__(self, records: list[ExampleRecord], *, with_answer: bool = True) -> None:
        self.records = records
        self.with_answer = with_answer

    @property
    def prompts(self) -> list[str]:
        """The prompts the examples carry."""
        return [record.prompt for record in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> VisionTextExample:
        return to_example(self.records[index], with_answer=self.with_answer)
