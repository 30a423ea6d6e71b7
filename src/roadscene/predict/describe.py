"""Describe single images with a loaded model: structured answer, fields, cue, caption, latency.

What `roadscene describe` prints; one image per `generate` call so the latency is per image.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roadscene.data.examples import VisionTextExample
from roadscene.data.images import open_image
from roadscene.errors import InputError
from roadscene.predict.predictor import ModelCard, Predictor
from roadscene.predict.settings import Decoding
from roadscene.predict.views import answer_annotation
from roadscene.targets import (
    OBJECT_NAMES,
    GrammarOptions,
    NavigationCue,
    ParsedResponse,
    cue_for_parsed,
    parse_response,
)


@dataclass
class ImageDescription:
    """One described image."""

    image: str
    prompt: str
    answer: str
    parsed: ParsedResponse
    cue: NavigationCue
    annotation: dict[str, Any]
    latency_s: float

    def nearby(self) -> list[str]:
        """Close objects as short phrases: `2 people (left, center)`."""
        phrases = []
        for cls, mention in self.parsed.near.items():
            singular, plural = OBJECT_NAMES[cls]
            count = mention.count or len(mention.positions) or 1
            name = singular if count == 1 else plural
            phrases.append(f"{count} {name} ({', '.join(mention.positions) or 'position unknown'})")
        return phrases

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "prompt": self.prompt,
            "cue": self.cue.to_dict(),
            "sidewalk": self.parsed.sidewalk,
            "road": self.parsed.road,
            "relation": self.parsed.relation,
            "nearby": self.parsed.to_dict()["near"],
            "caption": self.parsed.context,
            "answer": self.answer,
            "annotation": self.annotation,
            "latency_s": round(self.latency_s, 4),
        }

    def to_text(self) -> str:
        lines = [
            f"{self.image}",
            f"  cue:      {self.cue.text}",
            f"  fields:   sidewalk {self.parsed.sidewalk}, road {self.parsed.road}, "
            f"relation {self.parsed.relation}",
            f"  nearby:   {'; '.join(self.nearby()) or 'nothing close'}",
            f"  caption:  {self.parsed.context or '-'}",
            f"  latency:  {self.latency_s:.3f} s",
        ]
        return "\n".join(lines)


def describe_prompt(card: ModelCard) -> str:
    """The question to ask a model for a structured description: the prompt it was trained on.
    A model trained on another task (free captions) cannot give fields or a cue: InputError."""
    if card.task is not None and card.task != "bvpi":
        raise InputError(
            f"describe needs a model trained on structured answers (the bvpi task); this one was "
            f"trained on '{card.task}'",
            field="model",
        )
    return card.prompt_for("bvpi")


def describe_images(
    images: Sequence[str | Path],
    model: ModelCard | Predictor,
    *,
    num_beams: int = 1,
    max_new_tokens: int = 192,
    relation_from_fields: bool = False,
    device: str | None = None,
    prompt: str | None = None,
) -> Iterator[ImageDescription]:
    """Yield the description of each image (grammar-constrained answers), in order.

    The prompt is the one the model was trained on (saved with it), unless `prompt` is given.
    Every image is opened before the model loads, so a missing or unreadable file fails at once
    (one error naming it) without partial output.
    """
    card = model.card if isinstance(model, Predictor) else model
    trained_prompt = describe_prompt(card)  # checks the task even when a prompt is given
    question = prompt if prompt is not None else trained_prompt
    opened = [(str(path), open_image(Path(path))) for path in images]
    predictor = model if isinstance(model, Predictor) else Predictor.load(card, device=device)
    decoding = Decoding(
        num_beams=num_beams,
        max_new_tokens=max_new_tokens,
        grammar=GrammarOptions(relation_from_fields=relation_from_fields),
    )
    predictor.prepare(decoding)
    for name, image in opened:
        example = VisionTextExample(images=[image], prompt=question, image_ref=name)
        start = time.perf_counter()
        [answer] = predictor.generate_batch([example], decoding)
        latency = time.perf_counter() - start
        parsed = parse_response(answer)
        yield ImageDescription(
            image=name,
            prompt=question,
            answer=answer,
            parsed=parsed,
            cue=cue_for_parsed(parsed),
            annotation=answer_annotation(answer, Path(name).name),
            latency_s=latency,
        )
