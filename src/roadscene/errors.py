"""Errors that the CLI turns into one clear line and exit code 2."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

#: Longest message an InputError prints (a hostile value must not flood the terminal).
MAX_MESSAGE_CHARS = 600
#: Longest echo of a user's value inside a message.
MAX_ECHO_CHARS = 80

# Characters that end a line on some terminal or reader: the message must stay one line.
_LINE_BREAKS = re.compile(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+")
# Other control characters (an ANSI escape in a library's message, a hostile file name).
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f]")


def one_line(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text` on one line (any line break becomes a space, other control characters are shown
    as `\\xNN`), cut to `limit` characters."""
    text = _LINE_BREAKS.sub(" ", text).replace("\t", " ")
    text = _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def excerpt(value: Any, limit: int = MAX_ECHO_CHARS) -> str:
    """`repr(value)`, cut to `limit` characters: how a message quotes what the user gave.

    Containers are summarised before `repr` so a huge (or alias-expanded) value costs nothing."""
    if isinstance(value, dict):
        text = f"<a mapping of {len(value)} keys>" if len(value) > 8 else repr(value)
    elif isinstance(value, list | tuple):
        text = f"<a list of {len(value)} items>" if len(value) > 8 else repr(value)
    elif isinstance(value, str) and len(value) > limit:
        text = repr(value[:limit])
    else:
        text = repr(value)
    return one_line(text, limit)


def exception_summary(err: BaseException, limit: int = 300) -> str:
    """`Type: first line of the message`, never advice to unpickle (`weights_only=False`)."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    first = lines[0] if lines else ""
    if "weights only load failed" in first.lower() or "weights_only" in first:
        first = "the file holds pickled Python objects, not only tensors (refused: unpickling can run code)"
    text = f"{type(err).__name__}: {first}" if first else type(err).__name__
    return one_line(text, limit)


class InputError(Exception):
    """Bad input from the user: a file, a line or a field that cannot be used.

    The message is one line naming the file (and line / field when known); the CLI prints it
    and exits with code 2, never a traceback. Line breaks in any part become spaces and the whole
    is capped at MAX_MESSAGE_CHARS, so a hostile file name or value cannot break the one line.
    """

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.reason = one_line(message)
        where = ""
        if self.path is not None:
            where = self.path
            if line is not None:
                where += f":{line}"
            where += ": "
        if field is not None:
            where += f"field '{field}': "
        super().__init__(one_line(f"{where}{message}"))


def option_error(
    err: Any, *, whole: str | None, renames: dict[str, str] | None = None
) -> InputError:
    """The InputError for a pydantic ValidationError `err` of settings built from command-line
    options: its first error, naming the option (`--batch-size`; `renames` maps a field to an
    option named otherwise) and the value given. An error about the settings as a whole is
    labelled `whole` (None: the message alone)."""
    first = err.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    if first["loc"]:
        name = str(first["loc"][0])
        option = (renames or {}).get(name) or "--" + name.replace("_", "-")
    elif whole is None:
        return InputError(message)
    else:
        option = whole
    return InputError(f"{option}: {message} (got {first['input']!r})")
