"""What `POST /v1/describe` answers (pydantic models, so the OpenAPI page documents them) and how
an answer is built from the model's text, the frame check and the session's decision."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from roadscene.data.quality import FrameQuality
from roadscene.serve.sessions import SpeakDecision
from roadscene.targets import (
    NavigationCue,
    ParsedResponse,
    Urgency,
    Verbosity,
    clock_directions,
    spoken_cue,
)


class CueOut(BaseModel):
    action: str = Field(description="What to do: stop_crossing, step_left, ..., raise_phone.")
    rule: str = Field(description="The rule of the cue table that chose it (R0: unclear view).")
    text: str = Field(description="The cue sentence.")
    urgency: Urgency = Field(description="high: crossing or something close in the path.")


class SpeakOut(BaseModel):
    say: bool = Field(description="Whether to say it now (the session's decision).")
    reason: str = Field(
        description="first, action changed, urgency rose, approaching, reminder, unchanged..."
    )
    text: str = Field(description="What to say, at the requested verbosity.")


class DirectionsOut(BaseModel):
    close: list[str] = Field(description="Close objects as clock directions, path first.")
    far: list[str] = Field(description="Far objects as clock directions.")


class FieldsOut(BaseModel):
    sidewalk: str | None
    road: str | None
    relation: str | None


class ObjectsOut(BaseModel):
    count: int | None
    positions: list[str]


class FrameOut(BaseModel):
    usable: bool
    problem: Literal["dark", "uniform", "blurred"] | None
    brightness: float
    contrast: float
    sharpness: float


class LatencyOut(BaseModel):
    total_ms: float = Field(description="From the upload read to the answer.")
    queue_ms: float = Field(description="Waiting for a batch.")
    model_ms: float = Field(description="The batch's model call.")
    batch_size: int = Field(description="Frames answered in the same model call (0: none).")


class DescribeOut(BaseModel):
    session: str | None = Field(description="The live session this frame belonged to.")
    cue: CueOut
    speak: SpeakOut
    directions: DirectionsOut
    fields: FieldsOut | None = Field(description="The answer's fields (None: unclear view).")
    close: dict[str, ObjectsOut] = Field(description="Close objects by class.")
    far: dict[str, ObjectsOut] = Field(description="Far objects by class.")
    caption: str | None = Field(description="The answer's Context: part.")
    answer: str | None = Field(description="The model's whole answer (None: not asked).")
    frame: FrameOut | None = Field(description="The frame check (None: turned off).")
    latency: LatencyOut


class SessionOut(BaseModel):
    session: str = Field(description="Send it with every frame of this walker.")
    reminder_s: float = Field(description="An unchanged cue is repeated after this long.")
    expires_after_s: float = Field(description="The session ends after this long without frames.")


class ErrorOut(BaseModel):
    error: str = Field(description="A short code: bad_image, too_large, rate_limited, ...")
    detail: str = Field(description="What was wrong, in words.")


def describe_answer(
    *,
    session: str | None,
    cue: NavigationCue,
    decision: SpeakDecision,
    verbosity: Verbosity,
    answer: str | None,
    parsed: ParsedResponse | None,
    quality: FrameQuality | None,
    latency: LatencyOut,
) -> DescribeOut:
    """The JSON answer for one frame (`parsed` None: the model was not asked)."""
    objects = parsed.to_dict() if parsed is not None else {"near": {}, "far": {}}
    near, far = objects["near"], objects["far"]
    directions = clock_directions(parsed) if parsed is not None else {"close": [], "far": []}
    caption = parsed.context if parsed is not None else None
    fields = (
        FieldsOut(sidewalk=parsed.sidewalk, road=parsed.road, relation=parsed.relation)
        if parsed is not None
        else None
    )
    return DescribeOut(
        session=session,
        cue=CueOut(**cue.to_dict()),
        speak=SpeakOut(
            say=decision.say,
            reason=decision.reason,
            text=spoken_cue(cue, directions, verbosity, caption),
        ),
        directions=DirectionsOut(**directions),
        fields=fields,
        close={cls: ObjectsOut(**value) for cls, value in near.items()},
        far={cls: ObjectsOut(**value) for cls, value in far.items()},
        caption=caption,
        answer=answer,
        frame=FrameOut(**quality.to_dict()) if quality is not None else None,  # type: ignore[arg-type]
        latency=latency,
    )
