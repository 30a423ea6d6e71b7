"""The one way roadscene writes an output file or folder.

- Atomic: the new content is written to a hidden temporary sibling (`.NAME.PID-XXXX.tmp`) and
  renamed over the target only when complete, so an interrupted command leaves the old content
  (or nothing), never half a file. Temporaries of a process that no longer runs (a killed
  command) are removed by the next write to the same place.
- Never over what roadscene did not write: an existing target is replaced only when the caller's
  `ours` test says it is the kind of thing the command writes (a report, a build folder...); a
  file where a folder is expected, or the reverse, is an error.
- A place that cannot be written (a read-only or virtual file system such as /proc, a parent that
  is a file, no permission, a full disk) is one InputError naming it, checked before any long work
  by `check_output`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from roadscene.errors import InputError

#: `ours(path) -> bool`: whether an existing output is one this command wrote (may be replaced).
Ours = Callable[[Path], bool]

# Errors while writing the content that are about the place, not about the program.
_PLACE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO, errno.EACCES}


def dumps_line(obj: Any) -> str:
    """One JSON object as the published exports write it: UTF-8 kept, `", "` and `": "`."""
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


def _cannot_write(path: Path, err: OSError) -> InputError:
    reason = err.strerror or str(err) or type(err).__name__
    return InputError(f"cannot write here: {reason}", path=path)


@contextlib.contextmanager
def place_errors(path: Path) -> Iterator[None]:
    """OSErrors of creating, renaming or probing become one InputError naming `path`."""
    try:
        yield
    except OSError as err:
        raise _cannot_write(path, err) from None


def _existing_ancestor(folder: Path) -> Path:
    """The nearest folder above (or at) `folder` that exists; an error when that is a file."""
    current = folder
    while True:
        try:
            if current.exists() or current.is_symlink():
                break
        except OSError as err:  # a link loop on the way
            raise _cannot_write(folder, err) from None
        if current.parent == current:
            break
        current = current.parent
    if not current.is_dir():
        raise InputError(f"cannot write here: {current} is a file, not a folder", path=folder)
    return current


def check_output(
    path: str | Path, *, folder: bool = False, ours: Ours | None = None, what: str | None = None
) -> Path:
    """Check, before any work, that `path` can be written: the right kind (file or folder), not
    something roadscene did not write (when `ours` is given), in a place that accepts new files.
    `what` names the expected output in messages (e.g. "a report JSON file")."""
    path = Path(path)
    what = what or ("a folder" if folder else "a file")
    if path.is_symlink() and not path.exists():
        raise InputError("is a broken symbolic link; choose another path", path=path)
    if path.exists():
        if folder and not path.is_dir():
            raise InputError(f"is a file; expected {what}", path=path)
        if not folder and path.is_dir():
            raise InputError(f"is a folder; expected {what}", path=path)
        if not folder and not path.is_file():
            raise InputError(f"is not a regular file; expected {what}", path=path)
        empty_folder = folder and not any(path.iterdir())
        if ours is not None and not empty_folder and not ours(path):
            raise InputError(
                f"exists and is not {what} written by roadscene; choose another path or remove it",
                path=path,
            )
    ancestor = _existing_ancestor(path.parent)
    try:
        fd, probe = tempfile.mkstemp(prefix=".roadscene-probe-", dir=ancestor)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise InputError(
            f"cannot write here: cannot create files in {ancestor} ({reason})", path=path
        ) from None
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporaries `atomic_write` / `atomic_dir` left beside `path` in a process that
    is gone (killed mid-write); returns what was removed."""
    prefix = f".{path.name}."
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent):
            name = entry.name
            if not (name.startswith(prefix) and name.endswith(".tmp")):
                continue
            pid_text, sep, _ = name[len(prefix) : -len(".tmp")].partition("-")
            if not sep or not pid_text.isdigit():
                continue
            pid = int(pid_text)
            if pid == os.getpid() or _alive(pid):
                continue
            stale = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
            removed.append(stale)
    return removed


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}-"


@contextlib.contextmanager
def _content_errors(path: Path) -> Iterator[None]:
    """A full disk (or the like) while writing the content is an InputError naming `path`."""
    try:
        yield
    except OSError as err:
        if err.errno in _PLACE_ERRORS:
            raise _cannot_write(path, err) from None
        raise


@contextlib.contextmanager
def atomic_write(
    path: str | Path,
    mode: str = "w",
    encoding: str | None = "utf-8",
    *,
    ours: Ours | None = None,
    what: str | None = None,
) -> Iterator[Any]:
    """Write to a temporary file beside `path`, rename over it only when the block succeeds.

    With `ours`, an existing `path` is replaced only when `ours(path)` says roadscene wrote it."""
    path = check_output(path, ours=ours, what=what)
    with place_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        kwargs = {"encoding": encoding} if "b" not in mode else {}
        with _content_errors(path), os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
        with place_errors(path):
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(
    path: str | Path, *, ours: Ours | None = None, what: str | None = None
) -> Iterator[Path]:
    """Build a folder's new files in a temporary sibling folder; move them into `path` only when
    the block succeeds, so `path` is never left half-written.

    With `ours`, an existing non-empty `path` is written into only when `ours(path)` says
    roadscene wrote it."""
    path = check_output(path, folder=True, ours=ours, what=what)
    with place_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        with _content_errors(path):
            yield tmp
        with place_errors(path):
            path.mkdir(parents=True, exist_ok=True)
            for item in tmp.iterdir():
                target = path / item.name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                elif item.is_dir() and (target.exists() or target.is_symlink()):
                    target.unlink()
                os.replace(item, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(
    path: str | Path,
    obj: Any,
    *,
    indent: int | None = 2,
    ours: Ours | None = None,
    what: str | None = None,
) -> None:
    """`obj` as JSON (UTF-8 kept) into `path`, atomically (see `atomic_write`)."""
    with atomic_write(path, ours=ours, what=what) as handle:
        json.dump(obj, handle, ensure_ascii=False, indent=indent)
        handle.write("\n")
