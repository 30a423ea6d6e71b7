"""Timing, peak memory and the device's physical limits (memory bandwidth, matmul throughput).

On CUDA, times come from CUDA events around the work (the host does not wait between calls,
so launch overhead that the GPU hides is not counted twice) and memory from
`torch.cuda.max_memory_allocated`. On the CPU, times come from `time.perf_counter` and peak
memory is not measured (reported as None).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Timing:
    """Wall times of the measured repetitions (after warmup), in seconds."""

    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def best(self) -> float:
        return min(self.seconds)

    def to_dict(self) -> dict[str, Any]:
        return {"median_s": self.median, "min_s": self.best, "repeats": len(self.seconds)}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(
    fn: Callable[[], Any], *, device: torch.device, warmup: int = 1, repeat: int = 3
) -> Timing:
    """Run `fn` `warmup` times untimed, then `repeat` times timed (each run synchronised)."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    seconds = []
    for _ in range(repeat):
        if device.type == "cuda":
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            seconds.append(start.elapsed_time(end) / 1000.0)
        else:
            began = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - began)
    return Timing(seconds)


@dataclass
class PeakMemory:
    """Peak allocated device memory inside a `track_peak_memory` block (None on the CPU)."""

    bytes: int | None = None

    @property
    def gib(self) -> float | None:
        return None if self.bytes is None else self.bytes / 2**30


@contextmanager
def track_peak_memory(device: torch.device) -> Iterator[PeakMemory]:
    peak = PeakMemory()
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    try:
        yield peak
    finally:
        if device.type == "cuda":
            synchronize(device)
            peak.bytes = int(torch.cuda.max_memory_allocated(device))


class Clock:
    """Time points on the device's timeline: CUDA events (recorded in stream order, read after
    one synchronize) or `perf_counter` on the CPU."""

    def __init__(self, device: torch.device):
        self.device = device

    def mark(self) -> Any:
        if self.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def seconds_between(self, start: Any, end: Any) -> float:
        if self.device.type == "cuda":
            end.synchronize()
            return start.elapsed_time(end) / 1000.0
        return end - start


@dataclass
class GenerationTrace:
    """Time points inside ONE `generate` call: call start, vision tower start/end, and the
    logits of every step (the first ends the prefill, the rest are decode steps)."""

    start: Any = None
    vision_start: Any = None
    vision_end: Any = None
    steps: list[Any] = field(default_factory=list)
    end: Any = None


@dataclass
class GenerationSplit:
    """Seconds of one traced call: preprocessing (processor, collate, copy to the device),
    image encoding, encoding + prefill (vision start to first logits), decode per token."""

    total: float
    preprocess: float
    image_encoding: float
    encode_prefill: float
    decode_per_token: float | None
    steps: int


def split_trace(clock: Clock, trace: GenerationTrace) -> GenerationSplit:
    if trace.vision_start is None or not trace.steps:
        raise RuntimeError("the generate call never ran the vision tower or produced logits")
    steps = len(trace.steps)
    decode = (
        clock.seconds_between(trace.steps[0], trace.steps[-1]) / (steps - 1) if steps > 1 else None
    )
    return GenerationSplit(
        total=clock.seconds_between(trace.start, trace.end),
        preprocess=clock.seconds_between(trace.start, trace.vision_start),
        image_encoding=clock.seconds_between(trace.vision_start, trace.vision_end),
        encode_prefill=clock.seconds_between(trace.vision_start, trace.steps[0]),
        decode_per_token=decode,
        steps=steps,
    )


@dataclass
class DeviceLimits:
    """Measured peaks: memory bandwidth (bytes/s) and dense matmul throughput (FLOP/s)."""

    device_name: str
    dtype: str
    bandwidth_bytes_per_s: float
    matmul_flops_per_s: float
    bandwidth_buffer_bytes: int
    matmul_size: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "device_name": self.device_name,
            "dtype": self.dtype,
            "bandwidth_GBps": self.bandwidth_bytes_per_s / 1e9,
            "matmul_TFLOPs": self.matmul_flops_per_s / 1e12,
            "bandwidth_buffer_MiB": self.bandwidth_buffer_bytes / 2**20,
            "matmul_size": self.matmul_size,
        }


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    model = platform.processor() or platform.machine()
    try:  # Linux names the CPU model here
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            model = next(
                (
                    line.split(":", 1)[1].strip()
                    for line in cpuinfo
                    if line.startswith("model name")
                ),
                model,
            )
    except OSError:
        pass
    return f"CPU: {model}, {torch.get_num_threads()} torch threads"


def measure_bandwidth(device: torch.device, nbytes: int, *, repeat: int = 5) -> float:
    """Bytes/s of a large device-to-device copy: each copy reads and writes `nbytes`."""
    source = torch.empty(nbytes, dtype=torch.uint8, device=device).random_(0, 255)
    target = torch.empty_like(source)
    timing = time_call(lambda: target.copy_(source), device=device, warmup=2, repeat=repeat)
    return 2 * nbytes / timing.best


def measure_matmul(
    device: torch.device, size: int, dtype: torch.dtype, *, repeat: int = 5
) -> float:
    """FLOP/s of a square (size x size) @ (size x size) matmul in `dtype` (2·size³ FLOPs)."""
    left = torch.randn(size, size, device=device, dtype=dtype)
    right = torch.randn(size, size, device=device, dtype=dtype)
    timing = time_call(lambda: left @ right, device=device, warmup=2, repeat=repeat)
    return 2 * size**3 / timing.best


def measure_limits(
    device: torch.device, dtype: torch.dtype, *, bandwidth_bytes: int, matmul_size: int
) -> DeviceLimits:
    return DeviceLimits(
        device_name=device_name(device),
        dtype=str(dtype).removeprefix("torch."),
        bandwidth_bytes_per_s=measure_bandwidth(device, bandwidth_bytes),
        matmul_flops_per_s=measure_matmul(device, matmul_size, dtype),
        bandwidth_buffer_bytes=bandwidth_bytes,
        matmul_size=matmul_size,
    )
