"""Batched, resumable prediction: data file -> one JSON line per item.

Each output line: `line` (data file line), `image`, `prompt`, `prediction` (answer text only),
`target` (when the data file has one) and `parsed` (the fields `roadscene.targets.parse_response`
reads from the prediction). Lines are appended and flushed after every batch, so a crash loses
at most the batch in flight; re-running the same command skips the lines already written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from roadscene.errors import InputError
from roadscene.io import atomic_write, dumps_line, read_records

# model_type in config.json -> family, for folders without a saved roadscene config
_MODEL_TYPE_FAMILY = {"smolvlm": "smolvlm", "idefics3": "smolvlm"}


@dataclass
class PredictSummary:
    out: Path
    written: int  # lines written by this run
    already_done: int  # lines found in the output from an earlier run
    skipped_bad_images: list[tuple[int, str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def items_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Predictor:
    """A loaded model ready to answer: `Predictor.load(...)`, then `predict(examples)`."""

    family: Any
    model: Any
    processor: Any
    source: str
    adapter: str | None = None

    @classmethod
    def load(
        cls,
        model: str | Path,
        *,
        adapter: str | Path | None = None,
        family: str | None = None,
        device: str | None = None,
    ) -> Predictor:
        """Load from a hub id, a saved full model, or a training output folder holding an
        adapter (its base model is read from the saved config / adapter config)."""
        from roadscene.models import get_family

        base, adapter_dir, family_name = resolve_model(model, adapter, family)
        fam = get_family(family_name)
        loaded = fam.load(base, adapter=adapter_dir, device=device)
        return cls(fam, loaded.model, loaded.processor, loaded.source, loaded.adapter)

    def predict(
        self,
        examples: Sequence[Any],
        *,
        batch_size: int = 8,
        num_beams: int = 1,
        max_new_tokens: int = 128,
        logits_processor_factory: Callable[[], Any] | None = None,
        **generation_kwargs: Any,
    ) -> list[str]:
        """Answers for `examples` (VisionTextExample), `batch_size` at a time."""
        texts: list[str] = []
        for start in range(0, len(examples), batch_size):
            texts.extend(
                self.generate_batch(
                    examples[start : start + batch_size],
                    num_beams=num_beams,
                    max_new_tokens=max_new_tokens,
                    logits_processor_factory=logits_processor_factory,
                    **generation_kwargs,
                )
            )
        return texts

    def generate_batch(
        self,
        batch: Sequence[Any],
        *,
        num_beams: int,
        max_new_tokens: int,
        logits_processor_factory: Callable[[], Any] | None,
        **generation_kwargs: Any,
    ) -> list[str]:
        kwargs = dict(generation_kwargs)
        if logits_processor_factory is not None:
            # Stateful processors (grammar matchers) must be fresh for every generate call.
            kwargs["logits_processor"] = logits_processor_factory()
        return self.family.generate(
            self.model,
            self.processor,
            batch,
            num_beams=num_beams,
            max_new_tokens=max_new_tokens,
            **kwargs,
        )


def resolve_model(
    model: str | Path, adapter: str | Path | None, family: str | None
) -> tuple[str, str | None, str]:
    """(base model id/path, adapter folder or None, family name) for `--model/--adapter`."""
    from roadscene.train.config import read_saved_config

    model_path = Path(model)
    saved = read_saved_config(model_path) if model_path.is_dir() else None
    if adapter is None and (model_path / "adapter_config.json").is_file():
        adapter = model_path
        if saved is not None:
            base = saved.model.name_or_path
        else:
            config = json.loads((model_path / "adapter_config.json").read_text())
            base = config.get("base_model_name_or_path")
            if not base:
                raise InputError(
                    "adapter config names no base model; pass --model BASE --adapter DIR",
                    path=model_path,
                )
    else:
        base = str(model)
    if family is None:
        if saved is not None:
            family = saved.model.family
        elif adapter is not None and read_saved_config(adapter) is not None:
            family = read_saved_config(adapter).model.family  # type: ignore[union-attr]
        else:
            family = "smolvlm"
            config_file = Path(base) / "config.json"
            if config_file.is_file():
                model_type = json.loads(config_file.read_text()).get("model_type", "")
                family = _MODEL_TYPE_FAMILY.get(model_type, model_type or "smolvlm")
    return base, str(adapter) if adapter is not None else None, family


def detect_task(rows: Sequence[tuple[int, dict[str, Any]]]) -> str:
    """bvpi when rows carry a `response` or a `prompt`, caption when they carry a `caption`."""
    first = rows[0][1]
    if "caption" in first and "response" not in first:
        return "caption"
    return "bvpi"


def resolve_task(
    task: str, data: str | Path, model: str | Path, adapter: str | Path | None = None
) -> str:
    """The task to predict: as given, else the task the model was trained on (its saved
    config), else what the data file looks like. A data file that cannot serve the trained
    task is an error rather than confident answers to the wrong prompt."""
    if task != "auto":
        return task
    from roadscene.train.config import read_saved_config

    data_task = detect_task(read_records(data))
    saved = None
    for folder in (adapter, model):
        if folder is not None and Path(folder).is_dir():
            saved = read_saved_config(folder)
            if saved is not None:
                break
    if saved is None:
        return data_task
    trained = saved.data.task
    if (trained == "caption") != (data_task == "caption"):
        raise InputError(
            f"the model was trained for the '{trained}' task but this file holds "
            f"{'captions' if data_task == 'caption' else 'bvpi rows'}; pass --task to override",
            path=data,
        )
    return trained


def _read_done(out: Path) -> dict[int, str]:
    """Data lines already predicted in `out` (line -> image). A torn last line (crash during a
    write) is dropped; any other malformed line is an error."""
    if not out.is_file():
        return {}
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    done: dict[int, str] = {}
    keep = len(lines)
    for number, text in enumerate(lines, start=1):
        try:
            row = json.loads(text)
            done[int(row["line"])] = str(row["image"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            if number == len(lines):
                keep = number - 1
                break
            raise InputError(
                "not a prediction line written by roadscene predict", path=out, line=number
            ) from None
    if keep < len(lines):
        with atomic_write(out) as handle:
            handle.writelines(lines[:keep])
    return done


def parsed_fields(prediction: str) -> dict[str, Any]:
    """The parsed view of a prediction, as stored in the output line."""
    from roadscene.targets import parse_response

    return parse_response(prediction).to_dict()


def predict_file(
    model: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    image_root: str | Path | None = None,
    adapter: str | Path | None = None,
    family: str | None = None,
    task: Literal["auto", "caption", "bvpi", "annotated"] = "auto",
    batch_size: int = 8,
    num_beams: int = 1,
    max_new_tokens: int = 128,
    limit: int | None = None,
    on_bad_image: Literal["error", "skip"] = "error",
    logits_processor_factory: Callable[[], Any] | None = None,
    predictor: Predictor | None = None,
    progress: bool = True,
    row_views: Callable[[str, str], dict[str, Any]] | None = None,
    processor_factory_for: Callable[[Predictor], Callable[[], Any]] | None = None,
    demonstrations_for: Callable[[Predictor], Callable[[list, list], list]] | None = None,
) -> PredictSummary:
    """Predict every row of `data` (a bvpi_sft / captions file) into `out` (JSONL), resumably.

    `row_views(prediction, image)` adds keys to each output line (e.g. the navigation `cue`);
    `processor_factory_for(predictor)` makes the `logits_processor_factory` once the model is
    loaded (e.g. the answer grammar, which needs the model's tokenizer);
    `demonstrations_for(predictor)` makes a function `(records, examples) -> examples` that adds
    few-shot demonstrations (their images are listed under `shots` in each line)."""
    import time

    from tqdm.auto import tqdm

    from roadscene.train.data import check_images, load_records, to_example

    data = Path(data)
    out = Path(out)
    if batch_size < 1 or num_beams < 1 or max_new_tokens < 1:
        raise InputError("--batch-size, --num-beams and --max-new-tokens must be >= 1")
    task = resolve_task(task, data, model, adapter)  # type: ignore[assignment]
    root = Path(image_root) if image_root is not None else data.parent
    records = load_records(task, data, root, limit=limit, require_answer=False)

    done = _read_done(out)
    for record in records:
        if record.line in done and done[record.line] != record.image:
            raise InputError(
                f"output already has line {record.line} for image '{done[record.line]}', but the "
                f"data file has '{record.image}' there: it was written for other data; choose "
                "another --out",
                path=out,
            )
    todo = [r for r in records if r.line not in done]
    todo, bad = check_images(todo, on_bad_image)
    summary = PredictSummary(
        out=out,
        written=0,
        already_done=len(records) - len(todo) - len(bad),
        skipped_bad_images=[(line, image, reason) for _, line, image, reason in bad.rows],
    )
    if not todo:
        return summary
    if predictor is None:
        predictor = Predictor.load(model, adapter=adapter, family=family)
    if processor_factory_for is not None:
        logits_processor_factory = processor_factory_for(predictor)
    add_demonstrations = demonstrations_for(predictor) if demonstrations_for is not None else None

    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with (
        open(out, "a", encoding="utf-8") as handle,
        tqdm(total=len(todo), unit="item", disable=not progress, desc="predict") as bar,
    ):
        for first in range(0, len(todo), batch_size):
            chunk = todo[first : first + batch_size]
            examples = [to_example(r, with_answer=False) for r in chunk]
            if add_demonstrations is not None:
                examples = add_demonstrations(chunk, examples)
            texts = predictor.generate_batch(
                examples,
                num_beams=num_beams,
                max_new_tokens=max_new_tokens,
                logits_processor_factory=logits_processor_factory,
            )
            lines = []
            for record, example, text in zip(chunk, examples, texts, strict=True):
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
                if row_views is not None:
                    row.update(row_views(text, record.image))
                lines.append(dumps_line(row) + "\n")
            handle.write("".join(lines))
            handle.flush()
            os.fsync(handle.fileno())
            summary.written += len(chunk)
            bar.update(len(chunk))
    summary.seconds = time.perf_counter() - start
    return summary
