"""Speed and memory of SmolVLM2-2.2B and OpenFlamingo-3B at real size, random weights.

GPU (any CUDA machine, no network, no weights needed):
    python bench/gpu.py --scale real --out gpu.json
CPU smoke run of the same measurements on tiny configs (seconds):
    python bench/gpu.py --scale tiny --new-tokens 16 --out tiny.json

Prints a table on stderr and the JSON document on stdout (or to --out). See docs/performance.md.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    scale: Annotated[str, typer.Option(help="real (published sizes, GPU) or tiny (CPU).")] = "tiny",
    arch: Annotated[
        list[str] | None, typer.Option(help="Architecture(s) to run (default: both families).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cuda or cpu.")] = "auto",
    new_tokens: Annotated[int, typer.Option(help="Forced generation length.")] = 128,
    batch_size: Annotated[
        list[int] | None, typer.Option(help="Throughput batch sizes (default 8 and 32).")
    ] = None,
    train_batch_size: Annotated[int, typer.Option(help="Training batch size.")] = 4,
    train_steps: Annotated[int, typer.Option(help="Timed training steps.")] = 5,
    repeats: Annotated[int, typer.Option(help="Timed repetitions at batch 1.")] = 3,
    warmup: Annotated[int, typer.Option(help="Untimed warmup runs.")] = 1,
    structured: Annotated[bool, typer.Option(help="Measure constrained decoding.")] = True,
    training: Annotated[bool, typer.Option(help="Measure training steps.")] = True,
    cpu_threads: Annotated[
        int | None, typer.Option(help="torch CPU threads (default 1 at tiny scale).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the JSON here (else stdout).")] = None,
) -> None:
    from pydantic import ValidationError

    from roadscene.bench.gpu import GpuBenchSettings, run_gpu_bench
    from roadscene.bench.report import render
    from roadscene.errors import InputError
    from roadscene.io import write_json

    try:
        settings = GpuBenchSettings(
            scale=scale,
            archs=arch or None,
            device=device,
            new_tokens=new_tokens,
            train_batch_size=train_batch_size,
            train_steps=train_steps,
            repeats=repeats,
            warmup=warmup,
            structured=structured,
            training=training,
            cpu_threads=cpu_threads,
            **({"batch_sizes": batch_size} if batch_size else {}),
        )
    except ValidationError as err:  # one line naming the option and the bad value
        first = err.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "settings"
        option = "--" + {"archs": "arch", "batch_sizes": "batch-size"}.get(field, field).replace(
            "_", "-"
        )
        message = first["msg"].removeprefix("Value error, ")
        print(f"error: {option}: {message} (got {first['input']!r})", file=sys.stderr)
        raise typer.Exit(2) from None
    try:
        result = run_gpu_bench(settings, progress=lambda message: print(message, file=sys.stderr))
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        raise typer.Exit(err.exit_code) from None
    render(result)
    if out is not None:
        write_json(out, result)
        print(f"wrote {out}", file=sys.stderr)
    else:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    app()
