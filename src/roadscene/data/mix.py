"""A task mix: training examples drawn from several data files by weight, seeded.

`data.mix` lists sources (task + file + weight), e.g. captions 0.7 and bvpi 0.3. Item `i` draws
its source, its row and its form from a generator seeded by `(seed, i)` alone, so the mix is
the same whatever the DataLoader order. Two shares apply on top of the sources:

- `annotated_share`: this share of all items comes from the bvpi sources in the annotated form
  (the annotation JSON in the prompt, the cue and context as the answer);
- `few_shot_share`: this share of all items carries `shots` solved demonstrations from the same
  source before the query (only for families that take demonstrations; the training config
  checks it).

`MixedExamples.plan(n)` gives the draws without opening an image; the trainer logs the realised
proportions of the epoch it trains on.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from roadscene.data.examples import VisionTextExample, to_example
from roadscene.data.records import ANNOTATED_PROMPT, ExampleRecord, annotation_json
from roadscene.errors import InputError


class MixSource(BaseModel):
    """One data file of the mix."""

    model_config = ConfigDict(extra="forbid")

    task: Literal["caption", "bvpi", "annotated"] = Field(description="What the file's rows are.")
    file: str = Field(description="Data file (relative paths: relative to data.data_dir).")
    weight: float = Field(description="Relative weight (the weights are normalised).")

    @field_validator("weight")
    @classmethod
    def _non_negative(cls, value: float) -> float:
        if value < 0:
            raise ValueError(f"a weight must be >= 0; got {value}")
        return value


class MixSection(BaseModel):
    """`data.mix`: replaces the train split's file with several weighted sources."""

    model_config = ConfigDict(extra="forbid")

    sources: list[MixSource] = Field(description="Data files with their tasks and weights.")
    annotated_share: float = Field(
        0.0, description="Share of all items given as the annotated task (from bvpi sources)."
    )
    few_shot_share: float = Field(
        0.0, description="Share of all items with solved demonstrations before the query."
    )
    shots: int = Field(2, ge=1, description="Demonstrations per few-shot item.")
    length: int | None = Field(
        None, ge=1, description="Items per epoch (null: the rows of all sources together)."
    )
    seed: int | None = Field(None, description="Seed of the draws (null: the training seed).")

    @field_validator("annotated_share", "few_shot_share")
    @classmethod
    def _share(cls, value: float) -> float:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"a share must be in [0, 1]; got {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MixSection:
        if not self.sources:
            raise ValueError("give at least one source")
        total = sum(source.weight for source in self.sources)
        if total <= 0:
            raise ValueError("the source weights sum to 0; give at least one a positive weight")
        bvpi = sum(s.weight for s in self.sources if s.task == "bvpi") / total
        if self.annotated_share > bvpi + 1e-9:
            raise ValueError(
                f"annotated_share {self.annotated_share} is more than the bvpi sources' share "
                f"{bvpi:.3f}; the annotated form is made from bvpi rows"
            )
        return self

    def probabilities(self) -> np.ndarray:
        weights = np.array([source.weight for source in self.sources], dtype=np.float64)
        return weights / weights.sum()

    def source_names(self) -> list[str]:
        """`task:file-name` per source (`#k` added where two would read the same)."""
        names = [f"{source.task}:{Path(source.file).name}" for source in self.sources]
        counts = Counter(names)
        return [f"{name}#{i}" if counts[name] > 1 else name for i, name in enumerate(names)]


@dataclass(frozen=True)
class Draw:
    """What item i of the mix is: source index, row index, form and demonstration rows."""

    source: int
    row: int
    annotated: bool
    shots: tuple[int, ...]


class MixedExamples:
    """Items drawn from `records` (one record list per source of `section`) by weight."""

    def __init__(
        self, section: MixSection, records: list[list[ExampleRecord]], seed: int = 0
    ) -> None:
        if len(records) != len(section.sources):
            raise ValueError("one record list per source")
        for source, rows in zip(section.sources, records, strict=True):
            if not rows and source.weight > 0:
                raise InputError(
                    "a mix source with a positive weight has no rows", path=source.file
                )
            if section.few_shot_share > 0 and 0 < len(rows) <= section.shots:
                raise InputError(
                    f"{section.shots} shots need more than {section.shots} rows in every source",
                    path=source.file,
                )
        self.section = section
        self.records = records
        self.seed = section.seed if section.seed is not None else seed
        self.length = section.length or sum(len(rows) for rows in records)
        self.probabilities = section.probabilities()
        bvpi = sum(
            p for p, s in zip(self.probabilities, section.sources, strict=True) if s.task == "bvpi"
        )
        self.annotated_given_bvpi = section.annotated_share / bvpi if bvpi > 0 else 0.0

    def __len__(self) -> int:
        return self.length

    @property
    def prompts(self) -> list[str]:
        """The prompts of the sources' rows (not the annotated ones: those carry each row's
        annotation, no question of their own)."""
        return [
            record.prompt
            for source, rows in zip(self.section.sources, self.records, strict=True)
            if source.task != "annotated"
            for record in rows
        ]

    def draw(self, index: int) -> Draw:
        """The draw of item `index` (depends on the seed and the index only)."""
        rng = np.random.default_rng([self.seed, index, 5])
        source = int(rng.choice(len(self.probabilities), p=self.probabilities))
        rows = len(self.records[source])
        row = int(rng.integers(rows))
        task = self.section.sources[source].task
        annotated = task == "bvpi" and rng.random() < self.annotated_given_bvpi
        shots: tuple[int, ...] = ()
        if rng.random() < self.section.few_shot_share:
            others = rng.choice(rows - 1, size=self.section.shots, replace=False)
            shots = tuple(int(i) + (i >= row) for i in others)  # never the query's own row
            # demonstrations are still images shown before a still image: no clip takes part
            records = self.records[source]
            if any(records[i].clip is not None for i in (row, *shots)):
                shots = ()
        return Draw(source, row, annotated, shots)

    def task_of(self, draw: Draw) -> str:
        """The task an item is trained as (bvpi rows drawn for the annotated share: annotated)."""
        return "annotated" if draw.annotated else self.section.sources[draw.source].task

    def _example(self, record: ExampleRecord, annotated: bool) -> VisionTextExample:
        example = to_example(record)
        if annotated:
            annotation, answer = annotation_json(record.answer or "")
            example = replace(
                example, prompt=ANNOTATED_PROMPT.format(annotation=annotation), answer=answer
            )
        return example

    def __getitem__(self, index: int) -> VisionTextExample:
        if not 0 <= index < self.length:
            raise IndexError(index)
        draw = self.draw(index)
        rows = self.records[draw.source]
        example = self._example(rows[draw.row], draw.annotated)
        demonstrations = [self._example(rows[i], draw.annotated) for i in draw.shots]
        meta = {**example.meta, "task": self.task_of(draw), "mix_source": draw.source}
        return replace(example, meta=meta, demonstrations=demonstrations)

    def plan(self, n: int | None = None) -> dict[str, object]:
        """Realised proportions of the first `n` items (default: one epoch): per source, and
        the annotated and few-shot shares, beside the configured ones."""
        n = self.length if n is None else n
        names = self.section.source_names()
        sources: Counter[str] = Counter()
        annotated = few_shot = 0
        for index in range(n):
            draw = self.draw(index)
            sources[names[draw.source]] += 1
            annotated += draw.annotated
            few_shot += bool(draw.shots)
        return {
            "items": n,
            "sources": {name: sources[name] / n for name in names},
            "configured_sources": dict(
                zip(names, self.probabilities.round(4).tolist(), strict=True)
            ),
            "annotated": annotated / n,
            "configured_annotated": self.section.annotated_share,
            "few_shot": few_shot / n,
            "configured_few_shot": self.section.few_shot_share,
        }
