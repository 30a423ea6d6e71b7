"""Speed and memory of roadscene's models at real size, with random weights (no download).

For each stored architecture (`roadscene.models.arch`): inference through the family's
`generate` (the `roadscene predict` path) — batch 1 split into image encoding + prefill and
decode, throughput at larger batches, SmolVLM's default vs reduced image processor, the
grammar-constrained (`--structured`) ratio — and training steps of each family's recipe (LoRA
for SmolVLM2, cross-attention training for Flamingo) with and without gradient checkpointing.
Every time comes with its physical lower bound from the measured bandwidth and matmul
throughput (`roadscene.bench.costs`). `run_gpu_bench` returns one JSON-able document.
"""

from __future__ import annotations

import datetime as dt
import math
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field, field_validator

from roadscene.bench.inference import _free_memory, measure_inference
from roadscene.bench.measure import (
    measure_limits,
)
from roadscene.bench.subjects import build_subject, meta_model
from roadscene.bench.training import measure_training
from roadscene.errors import InputError
from roadscene.models import costs, get_family, list_families
from roadscene.models.arch import list_archs, load_arch

SCHEMA = "roadscene.bench.gpu/1"
REPO_ROOT = Path(__file__).resolve().parents[3]


def scale_archs(scale: str) -> list[str]:
    """The stored architectures every family benchmarks at `scale` (real / tiny)."""
    names = [get_family(name).bench_archs.get(scale) for name in list_families()]
    return [name for name in names if name]


GOALS_ARCH = "smolvlm2-2.2b"


class GpuBenchSettings(BaseModel):
    """What to measure and how often. Defaults are the settings of docs/performance.md."""

    scale: Literal["tiny", "real"] = Field(
        "tiny",
        description="real: the published sizes (needs a CUDA GPU); tiny: the same "
        "measurements on tiny configs (CPU, seconds).",
    )
    archs: list[str] | None = Field(
        None, description="Architectures to run (default: every family's at the chosen scale)."
    )
    device: Literal["auto", "cuda", "cpu"] = Field("auto", description="auto: cuda if available.")
    new_tokens: int = Field(128, ge=2, description="Forced generation length (no EOS stop).")
    batch_sizes: list[int] = Field(
        default_factory=lambda: [8, 32], description="Batch sizes of the throughput runs."
    )
    train_batch_size: int = Field(4, ge=1, description="Training batch size.")
    train_steps: int = Field(5, ge=1, description="Timed training steps per configuration.")
    warmup: int = Field(1, ge=0, description="Untimed warmup runs before each measurement.")
    repeats: int = Field(3, ge=1, description="Timed repetitions of each batch-1 measurement.")
    batched_repeats: int = Field(2, ge=1, description="Timed repetitions of each batched run.")
    structured: bool = Field(True, description="Measure grammar-constrained decoding too.")
    clip_frames: int = Field(
        8, ge=0, le=64, description="Frames of the clip case (families taking clips); 0: none."
    )
    training: bool = Field(True, description="Measure training steps.")
    bandwidth_mib: int | None = Field(
        None, ge=1, description="Copy size of the bandwidth test (default 2048 on CUDA, 64 on CPU)."
    )
    matmul_size: int | None = Field(
        None, ge=16, description="Matmul size of the throughput test (default 8192 / 512)."
    )
    cpu_threads: int | None = Field(
        None,
        ge=1,
        description="torch CPU threads (default: 1 at tiny scale, where one thread "
        "is fastest and least disturbed by other load; torch's default otherwise).",
    )
    allow_real_on_cpu: bool = Field(
        False, description="Permit --scale real without a GPU (needs ~20 GB RAM and hours)."
    )

    @field_validator("archs")
    @classmethod
    def _known_archs(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            unknown = [name for name in value if name not in list_archs()]
            if unknown:
                raise ValueError(
                    f"unknown architecture(s) {', '.join(unknown)}; valid: {', '.join(list_archs())}"
                )
        return value

    @field_validator("batch_sizes")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if not value or any(size < 1 for size in value):
            raise ValueError(f"batch_sizes must be positive integers, got {value}")
        return value


# ----------------------------------------------------------------------------- helpers


# ----------------------------------------------------------------------------- goals


def evaluate_goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The H100 goals for SmolVLM2-2.2B (docs/performance.md), checked when that architecture was
    measured."""
    model = result["models"].get(GOALS_ARCH)
    applies = model is not None and result["device"]["type"] == "cuda"
    goals = [
        ("batch 1: prefill + 128 tokens (s per image)", "<=", 0.4),
        ("batched throughput (images/s)", ">=", 25.0),
        ("batch 1 peak memory, bf16 (GB)", "<=", 5.5),
        ("decode vs bandwidth bound (x)", "<=", 2.0),
    ]
    measured: list[float | None] = [None] * len(goals)
    if model is not None and "inference" in model:
        default = model["inference"]["default"]
        batch1 = default["batch1"]
        peak = batch1["peak_memory_bytes"]
        measured = [
            batch1["total_ms"] / 1000.0,
            max(run["images_per_s"] for run in default["batched"]),
            None if peak is None else peak / 1e9,
            batch1["x_bound"]["decode"],
        ]
    out = []
    for (name, op, target), value in zip(goals, measured, strict=True):
        met = None
        if applies and value is not None:
            met = value <= target if op == "<=" else value >= target
        out.append({"goal": name, "target": f"{op} {target}", "measured": value, "met": met})
    return out


# ----------------------------------------------------------------------------- driver


def resolve_device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise InputError("--device cuda but no CUDA GPU is visible", field="device")
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _versions() -> dict[str, str]:
    import transformers

    import roadscene

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": str(torch.version.cuda),
        "transformers": transformers.__version__,
        "roadscene": getattr(roadscene, "__version__", "unknown"),
    }


def parameter_summary(arch_name: str) -> dict[str, Any]:
    """Parameter counts of an architecture built on the meta device (no memory), by part."""
    arch = load_arch(arch_name)
    model = meta_model(arch)
    counted: set[int] = set()  # a tied head shares its embedding: count each tensor once
    parts: dict[str, int] = {}
    for name, child in _parts(model):
        fresh = [p for p in child.parameters() if id(p) not in counted]
        counted.update(id(p) for p in fresh)
        parts[name] = sum(p.numel() for p in fresh)
    summary: dict[str, Any] = {"total": costs.count_parameters(model)["total"], "parts": parts}
    summary.update(get_family(arch.family).recipe_trainable(model) or {})
    return summary


def _parts(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    inner = getattr(model, "model", None)
    if inner is not None:  # transformers VLMs: model.{vision, connector, text} + lm_head
        return [*inner.named_children(), ("lm_head", model.lm_head)]
    return list(model.named_children())


def is_bench_file(path: Path) -> bool:
    """Whether `path` is a JSON document `roadscene bench gpu` wrote (it may be replaced)."""
    from roadscene.errors import InputError
    from roadscene.io import read_json

    try:
        document = read_json(path)
    except InputError:
        return False
    return isinstance(document, dict) and document.get("schema") == SCHEMA


def run_gpu_bench(
    settings: GpuBenchSettings, *, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Run every measurement `settings` asks for; returns the JSON document."""
    say = progress or (lambda message: None)
    device = resolve_device(settings.device)
    if settings.scale == "real" and device.type != "cuda" and not settings.allow_real_on_cpu:
        raise InputError(
            "--scale real needs a CUDA GPU (none visible); use --scale tiny on the CPU",
            field="scale",
        )
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if device.type == "cpu":
        threads = settings.cpu_threads or (1 if settings.scale == "tiny" else None)
        if threads is not None:
            torch.set_num_threads(threads)
    archs = settings.archs or scale_archs(settings.scale)
    bandwidth_mib = settings.bandwidth_mib or (2048 if device.type == "cuda" else 64)
    matmul_size = settings.matmul_size or (8192 if device.type == "cuda" else 512)

    say(f"measuring device limits on {device}")
    limits = measure_limits(
        device, dtype, bandwidth_bytes=bandwidth_mib * 2**20, matmul_size=matmul_size
    )
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "scale": settings.scale,
        "device": {"type": device.type, **limits.to_dict()},
        "versions": _versions(),
        "settings": settings.model_dump(),
        "notes": [
            "random weights at the stored architecture; cost does not depend on weight values",
            "tokenizer is the family's locally trained one: text token counts differ slightly "
            "from the real tokenizer's, image token counts are exact",
        ],
        "models": {},
    }
    if device.type == "cpu":
        result["notes"].append(
            "CPU run: peak memory is not measured (null); absolute times are disturbed by other "
            "load on the machine, ratios within the run are what to read"
        )
    workdir = Path(tempfile.mkdtemp(prefix="roadscene-bench-"))
    for arch_name in archs:
        arch = load_arch(arch_name)
        say(f"{arch_name}: parameter counts (meta device)")
        entry: dict[str, Any] = {
            "family": arch.family,
            "parameters": parameter_summary(arch_name),
        }
        say(f"{arch_name}: building random-init model on {device} ({dtype})")
        subject = build_subject(arch, device=device, dtype=dtype, workdir=workdir)
        entry["weights_bytes"] = costs.parameter_bytes(subject.model)
        entry["dtype"] = str(dtype).removeprefix("torch.")
        say(f"{arch_name}: inference")
        entry["inference"] = measure_inference(subject, limits, settings)
        _free_memory(device)
        if settings.training:
            if get_family(arch.family).recipe_trains_in_fp32 and device.type == "cuda":
                # The recipe keeps fp32 master weights under bf16 autocast.
                del subject
                _free_memory(device)
                subject = build_subject(arch, device=device, dtype=torch.float32, workdir=workdir)
            say(f"{arch_name}: training")
            entry["training"] = measure_training(subject, limits, settings)
        result["models"][arch_name] = entry
        del subject
        _free_memory(device)
    result["goals"] = evaluate_goals(result)
    _check_finite(result)
    return result


def _check_finite(document: Any, where: str = "$") -> None:
    """Refuse to emit NaN/inf (a broken measurement must not look like a number)."""
    if isinstance(document, float) and not math.isfinite(document):
        raise RuntimeError(f"non-finite value at {where}")
    if isinstance(document, dict):
        for key, value in document.items():
            _check_finite(value, f"{where}.{key}")
    elif isinstance(document, list):
        for index, value in enumerate(document):
            _check_finite(value, f"{where}[{index}]")
