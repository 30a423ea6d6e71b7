"""`roadscene bench gpu`: speed and memory at real size with random weights (bench/gpu.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from roadscene.errors import InputError

app = typer.Typer(
    help="Benchmarks of the shipped code paths (see docs/performance.md).",
    no_args_is_help=True,
    add_completion=False,
)

# settings field -> command-line option, for error messages
_OPTION_NAMES = {"archs": "--arch", "batch_sizes": "--batch-size"}


@app.command("gpu")
def gpu(
    scale: Annotated[
        str, typer.Option(help="real: published sizes (CUDA GPU); tiny: tiny configs (CPU).")
    ] = "tiny",
    arch: Annotated[
        list[str] | None, typer.Option(help="Architecture(s) to run (default: every family's).")
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
    """Every family at its real size (SmolVLM2-2.2B, Qwen3-VL-2B, OpenFlamingo-3B; random weights,
    no download): inference latency split, throughput, structured-decoding ratio, training steps,
    each beside its bandwidth / FLOP bound. Tables on stderr, one JSON document on stdout or
    --out."""
    from pydantic import ValidationError

    from roadscene.bench.gpu import GpuBenchSettings, is_bench_file, run_gpu_bench
    from roadscene.bench.report import render
    from roadscene.io import check_output, write_json

    what = "a benchmark JSON file"
    if out is not None:
        check_output(out, ours=is_bench_file, what=what)

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
    except ValidationError as err:
        first = err.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "settings"
        option = _OPTION_NAMES.get(field, "--" + field.replace("_", "-"))
        message = first["msg"].removeprefix("Value error, ")
        raise InputError(f"{message} (got {first['input']!r})", field=option) from None
    result = run_gpu_bench(settings, progress=lambda message: print(message, file=sys.stderr))
    render(result)
    if out is not None:
        write_json(out, result, ours=is_bench_file, what=what)
        print(f"wrote {out}", file=sys.stderr)
    else:
        print(json.dumps(result, indent=2))
