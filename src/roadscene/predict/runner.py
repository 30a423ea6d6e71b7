"""Batched, resumable prediction: data file -> one JSON line per item.

Each output line: `line` (data file line), `image`, `prompt`, `prediction` (answer text only),
`target` (when the data file has one), `shots` (few-shot demonstration images, if any) and
`parsed` (the fields `roadscene.targets.parse_response` reads from the prediction); structured
tasks add the navigation `cue` (and `annotation` with `output_format="json"`). Lines are appended
and flushed after every batch, so a crash loses at most the batch in flight; re-running the same
command skips the lines already written.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from roadscene.data.examples import to_example
from roadscene.data.images import check_images
from roadscene.data.records import ExampleRecord, detect_task, load_records
from roadscene.errors import InputError
from roadscene.io import atomic_write, check_output, dumps_line, read_records
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
    """Data lines already predicted in `out` (line -> image), for resuming.

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

    data, out = Path(data), Path(out)
    settings = settings or PredictSettings()
    card = model.card if isinstance(model, Predictor) else model
    settings = settings.for_task(resolve_task(settings.task, data, card))
    root = settings.image_root if settings.image_root is not None else data.parent
    records = load_records(
        settings.task,
        data,
        root,
        limit=settings.limit,
        require_answer=False,
        prompt=card.prompt_for(settings.task),
    )
    check_output(out, what="a prediction JSONL file")
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
    if not todo:
        return summary
    predictor = model if isinstance(model, Predictor) else Predictor.load(card, device=device)
    decoding = settings.decoding()
    predictor.prepare(decoding)
    selector = None
    if settings.shots:
        from roadscene.predict.fewshot import shot_selector

        assert settings.shots_from is not None  # checked by for_task
        selector = shot_selector(
            predictor,
            settings.shots_from,
            task=settings.task,
            image_root=settings.image_root or settings.shots_from.parent,
            shots=settings.shots,
            selection=settings.shot_selection,
            seed=settings.shot_seed,
            on_bad_image=settings.on_bad_image,
        )

    start = time.perf_counter()
    with (
        contextlib.ExitStack() as stack,
        tqdm(total=len(todo), unit="item", disable=not progress, desc="predict") as bar,
    ):
        handle = None  # opened with the first answers: a run that fails before leaves no file
        for first in range(0, len(todo), settings.batch_size):
            chunk = todo[first : first + settings.batch_size]
            examples = [to_example(r, with_answer=False) for r in chunk]
            if selector is not None:
                examples = selector.attach(chunk, examples)
            texts = predictor.generate_batch(examples, decoding)
            lines = [
                dumps_line(_output_row(record, example, text, settings)) + "\n"
                for record, example, text in zip(chunk, examples, texts, strict=True)
            ]
            if handle is None:
                handle = stack.enter_context(_open_for_append(out))
            handle.write("".join(lines))
            handle.flush()
            os.fsync(handle.fileno())
            summary.written += len(chunk)
            bar.update(len(chunk))
    summary.seconds = time.perf_counter() - start
    return summary


def _open_for_append(out: Path) -> IO[str]:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return open(out, "a", encoding="utf-8", newline="")
    except OSError as err:
        raise InputError(f"cannot write here: {err.strerror or err}", path=out) from None


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
        "image": record.image,
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
