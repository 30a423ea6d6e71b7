"""The one way roadscene reads a user's file.

- Only a regular file is read: a folder, a named pipe (reading it would wait forever), a socket,
  a device, a broken link or a link loop is an InputError saying what it is.
- Text is UTF-8, with or without a byte-order mark; other bytes name the line they are on.
- Lines end at "\\n" only (a "\\r" before it belongs to a CRLF ending): U+2028, U+0085, a lone
  "\\r" or a form feed inside a JSON string or a caption stays inside its line.
- JSON nests at most MAX_JSON_DEPTH levels and integers have at most MAX_INT_DIGITS digits;
  anything deeper or longer is an InputError, never a RecursionError or a slow conversion.
- CSV fields are at most CSV_FIELD_LIMIT characters (Python's csv default); a longer one (often
  a quote left open) is an InputError naming the line where its row starts.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roadscene.errors import InputError, exception_summary

MAX_JSON_DEPTH = 64
MAX_INT_DIGITS = 100
CSV_FIELD_LIMIT = 131072


def _kind(mode: int) -> str | None:
    """What a non-regular file is, in words (None for a regular file)."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def regular_file(path: str | Path, what: str = "file") -> Path:
    """`path` when it is a regular file that can be opened for reading; otherwise an InputError
    that says what it is (`what` names the expected thing: "image", "file"...)."""
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise InputError(
                f"{what} is a broken symbolic link (to {os.readlink(path)})", path=path
            ) from None
        raise InputError(f"{what} not found", path=path) from None
    except NotADirectoryError:
        raise InputError(f"{what} not found (a folder on its path is a file)", path=path) from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise InputError(f"{what} is a symbolic link loop", path=path) from None
        raise InputError(f"cannot read {what}: {err.strerror}", path=path) from None
    kind = _kind(info.st_mode)
    if kind is not None:
        raise InputError(f"is {kind}, not a{'n' if what[0] in 'aeiou' else ''} {what}", path=path)
    return path


def read_bytes(path: str | Path, what: str = "file") -> bytes:
    """The bytes of a regular file (see `regular_file`); unreadable is an InputError."""
    path = regular_file(path, what)
    try:
        return path.read_bytes()
    except OSError as err:
        raise InputError(f"cannot read {what}: {err.strerror or err}", path=path) from None


def decode_text(data: bytes, path: str | Path) -> str:
    """UTF-8 bytes (a leading byte-order mark dropped) as text; other bytes name their line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise InputError(f"not valid UTF-8 (byte {err.start})", path=path, line=line) from None


def read_text(path: str | Path) -> str:
    """Read a UTF-8 text file (with or without a byte-order mark); a missing file, something that
    is not a regular file, or non-UTF-8 bytes are an InputError."""
    return decode_text(read_bytes(path), path)


def split_lines(text: str) -> list[str]:
    """Lines of `text` split at "\\n" only; a "\\r" ending a line (CRLF) is dropped, and the
    empty piece after a final newline is not a line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


class _IntTooLong(ValueError):
    pass


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise _IntTooLong(digits)
    return int(digits)


def _too_deep(value: Any) -> bool:
    """Whether `value` nests containers deeper than MAX_JSON_DEPTH (iterative, no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def loads_json(text: str, *, path: str | Path | None = None, line: int | None = None) -> Any:
    """Parse JSON text with bounded nesting and integer size; any problem is an InputError
    naming `path` and the line (`line` for one line of a JSONL file, else the error's line)."""
    try:
        value = json.loads(text, parse_int=_bounded_int)
    except _IntTooLong:
        raise InputError(
            f"an integer has more than {MAX_INT_DIGITS} digits", path=path, line=line
        ) from None
    except json.JSONDecodeError as err:
        where = line if line is not None else err.lineno
        raise InputError(f"malformed JSON: {err.msg}", path=path, line=where) from None
    except RecursionError:
        value = None
        deep = True
    else:
        deep = _too_deep(value)
    if deep:
        raise InputError(
            f"JSON nested deeper than {MAX_JSON_DEPTH} levels", path=path, line=line
        ) from None
    return value


def read_json(path: str | Path) -> Any:
    """A whole file as one JSON value (see `loads_json`)."""
    text = read_text(path)
    if not text.strip():
        raise InputError("file is empty", path=path)
    return loads_json(text, path=path)


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
        data = loads_json(text, path=path)
        if not isinstance(data, list):
            raise InputError("expected a JSON array of objects", path=path)
        for index, item in enumerate(data, start=1):
            if not isinstance(item, dict):
                raise InputError("expected a JSON object", path=path, line=index)
            records.append((index, item))
        return records
    for number, line in enumerate(split_lines(text), start=1):
        if not line.strip():
            continue
        item = loads_json(line, path=path, line=number)
        if not isinstance(item, dict):
            raise InputError("expected a JSON object", path=path, line=number)
        records.append((number, item))
    return records


@dataclass(frozen=True)
class CsvRow:
    """One CSV record: the line it starts on, the line it ends on, its fields."""

    line: int
    last_line: int
    fields: list[str]


def read_csv(path: str | Path) -> list[CsvRow]:
    """Every non-blank record of a CSV file (the header first), with its line numbers.

    Quoted fields may span lines (`last_line` tells); a field over CSV_FIELD_LIMIT characters or
    a CSV the reader cannot parse is an InputError naming the line its record starts on.
    """
    text = read_text(path)
    csv.field_size_limit(CSV_FIELD_LIMIT)  # process-wide; set so the bound holds whoever ran before
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[CsvRow] = []
    start = 1
    try:
        for fields in reader:
            if fields:
                rows.append(CsvRow(start, reader.line_num, fields))
            start = reader.line_num + 1
    except csv.Error as err:
        if "field limit" in str(err):
            message = (
                f"a field is longer than {CSV_FIELD_LIMIT} characters (a quote opened on this "
                "line and never closed?)"
            )
        else:
            message = f"malformed CSV: {err}"
        raise InputError(message, path=path, line=start) from None
    return rows


#: Most nodes a YAML document may stand for once its aliases are expanded (a recipe has ~60).
MAX_YAML_NODES = 10_000


def _yaml_node_problem(root: Any) -> str | None:
    """Why a composed YAML node graph is refused (None: it is fine): more than MAX_YAML_NODES
    nodes once aliases are expanded (an alias bomb), an alias that contains itself, or nesting
    deeper than MAX_JSON_DEPTH. Computed on the graph, without expanding anything."""
    import yaml

    def children(node: Any) -> list[Any]:
        if isinstance(node, yaml.SequenceNode):
            return list(node.value)
        if isinstance(node, yaml.MappingNode):
            return [part for pair in node.value for part in pair]
        return []

    size: dict[int, int] = {}
    height: dict[int, int] = {}
    in_progress: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        key = id(node)
        if expanded:
            in_progress.discard(key)
            kids = children(node)
            total = 1 + sum(size[id(kid)] for kid in kids)
            size[key] = min(total, MAX_YAML_NODES + 1)
            height[key] = 1 + max((height[id(kid)] for kid in kids), default=0)
            if size[key] > MAX_YAML_NODES:
                return (
                    f"the document expands to more than {MAX_YAML_NODES} values through its "
                    "aliases (*name); write the values out"
                )
            if height[key] > MAX_JSON_DEPTH:
                return f"nested deeper than {MAX_JSON_DEPTH} levels"
            continue
        if key in size:
            continue
        if key in in_progress:
            return "an alias (*name) refers to a value that contains it"
        in_progress.add(key)
        stack.append((node, True))
        stack.extend((kid, False) for kid in children(node) if id(kid) not in size)
    return None


def loads_yaml(text: str, *, path: str | Path | None = None) -> Any:
    """Parse YAML safely (no tags that build Python objects) with a bound on what aliases may
    expand to; a malformed or refused document is an InputError naming the line."""
    import yaml

    loader = None
    try:
        loader = yaml.SafeLoader(text)  # rejects unprintable characters (NUL...) here
        node = loader.get_single_node()
        if node is None:
            return None
        problem = _yaml_node_problem(node)
        if problem is not None:
            raise InputError(f"refused YAML: {problem}", path=path, line=node.start_mark.line + 1)
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise InputError(
            f"malformed YAML: {getattr(err, 'problem', None) or err}",
            path=path,
            line=mark.line + 1 if mark is not None else None,
        ) from None
    except RecursionError:
        raise InputError(f"YAML nested deeper than {MAX_JSON_DEPTH} levels", path=path) from None
    except ValueError as err:  # a number YAML cannot convert (over 4300 digits...)
        raise InputError(f"unusable YAML value: {exception_summary(err, 120)}", path=path) from None
    finally:
        if loader is not None:
            loader.dispose()
