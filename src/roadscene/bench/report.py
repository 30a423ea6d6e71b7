"""Readable tables of a `roadscene.bench.gpu` result document (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def _gib(value: int | None) -> str:
    return "—" if value is None else f"{value / 2**30:.2f}"


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}×"


def _count(value: int) -> str:
    return f"{value / 1e9:.3f} B" if value >= 1e8 else f"{value / 1e6:.2f} M"


def render(result: dict[str, Any], console: Console | None = None) -> None:
    import sys

    # Wide enough for the tables when the output goes to a file or a pipe.
    console = console or Console(stderr=True, width=None if sys.stderr.isatty() else 130)
    device = result["device"]
    console.print(
        f"[bold]{device['device_name']}[/] ({device['dtype']}): measured bandwidth "
        f"{device['bandwidth_GBps']:.0f} GB/s, matmul {device['matmul_TFLOPs']:.2f} TFLOP/s; "
        f"scale {result['scale']}, {result['created']}"
    )
    for name, model in result["models"].items():
        params = model["parameters"]
        extra = (
            f", recipe-trainable {_count(params['trainable_recipe'])} "
            f"({_count(params['trainable_effective'])} without the masked embedding rows)"
            if "trainable_recipe" in params
            else ""
        )
        console.print(f"\n[bold]{name}[/]: {_count(params['total'])} parameters{extra}")
        inference = model["inference"]
        latency = Table(title=f"{name}: batch 1, {_first_batch1(inference)['new_tokens']} tokens")
        for column in (
            "processor", "image tok", "preproc ms", "encode+prefill ms", "(×bound)", "image enc ms",
            "decode ms/tok", "(×bound)", "total ms", "peak GiB",
        ):  # fmt: skip
            latency.add_column(column, justify="right")
        throughput = Table(title=f"{name}: throughput (forced length)")
        for column in ("processor", "batch", "images/s", "total ms", "×bound", "peak GiB"):
            throughput.add_column(column, justify="right")
        for variant in ("default", "reduced"):
            if variant not in inference:
                continue
            data = inference[variant]
            b1 = data["batch1"]
            label = variant + (f" ({data['longest_edge']} px)" if "longest_edge" in data else "")
            latency.add_row(
                label,
                _num(data["image_tokens"]),
                _num(b1["preprocess_ms"]),
                _num(b1["encode_prefill_ms"]),
                _x(b1["x_bound"]["encode_prefill"]),
                _num(b1["image_encoding_ms"]),
                _num(b1["decode_ms_per_token"], 2),
                _x(b1["x_bound"]["decode"]),
                _num(b1["total_ms"]),
                _gib(b1["peak_memory_bytes"]),
            )
            for run in data["batched"]:
                throughput.add_row(
                    label,
                    _num(run["batch_size"]),
                    _num(run["images_per_s"], 2),
                    _num(run["total_ms"]),
                    _x(run["x_bound"]),
                    _gib(run["peak_memory_bytes"]),
                )
        console.print(latency)
        console.print(throughput)
        structured = inference.get("structured", {})
        if structured.get("ratio") is not None:
            runs = ", ".join(
                f"batch {run['batch_size']}: {run['ratio']:.2f}× ({run['tokens']} tokens)"
                for run in structured["runs"]
            )
            console.print(f"structured decoding time ratio: {runs}")
        else:
            console.print(f"structured decoding: {structured.get('reason', 'not measured')}")
        training = model.get("training")
        if training:
            table = Table(
                title=f"{name}: training, {training['recipe']}, batch {training['batch_size']}"
            )
            for column in ("grad ckpt", "samples/s", "tokens/s", "step ms", "×bound", "peak GiB"):
                table.add_column(column, justify="right")
            for run in training["runs"]:
                if run.get("samples_per_s") is None:
                    table.add_row(str(run["gradient_checkpointing"]), run.get("reason", "—"))
                    continue
                table.add_row(
                    str(run["gradient_checkpointing"]),
                    _num(run["samples_per_s"], 2),
                    _num(run["tokens_per_s"], 0),
                    _num(run["step_ms"]),
                    _x(run["x_bound"]),
                    _gib(run["peak_memory_bytes"]),
                )
            console.print(table)
    goals = Table(title="Goals (SmolVLM2-2.2B, H100)")
    for column in ("goal", "target", "measured", "met"):
        goals.add_column(column)
    for goal in result["goals"]:
        met = {True: "yes", False: "NO", None: "n/a"}[goal["met"]]
        goals.add_row(goal["goal"], goal["target"], _num(goal["measured"], 2), met)
    console.print(goals)


def _first_batch1(inference: dict[str, Any]) -> dict[str, Any]:
    return inference["default"]["batch1"]
