"""What to predict and how, as one typed object: `PredictSettings` (what `roadscene predict` and
every other caller of `predict_file` pass) and `Decoding` (what one `generate` call does).

Structured decoding (the answer grammar) defaults to on for tasks whose answers have the
structured format and is refused for free captions; few-shot demonstrations need a shot file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from roadscene.data.clips import ClipSettings
from roadscene.data.records import STRUCTURED_TASKS
from roadscene.errors import InputError, option_error
from roadscene.targets import GrammarOptions


@dataclass(frozen=True)
class Decoding:
    """How one batch is decoded: greedy (`num_beams` 1), beam search, or sampling (`temperature`
    set: `samples` answers per example, nucleus `top_p`); the answer length cap, and the answer
    grammar (None: free text)."""

    num_beams: int = 1
    max_new_tokens: int = 192
    grammar: GrammarOptions | None = None
    temperature: float | None = None
    top_p: float = 1.0
    samples: int = 1

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples must be at least 1, got {self.samples}")
        if self.temperature is None and self.samples > 1:
            raise ValueError("several samples per example need sampling: set a temperature")
        if self.temperature is not None and (self.temperature <= 0 or self.num_beams > 1):
            raise ValueError("sampling needs a temperature > 0 and num_beams 1")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    def generation_kwargs(self) -> dict[str, Any]:
        """The `generate` arguments of this decoding (besides the grammar)."""
        kwargs: dict[str, Any] = {
            "num_beams": self.num_beams,
            "max_new_tokens": self.max_new_tokens,
        }
        if self.temperature is not None:
            kwargs.update(
                do_sample=True,
                temperature=self.temperature,
                top_p=self.top_p,
                top_k=0,  # the model's own distribution: no top-k cut from the generation config
                num_return_sequences=self.samples,
            )
        return kwargs


class PredictSettings(BaseModel):
    """Everything `predict_file` needs besides the model, the data file and the output."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: Literal["auto", "caption", "bvpi", "annotated"] = Field(
        "auto", description="auto: the task the model was trained on, else the data file's."
    )
    image_root: Path | None = Field(
        None, description="Folder image paths are relative to (default: the data file's)."
    )
    batch_size: int = Field(8, ge=1, description="Items per generate call.")
    num_beams: int = Field(1, ge=1, description="1 = greedy, K = beam search.")
    max_new_tokens: int = Field(192, ge=1, description="Answer length cap in tokens.")
    limit: int | None = Field(None, ge=1, description="Only the first N rows.")
    on_bad_image: Literal["error", "skip"] = Field(
        "error", description="error: stop naming the image; skip: skip and count."
    )
    structured: bool | None = Field(
        None, description="Constrain answers to the target grammar (default: structured tasks)."
    )
    relation_from_fields: bool = Field(
        False, description="With structured: only the relation the sidewalk/road rule derives."
    )
    output_format: Literal["text", "json"] = Field(
        "text", description="json: also write the parsed answer as an annotation form."
    )
    shots: int = Field(0, ge=0, description="In-context demonstrations per item (0: none).")
    shots_from: Path | None = Field(None, description="Data file the demonstrations come from.")
    shot_selection: Literal["random", "similar"] = Field(
        "random", description="random, or similar: nearest training images by image embedding."
    )
    shot_seed: int = Field(0, description="Seed of the random shot selection.")
    clip: ClipSettings | None = Field(
        None,
        description="How rows naming a video or frames are sampled (default: as the model was "
        "trained, else 8 frames).",
    )
    motion: bool | None = Field(
        None,
        description="Let structured answers name how close objects move (default: when the "
        "data holds clips).",
    )

    @classmethod
    def from_options(cls, **options: object) -> PredictSettings:
        """Settings from command-line style options; a bad value is an InputError naming the
        option (`--batch-size`, ...)."""
        try:
            return cls(**options)  # type: ignore[arg-type]
        except ValidationError as err:
            raise option_error(
                err, whole="--settings", renames={"output_format": "--format"}
            ) from None

    def for_task(self, task: str) -> PredictSettings:
        """These settings for the resolved `task` (not auto), with `structured` decided and every
        combination checked."""
        fields_task = task in STRUCTURED_TASKS
        structured = fields_task if self.structured is None else self.structured
        if structured and not fields_task:
            raise InputError(
                f"--structured needs a task with structured answers "
                f"({', '.join(STRUCTURED_TASKS)}); this is the '{task}' task: use --no-structured",
                field="structured",
            )
        if self.relation_from_fields and not structured:
            raise InputError(
                "--relation-from-fields needs --structured", field="relation_from_fields"
            )
        if self.output_format == "json" and not fields_task:
            raise InputError(
                f"--format json needs the bvpi task (answers with fields), not '{task}'",
                field="format",
            )
        if self.shots and self.shots_from is None:
            raise InputError(
                "--shots needs --shots-from TRAIN_FILE (e.g. bvpi_sft_train.jsonl)",
                field="shots_from",
            )
        if not self.shots and self.shots_from is not None:
            raise InputError("--shots-from needs --shots K (K > 0)", field="shots")
        return self.model_copy(update={"task": task, "structured": structured})

    @property
    def structured_answers(self) -> bool:
        """Whether output lines carry the structured views (cue, parsed fields as a form)."""
        return self.task in STRUCTURED_TASKS

    def decoding(self) -> Decoding:
        grammar = (
            GrammarOptions(relation_from_fields=self.relation_from_fields, motion=bool(self.motion))
            if self.structured
            else None
        )
        return Decoding(
            num_beams=self.num_beams, max_new_tokens=self.max_new_tokens, grammar=grammar
        )
