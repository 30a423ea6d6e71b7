"""One clear line for a model that cannot be loaded.

While transformers loads a model its progress bar and its load report go to stderr; when the load
fails they would stand above the error (a table of dozens of lines for a shape mismatch). Here
they are held back during the load: replayed unchanged when it succeeds (the report of missing or
newly initialised weights matters), summarised into the one-line InputError when it fails.
"""

from __future__ import annotations

import io
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from roadscene.errors import InputError, exception_summary

_MISMATCH = re.compile(
    r"^(\S+)\s*\|\s*MISMATCH\s*\|.*?ckpt:\s*(torch\.Size\(\[[^\]]*\]\)).*?model:\s*(torch\.Size\(\[[^\]]*\]\))"
)


@contextmanager
def _held_back_transformers_output() -> Iterator[io.StringIO]:
    """transformers' log records (and no progress bar) go to a buffer during the block."""
    from transformers.utils import logging as hf_logging

    buffer = io.StringIO()
    root = logging.getLogger("transformers")
    handler = logging.StreamHandler(buffer)
    saved_handlers = root.handlers[:]
    bars = hf_logging.is_progress_bar_enabled()
    root.handlers = [handler]
    hf_logging.disable_progress_bar()
    try:
        yield buffer
    finally:
        root.handlers = saved_handlers
        if bars:
            hf_logging.enable_progress_bar()


def _shape_mismatch(report: str) -> str | None:
    rows = [m for line in report.splitlines() if (m := _MISMATCH.match(line.strip()))]
    if not rows:
        return None
    key, checkpoint, model = rows[0].groups()
    more = f" (and {len(rows) - 1} more)" if len(rows) > 1 else ""
    return f"weights do not fit config.json: {key} is {checkpoint} in the weights, {model} in the config{more}"


@contextmanager
def loading_errors(source: str | Path) -> Iterator[None]:
    """Turn whatever goes wrong while loading weights, config or tokenizer into one InputError
    naming the model: a hub id that is not available offline, or a local folder whose files are
    missing, truncated, of the wrong shape or not what its config says."""
    with _held_back_transformers_output() as held:
        try:
            yield
        except InputError:
            raise
        except Exception as err:  # safetensors, json, tokenizers, shape and hub errors alike
            reason = _shape_mismatch(held.getvalue()) or exception_summary(
                err
            )  # never unpickling advice
            if Path(source).is_dir():
                raise InputError(f"cannot load this model folder: {reason}", path=source) from None
            raise InputError(
                "cannot load model: not a local model folder and not available from the Hugging "
                f"Face hub (offline or not downloaded); run `huggingface-cli download {source}` "
                f"with network access or pass --model DIR of a saved model ({type(err).__name__})",
                path=source,
            ) from None
    if held.getvalue():
        sys.stderr.write(held.getvalue())


class _OptionalKernelNotice(logging.Filter):
    """Drops bitsandbytes' notice that an optional CPU kernel package is not installed: it is
    printed whenever PEFT is imported on a machine without that package and says nothing about
    the run (it would stand above every later error line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "from kernels-community" not in record.getMessage()


def quiet_optional_kernel_notices() -> None:
    """Install `_OptionalKernelNotice` on the bitsandbytes logger that prints it (once; a filter
    applies to the records of its own logger only)."""
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    if not any(isinstance(f, _OptionalKernelNotice) for f in logger.filters):
        logger.addFilter(_OptionalKernelNotice())
