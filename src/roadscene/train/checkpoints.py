"""Which checkpoint `train --resume` continues from: the newest *complete* one.

A run killed while the Trainer writes a checkpoint leaves a folder without `trainer_state.json`
(written last) or with a truncated weights / optimizer file. Resuming from it would fail with a
traceback or, worse, continue from a fresh optimizer. The newest complete checkpoint is used
instead (and the run says so); an incomplete newer one is renamed `incomplete-checkpoint-N`
(kept for inspection, out of the Trainer's way). No complete checkpoint is an InputError.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from pathlib import Path

from roadscene.errors import InputError, exception_summary
from roadscene.io import read_json

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE = "trainer_state.json"


def checkpoints(output_dir: Path) -> list[Path]:
    """The `checkpoint-N` folders of a run, newest (highest N) first."""
    if not output_dir.is_dir():
        return []
    found = [
        (int(match.group(1)), path)
        for path in output_dir.iterdir()
        if path.is_dir() and (match := _CHECKPOINT.match(path.name))
    ]
    return [path for _, path in sorted(found, reverse=True)]


def checkpoint_problem(folder: Path) -> str | None:
    """Why a checkpoint folder cannot be resumed from (None: it is complete): no trainer state,
    no weights, or a weights / optimizer file that is cut short or corrupt."""
    if not (folder / TRAINER_STATE).is_file():
        return f"no {TRAINER_STATE}"
    try:
        state = read_json(folder / TRAINER_STATE)
    except InputError as err:
        return f"unreadable {TRAINER_STATE}: {err.reason}"
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        return f"{TRAINER_STATE} has no global_step"
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        return "no weights (*.safetensors)"
    from safetensors import safe_open

    for file in weights:
        try:
            with safe_open(str(file), "pt"):
                pass
        except Exception as err:  # truncated, garbage, header too large
            return f"{file.name} is damaged ({exception_summary(err, 120)})"
    for file in [*folder.glob("*.pt"), *folder.glob("*.pth")]:
        try:
            with zipfile.ZipFile(file):  # torch.save writes a zip archive: cut short = no index
                pass
        except (zipfile.BadZipFile, OSError) as err:
            return f"{file.name} is damaged ({exception_summary(err, 120)})"
    return None


def resume_checkpoint(output_dir: Path, log: Callable[[str], None] = print) -> Path:
    """The newest complete checkpoint of `output_dir`; newer incomplete ones are renamed
    `incomplete-checkpoint-N` and reported through `log`."""
    found = checkpoints(output_dir)
    if not found:
        raise InputError("--resume given but there is no checkpoint-* folder", path=output_dir)
    skipped: list[str] = []
    for folder in found:
        problem = checkpoint_problem(folder)
        if problem is None:
            for name in skipped:
                (output_dir / name).rename(output_dir / f"incomplete-{name}")
            if skipped:
                log(
                    f"{', '.join(skipped)} incomplete (renamed incomplete-*); resuming from "
                    f"{folder.name}"
                )
            return folder
        skipped.append(folder.name)
        log(f"{folder.name} cannot be resumed from: {problem}")
    raise InputError(
        f"no complete checkpoint to resume from ({len(found)} incomplete, newest "
        f"{found[0].name}: {checkpoint_problem(found[0])}); start again without --resume in a new "
        "train.output_dir",
        path=output_dir,
    )
