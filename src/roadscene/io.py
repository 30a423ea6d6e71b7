"""File helpers: atomic writes, line-numbered JSON/JSONL reading with clear errors."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from roadscene.errors import InputError


def dumps_line(obj: Any) -> str:
    """One JSON object as the published exports write it: UTF-8 kept, `", "` and `": "`."""
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator:
    """Write to a temporary file beside `path`, rename over it only when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        kwargs = {"encoding": encoding} if "b" not in mode else {}
        with open(tmp, mode, **kwargs) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Build a folder's new files in a temporary sibling folder; move them into `path` only when
    the block succeeds, so `path` is never left half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        path.mkdir(parents=True, exist_ok=True)
        for item in tmp.iterdir():
            target = path / item.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(item, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2) -> None:
    with atomic_write(path) as handle:
        json.dump(obj, handle, ensure_ascii=False, indent=indent)
        handle.write("\n")


def read_text(path: str | Path) -> str:
    """Read a UTF-8 text file; a missing file or non-UTF-8 bytes are an InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path=path)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"not valid UTF-8 (byte {err.start})", path=path) from None


def read_records(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """Read a JSON array or a JSONL file of objects as (line number, object) pairs.

    For a JSON array the line number is the object's position (1-based). Malformed JSON stops
    with an InputError naming the line.
    """
    path = Path(path)
    text = read_text(path)
    stripped = text.lstrip()
    if not stripped:
        raise InputError("file is empty", path=path)
    records: list[tuple[int, dict[str, Any]]] = []
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"malformed JSON: {err.msg}", path=path, line=err.lineno) from None
        for index, item in enumerate(data, start=1):
            if not isinstance(item, dict):
                raise InputError("expected a JSON object", path=path, line=index)
            records.append((index, item))
        return records
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"malformed JSON: {err.msg}", path=path, line=number) from None
        if not isinstance(item, dict):
            raise InputError("expected a JSON object", path=path, line=number)
        records.append((number, item))
    return records
