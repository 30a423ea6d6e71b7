"""On-policy preference pairs: the model's own wrong answers as the rejected side.

For every row of a bvpi data file the model answers several times by sampling (batched, through
`Predictor.generate_batch`); each answer is parsed with the strict parser
(`roadscene.targets.parse_response`) and compared with the row's own answer (the truth). An
answer that gets wrong what matters to a pedestrian -- the side of the sidewalk or the road,
their relation, a close object missed, invented or put on the wrong side -- becomes the rejected
answer of a pair whose chosen answer is the truth. Answers that differ only in counts, far
objects or the context caption make no pair.

Files (`out` = the pair file):
- `{out stem}.samples.jsonl`: every sampled answer with its mistakes, one line per data row,
  appended after each batch (a crash loses at most the batch in flight; a rerun continues and,
  since each batch is sampled from a generator seeded by (seed, batch index), draws exactly what
  the uninterrupted run would have);
- `out`: the pairs, in the published pair format (`image`, `prompt`, `chosen`, `rejected`,
  `sidewalk_pos`, `road_pos`, `road_vs_sidewalk`) plus `mistakes` and the data `line`;
- `{out stem}.report.json`: counts of rows, samples and pairs by kind of mistake.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from roadscene.data.examples import to_example
from roadscene.data.images import check_images
from roadscene.data.records import ExampleRecord, load_records
from roadscene.errors import InputError, option_error
from roadscene.io import (
    atomic_write,
    check_output,
    dumps_line,
    loads_json,
    read_json,
    read_text,
    split_lines,
    write_json,
)
from roadscene.predict.predictor import ModelCard, Predictor
from roadscene.predict.settings import Decoding
from roadscene.targets import GrammarOptions, ParsedResponse, parse_response

#: Kinds of mistake that make a pair, in report order.
MISTAKES = (
    "wrong_sidewalk",
    "wrong_road",
    "wrong_relation",
    "missed_close_object",
    "invented_close_object",
    "wrong_close_position",
)
_RUN_DEFINING = ("samples", "temperature", "top_p", "batch_size", "max_new_tokens", "seed",
                 "structured")  # fmt: skip


class PairSettings(BaseModel):
    """How on-policy pairs are drawn (`roadscene data pairs` options)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_root: Path | None = Field(None, description="Image folder (default: the data file's).")
    samples: int = Field(4, ge=1, description="Answers sampled per image.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass (1: off).")
    batch_size: int = Field(8, ge=1, description="Images per generate call.")
    max_new_tokens: int = Field(192, ge=1, description="Answer length cap in tokens.")
    pairs_per_image: int = Field(2, ge=1, description="At most this many pairs per image.")
    structured: bool = Field(True, description="Sample within the answer grammar.")
    seed: int = Field(0, description="Seed of the sampling (per batch: seed, batch index).")
    limit: int | None = Field(None, ge=1, description="Only the first N rows.")
    on_bad_image: Literal["error", "skip"] = Field(
        "error", description="error: stop naming the image; skip: skip and count."
    )

    @classmethod
    def from_options(cls, **options: object) -> PairSettings:
        """Settings from command-line options; a bad value is an InputError naming the option."""
        from pydantic import ValidationError

        try:
            return cls(**options)  # type: ignore[arg-type]
        except ValidationError as err:
            raise option_error(err, whole="options") from None

    def decoding(self) -> Decoding:
        return Decoding(
            max_new_tokens=self.max_new_tokens,
            grammar=GrammarOptions() if self.structured else None,
            temperature=self.temperature,
            top_p=self.top_p,
            samples=self.samples,
        )


@dataclass
class PairsSummary:
    out: Path
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def pairs(self) -> int:
        return int(self.report.get("pairs", 0))


def mistakes(answer: str, truth: ParsedResponse) -> list[str]:
    """What `answer` gets wrong that matters to a pedestrian (kinds of `MISTAKES`), by the strict
    parser: a field not stated counts as wrong; close objects are compared by class and side."""
    said = parse_response(answer)
    found = [
        f"wrong_{name}"
        for name in ("sidewalk", "road", "relation")
        if getattr(said, name) != getattr(truth, name)
    ]
    if set(truth.near) - set(said.near):
        found.append("missed_close_object")
    if set(said.near) - set(truth.near):
        found.append("invented_close_object")
    if any(
        set(said.near[cls].positions) != set(truth.near[cls].positions)
        for cls in set(said.near) & set(truth.near)
    ):
        found.append("wrong_close_position")
    return found


def samples_file(out: Path) -> Path:
    return out.with_name(f"{out.stem}.samples.jsonl")


def report_file(out: Path) -> Path:
    return out.with_name(f"{out.stem}.report.json")


_PAIR_KEYS = ("image", "prompt", "chosen", "rejected", "mistakes", "line")


def _is_pair_file(path: Path) -> bool:
    """Whether `path` is a pair file this command wrote (empty, or every line a pair row): the
    only kind of file `--out` may replace."""
    try:
        rows = [loads_json(line) for line in split_lines(read_text(path))]
    except InputError:
        return False
    return all(isinstance(row, dict) and all(k in row for k in _PAIR_KEYS) for row in rows)


def _is_pair_report(path: Path) -> bool:
    try:
        report = read_json(path)
    except InputError:
        return False
    return isinstance(report, dict) and "pairs_by_mistake" in report


def check_outputs(out: Path) -> None:
    """Before any work: the pair file, its samples file and its report can be written, and each
    that exists is one this command wrote (the samples file's lines are checked when read)."""
    check_output(out, ours=_is_pair_file, what="a pair JSONL file written by roadscene data pairs")
    check_output(samples_file(out), what="a samples JSONL file")
    check_output(report_file(out), ours=_is_pair_report, what="a pair report JSON file")


def _read_samples(path: Path, settings: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Rows already sampled (data line -> row), for resuming; a torn last line is dropped.
    Samples drawn with other settings are refused (they would mix two runs)."""
    if not path.exists():
        return {}
    text = read_text(path)
    *complete, tail = text.split("\n")
    done: dict[int, dict[str, Any]] = {}
    for number, line in enumerate(complete, start=1):
        try:
            row = loads_json(line)
            done[int(row["line"])] = row
        except (InputError, ValueError, KeyError, TypeError):
            raise InputError(
                "not a samples file written by roadscene data pairs; choose another --out",
                path=path,
                line=number,
            ) from None
        if row.get("settings") != settings:
            raise InputError(
                f"these samples were drawn with other settings ({row.get('settings')}); use the "
                "same options or another --out",
                path=path,
                line=number,
            )
    if tail:  # a write torn by a crash: its batch is drawn again
        with atomic_write(path) as handle:
            handle.write(text[: len(text) - len(tail)])
    return done


def build_pairs(
    data: str | Path,
    out: str | Path,
    model: ModelCard | Predictor,
    settings: PairSettings | None = None,
    *,
    device: str | None = None,
    progress: bool = True,
) -> PairsSummary:
    """Sample answers for every row of `data` (bvpi_sft file) and write the pairs of the ones
    that are wrong (module docstring). Resumable; the model loads only if sampling is left."""
    import torch
    from tqdm.auto import tqdm

    data, out = Path(data), Path(out)
    check_outputs(out)
    settings = settings or PairSettings()
    card = model.card if isinstance(model, Predictor) else model
    root = settings.image_root if settings.image_root is not None else data.parent
    records = load_records("bvpi", data, root, limit=settings.limit, prompt=card.prompt_for("bvpi"))
    for record in records:
        truth = parse_response(record.answer)
        if None in (truth.sidewalk, truth.road, truth.relation) or not truth.has_nearby:
            raise InputError(
                "the row's response is not a structured answer (Sidewalk, Road, RoadVsSidewalk, "
                "Nearby), so answers cannot be scored against it; pass a bvpi_sft file",
                path=data,
                line=record.line,
                field="response",
            )
    records, bad = check_images(records, settings.on_bad_image)
    run = settings.model_dump(mode="json", include=set(_RUN_DEFINING))
    samples_path = samples_file(out)
    done = _read_samples(samples_path, run)
    batches = [
        records[start : start + settings.batch_size]
        for start in range(0, len(records), settings.batch_size)
    ]
    todo = [(i, batch) for i, batch in enumerate(batches) if any(r.line not in done for r in batch)]
    if todo:
        predictor = model if isinstance(model, Predictor) else Predictor.load(card, device=device)
        decoding = settings.decoding()
        predictor.prepare(decoding)
        remaining = sum(len(batch) for _, batch in todo)
        samples_path.parent.mkdir(parents=True, exist_ok=True)
        with (
            open(samples_path, "a", encoding="utf-8", newline="") as handle,
            tqdm(total=remaining, unit="image", disable=not progress, desc="pairs") as bar,
        ):
            for index, batch in todo:
                torch.manual_seed(settings.seed * 1_000_003 + index)
                texts = predictor.generate_batch(
                    [to_example(r, with_answer=False) for r in batch], decoding
                )
                lines = []
                for position, record in enumerate(batch):
                    answers = texts[position * settings.samples : (position + 1) * settings.samples]
                    row = _samples_row(record, answers, run)
                    if record.line not in done:  # a batch torn by a crash: only what is missing
                        done[record.line] = row
                        lines.append(dumps_line(row) + "\n")
                handle.write("".join(lines))
                handle.flush()
                os.fsync(handle.fileno())
                bar.update(len(batch))
    report = _write_pairs(records, done, out, settings)
    report.update(
        data=str(data),
        model={"base": card.base, "adapter": card.adapter, "family": card.family},
        settings=settings.model_dump(mode="json"),
        skipped_bad_images=[
            {"line": line, "image": image, "reason": reason} for _, line, image, reason in bad.rows
        ],
    )
    write_json(report_file(out), report, ours=_is_pair_report, what="a pair report JSON file")
    return PairsSummary(out=out, report=report)


def _samples_row(record: ExampleRecord, answers: list[str], run: dict[str, Any]) -> dict[str, Any]:
    truth = parse_response(record.answer)
    return {
        "line": record.line,
        "image": record.image,
        "samples": [{"text": text, "mistakes": mistakes(text, truth)} for text in answers],
        "settings": run,
    }


def _write_pairs(
    records: list[ExampleRecord],
    done: dict[int, dict[str, Any]],
    out: Path,
    settings: PairSettings,
) -> dict[str, Any]:
    """The pair file from the sampled answers (atomically), and the counts for the report."""
    by_kind: Counter[str] = Counter()
    samples: Counter[str] = Counter()
    pairs_written = rows_with_pairs = 0
    with atomic_write(out, ours=_is_pair_file, what="a pair JSONL file") as handle:
        for record in records:
            row = done[record.line]
            rejected: list[tuple[str, list[str]]] = []
            for sample in row["samples"]:
                text = sample["text"].strip()
                if not sample["mistakes"]:
                    samples["correct"] += 1
                elif text in {r for r, _ in rejected} or len(rejected) >= settings.pairs_per_image:
                    samples["wrong_not_paired"] += 1  # a repeat, or past pairs_per_image
                else:
                    samples["wrong_paired"] += 1
                    rejected.append((text, sample["mistakes"]))
            rows_with_pairs += bool(rejected)
            for text, kinds in rejected:
                by_kind.update(kinds)
                pairs_written += 1
                handle.write(dumps_line(_pair(record, text, kinds)) + "\n")
    return {
        "rows": len(records),
        "rows_with_pairs": rows_with_pairs,
        "pairs": pairs_written,
        "samples": {"drawn": sum(samples.values()), **dict(samples)},
        "pairs_by_mistake": {kind: by_kind[kind] for kind in MISTAKES},
    }


def _pair(record: ExampleRecord, rejected: str, kinds: list[str]) -> dict[str, Any]:
    pair = {"image": record.image, "prompt": record.prompt, "chosen": record.answer}
    pair["rejected"] = rejected
    for key in ("sidewalk_pos", "road_pos", "road_vs_sidewalk"):
        if key in record.meta:
            pair[key] = record.meta[key]
    return {**pair, "mistakes": kinds, "line": record.line}
