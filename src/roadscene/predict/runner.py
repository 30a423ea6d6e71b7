"""Batched, resumable prediction: data file -> one JSON line per item.

Each output line: `line` (data file line), `image` (for a clip row also `video` or `frames`, as
written; `image` is then the video, or the first frame), `prompt`, `prediction` (answer text only),
`target` (when the data file has one), `shots` (few-shot demonstration images, if any) and
`parsed` (the fields `roadscene.targets.parse_response` reads from the prediction); structured
tasks add the navigation `cue` (and `annotation` with `output_format="json"`). Lines are appended
and flushed after every batch, so a crash loses at most the batch in flight; re-running the same
command skips the lines already written. A finished file holds its lines in data-file order.

Every engine shares the three steps here: `plan_prediction` (check the data and the output, find
the rows still to do), `RowPredictor` (a loaded model turning a batch of rows into output lines)
and `PredictionWriter` (append, skip what is already written, put the file in data order at the
end). `predict_file` runs them in this process; `roadscene.predict.distributed` on Ray workers.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from roadscene.data.examples import to_example
from roadscene.data.images import check_images
from roadscene.data.records import ExampleRecord, detect_task, load_records
from roadscene.errors import InputError
from roadscene.io import atomic_write, check_output, dumps_line, place_errors, read_records
from roadscene.predict.predictor import ModelCard, Predictor
from roadscene.predict.settings import PredictSettings
from roadscene.predict.views import parsed_fields, prediction_views


@dataclass
class PredictSummary:
    out: Path
    written: int  # lines written by this run
    already_done: int  # lines found in the output from an earlier run
    skipped_bad_images: list[tuple[int, str, str]] = field(default_factory=list)
    #: rows whose own prompt is not one the model was trained on (its answers may drift)
    unseen_prompts: int = 0
    seconds: float = 0.0

    @property
    def items_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0


def resolve_task(task: str, data: str | Path, card: ModelCard) -> str:
    """The task to predict: as given, else the task the model was trained on (its saved
    config), else what the data file looks like. A data file that cannot serve the trained
    task is an error rather than confident answers to the wrong prompt."""
    if task != "auto":
        return task
    data_task = detect_task(read_records(data))
    if card.task is None:
        return data_task
    if (card.task == "caption") != (data_task == "caption"):
        raise InputError(
            f"the model was trained for the '{card.task}' task but this file holds "
            f"{'captions' if data_task == 'caption' else 'bvpi rows'}; pass --task to override",
            path=data,
        )
    return card.task


def _is_prediction_row(text: str) -> bool:
    try:
        row = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return (
        isinstance(row, dict)
        and isinstance(row.get("line"), int)
        and isinstance(row.get("image"), str)
        and "prediction" in row
    )


def read_done(out: Path) -> dict[int, str]:
    """Data lines already predicted in `out` (line -> image, in file order), for resuming.

    Only a file `predict` wrote is ever touched: every complete line must be a prediction line.
    A torn last line (a crash during a write) is dropped, or kept with its newline added when
    only the newline is missing; anything else is an error and the file stays as it is.
    """
    if not out.exists():
        return {}
    if not out.is_file():
        raise InputError("--out is not a regular file", path=out)
    try:
        text = out.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(
            "not a prediction file written by roadscene predict (not UTF-8); choose another --out",
            path=out,
        ) from None
    if not text:
        return {}
    # Lines end at "\n" only: a JSON string may hold U+2028 or "\r" and stays one line.
    *complete, tail = text.split("\n")
    done: dict[int, str] = {}
    for number, line in enumerate(complete, start=1):
        if not _is_prediction_row(line):
            raise InputError(
                "not a prediction line written by roadscene predict; choose another --out",
                path=out,
                line=number,
            )
        row = json.loads(line)
        done[row["line"]] = row["image"]
    if tail:
        if _is_prediction_row(tail):
            row = json.loads(tail)
            done[row["line"]] = row["image"]
            repaired = text + "\n"  # only its newline was lost
        elif complete:
            repaired = text[: len(text) - len(tail)]  # a torn write after complete lines
        else:
            raise InputError(
                "not a prediction file written by roadscene predict; choose another --out",
                path=out,
            )
        with atomic_write(out) as handle:
            handle.write(repaired)
    return done


@dataclass
class PredictionJob:
    """One `predict` run once its data and output were checked: the resolved settings, the
    lines already in the output, the rows still to predict (in data order) and the summary."""

    data: Path
    out: Path
    card: ModelCard
    settings: PredictSettings
    done: dict[int, str]
    todo: list[ExampleRecord]
    summary: PredictSummary


def plan_prediction(
    data: str | Path, out: str | Path, card: ModelCard, settings: PredictSettings | None = None
) -> PredictionJob:
    """Read the data rows and the output so far; what is left to predict. Bad input (a data
    file, an output written for other data, a bad image with `on_bad_image="error"`) stops
    here, before any model is loaded."""
    data, out = Path(data), Path(out)
    check_output(out, what="a prediction JSONL file")
    settings = settings or PredictSettings()
    settings = settings.for_task(resolve_task(settings.task, data, card))
    root = settings.image_root if settings.image_root is not None else data.parent
    records = load_records(
        settings.task,
        data,
        root,
        limit=settings.limit,
        require_answer=False,
        prompt=card.prompt_for(settings.task),
        clip=settings.clip or card.clip,
    )
    clip_row = next((record for record in records if record.clip is not None), None)
    if settings.shots and clip_row is not None:
        raise InputError(
            "--shots shows still-image demonstrations before still images; this data file names "
            "a clip",
            path=data,
            line=clip_row.line,
        )
    if settings.motion is None:  # answers about clips may say how close objects move
        settings = settings.model_copy(update={"motion": clip_row is not None})
    done = read_done(out)
    for record in records:
        if record.line in done and done[record.line] != record.image:
            raise InputError(
                f"output already has line {record.line} for image '{done[record.line]}', but the "
                f"data file has '{record.image}' there: it was written for other data; choose "
                "another --out",
                path=out,
            )
    todo = [r for r in records if r.line not in done]
    todo, bad = check_images(todo, settings.on_bad_image)
    summary = PredictSummary(
        out=out,
        written=0,
        already_done=len(records) - len(todo) - len(bad),
        skipped_bad_images=[(line, image, reason) for _, line, image, reason in bad.rows],
        unseen_prompts=_unseen_prompts(todo, card),
    )
    if not todo and list(done) != sorted(done):
        sort_predictions(out)  # a run that wrote its last line but stopped before sorting
    return PredictionJob(data, out, card, settings, done, todo, summary)


class RowPredictor:
    """A loaded model answering data rows as output lines, with `settings` 's decoding (the
    answer grammar, beams, length cap) and few-shot demonstrations: the step every engine
    runs on its rows."""

    def __init__(self, predictor: Predictor, settings: PredictSettings) -> None:
        self.predictor = predictor
        self.settings = settings
        self.decoding = settings.decoding()
        predictor.prepare(self.decoding)
        self.clips_checked = False
        self.selector = None
        if settings.shots:
            from roadscene.predict.fewshot import shot_selector

            assert settings.shots_from is not None  # checked by for_task
            self.selector = shot_selector(
                predictor,
                settings.shots_from,
                task=settings.task,
                image_root=settings.image_root or settings.shots_from.parent,
                shots=settings.shots,
                selection=settings.shot_selection,
                seed=settings.shot_seed,
                on_bad_image=settings.on_bad_image,
            )

    def __call__(self, records: Sequence[ExampleRecord]) -> list[str]:
        """One output line (ending in a newline) per record, answered in one generate call."""
        clips = [r.clip for r in records if r.clip is not None]
        if clips and not self.clips_checked:
            self.predictor.family.check_clips(self.predictor.model, clips[0].settings.frames)
            self.clips_checked = True
        examples = [to_example(r, with_answer=False) for r in records]
        if self.selector is not None:
            examples = self.selector.attach(records, examples)
        texts = self.predictor.generate_batch(examples, self.decoding)
        return [
            dumps_line(_output_row(record, example, text, self.settings)) + "\n"
            for record, example, text in zip(records, examples, texts, strict=True)
        ]


class PredictionWriter:
    """Appends output lines to `job.out`, flushed to disk after every batch; a data line already
    in the file is never written twice. Lines may come in any order (Ray workers finish out of
    order); when the run completes, the file is put in data-file order."""

    def __init__(self, job: PredictionJob) -> None:
        self.job = job
        self.lines = set(job.done)
        done_order = list(job.done)
        self.in_order = done_order == sorted(done_order)
        self.last = done_order[-1] if done_order else None
        self.handle: Any = None

    def __enter__(self) -> PredictionWriter:
        return self

    def _open(self) -> Any:
        """The output, opened for appending with the first answers: a run that fails before
        them leaves no file behind."""
        out = self.job.out
        with place_errors(out):
            out.parent.mkdir(parents=True, exist_ok=True)
            return open(out, "a", encoding="utf-8", newline="")

    def write(self, lines: Iterable[tuple[int, str]]) -> int:
        """Append (data line, output line) pairs; returns how many were new."""
        new = [(line, text) for line, text in lines if line not in self.lines]
        for line, _ in new:
            self.lines.add(line)
            self.in_order = self.in_order and (self.last is None or line > self.last)
            self.last = line
        if new:
            if self.handle is None:
                self.handle = self._open()
            self.handle.write("".join(text for _, text in new))
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.job.summary.written += len(new)
        return len(new)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.handle is not None:
            self.handle.close()
        if kind is None and not self.in_order:
            sort_predictions(self.job.out)


def sort_predictions(out: Path) -> None:
    """Rewrite a prediction file with its lines in data-file order (atomically)."""
    text = out.read_text(encoding="utf-8")
    lines = text.split("\n")[:-1]  # lines end at "\n" only (see read_done)
    lines.sort(key=lambda line: json.loads(line)["line"])
    with atomic_write(out, encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in lines))


def predict_file(
    data: str | Path,
    out: str | Path,
    model: ModelCard | Predictor,
    settings: PredictSettings | None = None,
    *,
    device: str | None = None,
    progress: bool = True,
) -> PredictSummary:
    """Predict every row of `data` (a bvpi_sft / captions file) into `out` (JSONL), resumably.

    `model` is a `ModelCard` (loaded only if there is work to do, after the data and the output
    were checked) or an already loaded `Predictor`.
    """
    from tqdm.auto import tqdm

    card = model.card if isinstance(model, Predictor) else model
    job = plan_prediction(data, out, card, settings)
    if not job.todo:
        return job.summary
    predictor = model if isinstance(model, Predictor) else Predictor.load(card, device=device)
    answer = RowPredictor(predictor, job.settings)
    batch_size = job.settings.batch_size
    start = time.perf_counter()
    with (
        PredictionWriter(job) as writer,
        tqdm(total=len(job.todo), unit="item", disable=not progress, desc="predict") as bar,
    ):
        for first in range(0, len(job.todo), batch_size):
            chunk = job.todo[first : first + batch_size]
            writer.write(zip((r.line for r in chunk), answer(chunk), strict=True))
            bar.update(len(chunk))
    job.summary.seconds = time.perf_counter() - start
    return job.summary


def _unseen_prompts(records: list[ExampleRecord], card: ModelCard) -> int:
    if not card.prompts:
        return 0
    seen = set(card.prompts)
    return sum(1 for record in records if record.prompt_given and record.prompt not in seen)


def _output_row(
    record: ExampleRecord, example: Any, text: str, settings: PredictSettings
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "line": record.line,
        **record.reference(),
        "prompt": record.prompt,
        "prediction": text,
    }
    if record.answer is not None:
        row["target"] = record.answer
    if example.demonstrations:
        row["shots"] = [shot.image_ref for shot in example.demonstrations]
    row["parsed"] = parsed_fields(text)
    if settings.structured_answers:
        row.update(prediction_views(text, record.image, json_view=settings.output_format == "json"))
    return row
