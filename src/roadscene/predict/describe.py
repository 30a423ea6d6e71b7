"""Describe images and clips with a loaded model: structured answer, fields, cue, caption,
latency.

What `roadscene describe` prints; one image (or one window of a clip) per `generate` call so the
latency is per answer. A video or a folder of frames is described window by window
(`roadscene.data.windows`: consecutive spans of `window_s` seconds, each sampled to the frames
the model takes); each window's cue goes through a `CueAnnouncer`, so a cue repeated from one
window to the next is marked as not to be spoken again (spoken: when its action changes, its
urgency rises or something starts approaching).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from roadscene.data.clips import DEFAULT_CLIP_FRAMES, DEFAULT_FRAMES_FPS
from roadscene.data.examples import VisionTextExample
from roadscene.data.images import open_image
from roadscene.data.windows import (
    VIDEO_SUFFIXES,
    ClipWindow,
    folder_frames,
    frames_window_plan,
    frames_windows,
    video_window_plan,
    video_windows,
)
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
from roadscene.targets.announce import CueAnnouncer, SpeakDecision

#: Window length of `describe` on a clip: the synthetic training clips' 2 s.
DEFAULT_WINDOW_SECONDS = 2.0


@dataclass
class ImageDescription:
    """One described image, or one window of a clip (`window`: its span in seconds, and
    `decision`: whether its cue is to be spoken)."""

    image: str
    prompt: str
    answer: str
    parsed: ParsedResponse
    cue: NavigationCue
    annotation: dict[str, Any]
    latency_s: float
    window: tuple[float, float] | None = None
    decision: SpeakDecision | None = None

    @property
    def spoken(self) -> bool:
        """Whether the cue is to be said (always, for an image)."""
        return self.decision is None or self.decision.say

    @property
    def name(self) -> str:
        if self.window is None:
            return self.image
        return f"{self.image} [{self.window[0]:.1f}-{self.window[1]:.1f} s]"

    def nearby(self) -> list[str]:
        """Close objects as short phrases: `2 people (left, center)`, `a person (center),
        approaching`."""
        phrases = []
        for cls, mention in self.parsed.near.items():
            singular, plural = OBJECT_NAMES[cls]
            count = mention.count or len(mention.positions) or 1
            name = singular if count == 1 else plural
            phrase = f"{count} {name} ({', '.join(mention.positions) or 'position unknown'})"
            phrases.append(f"{phrase}, {mention.motion}" if mention.motion else phrase)
        return phrases

    def to_dict(self) -> dict[str, Any]:
        out = {
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
        if self.window is not None:
            out["window"] = [round(self.window[0], 3), round(self.window[1], 3)]
        if self.decision is not None:
            out["spoken"] = self.decision.say
            out["speak_reason"] = self.decision.reason
        return out

    def to_text(self) -> str:
        said = ""
        if self.decision is not None:
            said = f"  (said: {self.decision.reason})" if self.decision.say else "  (not repeated)"
        lines = [
            self.name,
            f"  cue:      {self.cue.text}{said}",
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


@dataclass
class _Input:
    """One thing to describe: an image, or a clip split into windows."""

    name: str
    image: Any = None  # an opened image
    windows: Callable[[], Iterator[ClipWindow]] | None = None


def open_inputs(
    paths: Sequence[str | Path], *, clip_frames: int, window_s: float, fps: float
) -> tuple[list[_Input], list[str]]:
    """Every input checked before any model work: images opened, videos decoded once to time
    their frames, frame folders listed; notes on what a clip leaves out (a last, short window)."""
    inputs, notes = [], []
    for path in map(Path, paths):
        if path.is_dir():
            frames = folder_frames(path)
            plan = frames_window_plan(frames, clip_frames, window_s, fps)
            inputs.append(_Input(str(path), windows=lambda f=frames, p=plan: frames_windows(f, p)))
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            plan = video_window_plan(path, clip_frames, window_s)
            inputs.append(_Input(str(path), windows=lambda v=path, p=plan: video_windows(v, p)))
        else:
            inputs.append(_Input(str(path), image=open_image(path)))
            continue
        if plan.skipped_frames:
            notes.append(
                f"{path}: the last {plan.skipped_seconds:.1f} s ({plan.skipped_frames} frames) "
                f"make no full window of {clip_frames} frames and are not described"
            )
    return inputs, notes


def describe_images(
    images: Sequence[str | Path],
    model: ModelCard | Predictor,
    *,
    num_beams: int = 1,
    max_new_tokens: int = 192,
    relation_from_fields: bool = False,
    device: str | None = None,
    prompt: str | None = None,
    window_s: float = DEFAULT_WINDOW_SECONDS,
    fps: float = DEFAULT_FRAMES_FPS,
    clip_frames: int | None = None,
    notes: Callable[[str], None] | None = None,
) -> Iterator[ImageDescription]:
    """Yield the description of each image, and of each window of each video or frame folder,
    in order (grammar-constrained answers; motion words allowed for clips).

    The prompt is the one the model was trained on (saved with it), unless `prompt` is given.
    Every input is checked before the model loads, so a missing or unreadable file fails at once
    (one error naming it) without partial output. A clip's windows hold `clip_frames` frames
    (default: as the model was trained, else 8) sampled from `window_s` seconds; a folder's
    frames are `fps` apart. `notes` hears what a clip leaves out.
    """
    card = model.card if isinstance(model, Predictor) else model
    trained_prompt = describe_prompt(card)  # checks the task even when a prompt is given
    question = prompt if prompt is not None else trained_prompt
    frames = clip_frames or (card.clip.frames if card.clip is not None else DEFAULT_CLIP_FRAMES)
    inputs, skipped = open_inputs(images, clip_frames=frames, window_s=window_s, fps=fps)
    for note in skipped:
        if notes is not None:
            notes(note)
    clips = any(item.windows is not None for item in inputs)
    predictor = model if isinstance(model, Predictor) else Predictor.load(card, device=device)
    if clips:
        predictor.family.check_clips(predictor.model, frames)
    decoding = Decoding(
        num_beams=num_beams,
        max_new_tokens=max_new_tokens,
        grammar=GrammarOptions(relation_from_fields=relation_from_fields, motion=clips),
    )
    predictor.prepare(decoding)

    def describe(name: str, example: VisionTextExample) -> ImageDescription:
        start = time.perf_counter()
        [answer] = predictor.generate_batch([example], decoding)
        latency = time.perf_counter() - start
        parsed = parse_response(answer)
        return ImageDescription(
            image=name,
            prompt=question,
            answer=answer,
            parsed=parsed,
            cue=cue_for_parsed(parsed),
            annotation=answer_annotation(answer, Path(name).name),
            latency_s=latency,
        )

    for item in inputs:
        if item.windows is None:
            example = VisionTextExample(images=[item.image], prompt=question, image_ref=item.name)
            yield describe(item.name, example)
            continue
        announcer = CueAnnouncer()
        for window in item.windows():
            example = VisionTextExample(
                images=[], clip=window.clip, prompt=question, image_ref=item.name
            )
            description = describe(item.name, example)
            yield replace(
                description,
                window=(window.start, window.end),
                decision=announcer.decide(description.cue, window.start),
            )
