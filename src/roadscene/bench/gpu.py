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
import gc
import math
import platform
import statistics
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field, field_validator

from roadscene.bench import costs
from roadscene.bench.measure import (
    Clock,
    DeviceLimits,
    GenerationSplit,
    GenerationTrace,
    measure_limits,
    split_trace,
    time_call,
    track_peak_memory,
)
from roadscene.bench.subjects import TRAINING_ANSWER, Subject, build_subject, meta_model
from roadscene.errors import InputError
from roadscene.models.arch import list_archs, load_arch

SCHEMA = "roadscene.bench.gpu/1"
REPO_ROOT = Path(__file__).resolve().parents[3]
SCALE_ARCHS: dict[str, list[str]] = {
    "real": ["smolvlm2-2.2b", "openflamingo-3b"],
    "tiny": ["smolvlm2-tiny", "openflamingo-tiny"],
}
GOALS_ARCH = "smolvlm2-2.2b"


class GpuBenchSettings(BaseModel):
    """What to measure and how often. Defaults are the issue's settings."""

    scale: Literal["tiny", "real"] = Field(
        "tiny",
        description="real: the published sizes (needs a CUDA GPU); tiny: the same "
        "measurements on tiny configs (CPU, seconds).",
    )
    archs: list[str] | None = Field(
        None, description="Architectures to run (default: both families at the chosen scale)."
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


class StepMarker:
    """Logits processor that marks the time of every generation step (changes nothing)."""

    def __init__(self, clock: Clock, trace: GenerationTrace) -> None:
        self.clock = clock
        self.trace = trace

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.trace.steps.append(self.clock.mark())
        return scores


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def _ratio(measured: float | None, bound: float | None) -> float | None:
    if measured is None or not bound:
        return None
    return measured / bound


def _free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


class GenerationRun:
    """Medians over the timed calls of one setting, plus peak memory."""

    def __init__(self, splits: list[GenerationSplit], peak_bytes: int | None):
        def median(values: list[float | None]) -> float | None:
            present = [value for value in values if value is not None]
            return statistics.median(present) if present else None

        self.seconds = median([split.total for split in splits])
        self.preprocess = median([split.preprocess for split in splits])
        self.image_encoding = median([split.image_encoding for split in splits])
        self.encode_prefill = median([split.encode_prefill for split in splits])
        self.decode_per_token = median([split.decode_per_token for split in splits])
        self.steps = splits[-1].steps
        self.peak_bytes = peak_bytes


def timed_generation(
    subject: Subject,
    processor: Any,
    examples: Sequence[Any],
    *,
    max_new_tokens: int,
    forced: bool,
    warmup: int,
    repeats: int,
    processor_factory: Callable[[], Any] | None = None,
) -> GenerationRun:
    """Time `Predictor.generate_batch` (the `roadscene predict` path) on `examples`, each call
    split by time points into preprocessing, image encoding + prefill and decode steps.

    `forced`: exactly `max_new_tokens` tokens (min = max, so no stop token ends it early).
    `processor_factory`: extra logits processors, fresh for every call (e.g. the grammar).
    """
    from transformers import LogitsProcessorList

    from roadscene.predict.runner import Predictor

    predictor = Predictor(subject.family, subject.model, processor, source=subject.arch.name)
    clock = Clock(subject.device)
    traces: list[GenerationTrace] = []
    kwargs: dict[str, Any] = {"min_new_tokens": max_new_tokens} if forced else {}

    def make_processors() -> Any:
        extra = list(processor_factory()) if processor_factory is not None else []
        return LogitsProcessorList([*extra, StepMarker(clock, traces[-1])])

    def vision_started(*_: Any) -> None:
        if traces[-1].vision_start is None:
            traces[-1].vision_start = clock.mark()

    def vision_ended(*_: Any) -> None:
        traces[-1].vision_end = clock.mark()

    def run() -> None:
        traces.append(GenerationTrace(start=clock.mark()))
        predictor.generate_batch(
            examples,
            num_beams=1,
            max_new_tokens=max_new_tokens,
            logits_processor_factory=make_processors,
            **kwargs,
        )
        traces[-1].end = clock.mark()

    hooks = [
        subject.vision_module.register_forward_pre_hook(vision_started),
        subject.vision_module.register_forward_hook(vision_ended),
    ]
    try:
        for _ in range(warmup):
            run()
        timed_from = len(traces)
        with track_peak_memory(subject.device) as peak:
            for _ in range(repeats):
                run()
    finally:
        for hook in hooks:
            hook.remove()
    splits = [split_trace(clock, trace) for trace in traces[timed_from:]]
    for split in splits:
        if forced and split.steps != max_new_tokens:
            raise RuntimeError(
                f"generation ran {split.steps} steps, expected exactly {max_new_tokens}"
            )
    return GenerationRun(splits, peak.bytes)


# ----------------------------------------------------------------------------- inference


def _decode_bound_s(subject: Subject, limits: DeviceLimits, *, batch: int, context: float) -> float:
    step = subject.decode_step(subject.model, batch=batch, context=int(round(context)))
    return max(
        step["bytes"] / limits.bandwidth_bytes_per_s, step["flops"] / limits.matmul_flops_per_s
    )


def measure_inference_variant(
    subject: Subject, processor: Any, limits: DeviceLimits, settings: GpuBenchSettings, prompt: str
) -> dict[str, Any]:
    """Batch-1 latency split and batched throughput for one processor setting."""
    family = subject.family
    new_tokens = settings.new_tokens
    [example] = subject.examples(1, prompt=prompt)
    features = family.encode(processor, example)
    shape = subject.sequence_shape(features)
    full = timed_generation(
        subject, processor, [example], max_new_tokens=new_tokens, forced=True,
        warmup=settings.warmup, repeats=settings.repeats,
    )  # fmt: skip
    prefill_flops = subject.prefill_flops(subject.model, shape)
    prefill_bound_s = sum(prefill_flops.values()) / limits.matmul_flops_per_s
    # KV cache grows during decoding: its mean length over the generated tokens.
    mean_context = shape.tokens + new_tokens / 2
    decode_bound_s = _decode_bound_s(subject, limits, batch=1, context=mean_context)
    total_bound_s = prefill_bound_s + new_tokens * decode_bound_s
    batch1 = {
        "preprocess_ms": _ms(full.preprocess),
        "image_encoding_ms": _ms(full.image_encoding),
        "encode_prefill_ms": _ms(full.encode_prefill),
        "decode_ms_per_token": _ms(full.decode_per_token),
        "total_ms": _ms(full.seconds),
        "new_tokens": new_tokens,
        "peak_memory_bytes": full.peak_bytes,
        "prefill_flops": prefill_flops,
        "bound": {
            "encode_prefill_ms": _ms(prefill_bound_s),
            "decode_ms_per_token": _ms(decode_bound_s),
            "total_ms": _ms(total_bound_s),
        },
        "x_bound": {
            "encode_prefill": _ratio(full.encode_prefill, prefill_bound_s),
            "decode": _ratio(full.decode_per_token, decode_bound_s),
            "total": _ratio(full.seconds, total_bound_s),
        },
    }
    batched = []
    for batch_size in settings.batch_sizes:
        examples = subject.examples(batch_size, prompt=prompt)
        run = timed_generation(
            subject, processor, examples, max_new_tokens=new_tokens, forced=True,
            warmup=settings.warmup, repeats=settings.batched_repeats,
        )  # fmt: skip
        bound_s = batch_size * prefill_bound_s + new_tokens * _decode_bound_s(
            subject, limits, batch=batch_size, context=mean_context
        )
        batched.append(
            {
                "batch_size": batch_size,
                "total_ms": _ms(run.seconds),
                "images_per_s": batch_size / run.seconds,
                "image_encoding_ms": _ms(run.image_encoding),
                "decode_ms_per_step": _ms(run.decode_per_token),
                "peak_memory_bytes": run.peak_bytes,
                "bound_ms": _ms(bound_s),
                "x_bound": _ratio(run.seconds, bound_s),
            }
        )
        _free_memory(subject.device)
    return {
        "prompt_tokens": shape.tokens,
        "image_tokens": subject.image_tokens(features),
        "tiles": shape.tiles,
        "batch1": batch1,
        "batched": batched,
    }


def measure_structured(
    subject: Subject, processor: Any, settings: GpuBenchSettings, prompt: str
) -> dict[str, Any]:
    """Grammar-constrained vs plain generation of the same number of tokens, as a time ratio."""
    try:
        from roadscene.predict.structured import structured_processor_factory
    except ImportError as err:
        return {"ratio": None, "reason": f"structured decoding unavailable: {err}"}

    # Compiles the grammar once, outside the timed calls (as `roadscene predict` does).
    factory = structured_processor_factory(subject.family, subject.model, processor)
    results: dict[str, Any] = {"runs": []}
    for batch_size in (1, settings.batch_sizes[0]):
        examples = subject.examples(batch_size, prompt=prompt)
        constrained = timed_generation(
            subject, processor, examples, max_new_tokens=settings.new_tokens, forced=False,
            warmup=settings.warmup, repeats=settings.repeats,
            processor_factory=factory,
        )  # fmt: skip
        plain = timed_generation(
            subject, processor, examples, max_new_tokens=constrained.steps, forced=True,
            warmup=settings.warmup, repeats=settings.repeats,
        )  # fmt: skip
        results["runs"].append(
            {
                "batch_size": batch_size,
                "tokens": constrained.steps,
                "structured_ms": _ms(constrained.seconds),
                "plain_ms": _ms(plain.seconds),
                "ratio": constrained.seconds / plain.seconds,
            }
        )
    results["ratio"] = max(run["ratio"] for run in results["runs"])
    return results


def measure_inference(
    subject: Subject, limits: DeviceLimits, settings: GpuBenchSettings
) -> dict[str, Any]:
    from roadscene.targets import DEFAULT_PROMPT

    out: dict[str, Any] = {}
    if subject.arch.family == "smolvlm":
        from roadscene.bench.subjects import smolvlm_processor

        reduced_edge = int(subject.arch.bench["reduced_longest_edge"])
        variants = {
            "default": (subject.processor, int(subject.arch.processor["longest_edge"])),
            "reduced": (
                smolvlm_processor(subject.processor, subject.arch, reduced_edge),
                reduced_edge,
            ),
        }
        for name, (processor, longest_edge) in variants.items():
            out[name] = {
                "longest_edge": longest_edge,
                **measure_inference_variant(subject, processor, limits, settings, DEFAULT_PROMPT),
            }
        default_ms = out["default"]["batch1"]["encode_prefill_ms"]
        reduced_ms = out["reduced"]["batch1"]["encode_prefill_ms"]
        out["prefill_difference"] = {
            "default_ms": default_ms,
            "reduced_ms": reduced_ms,
            "saved_ms": default_ms - reduced_ms,
            "speedup": default_ms / reduced_ms if reduced_ms else None,
            "image_tokens": [out["default"]["image_tokens"], out["reduced"]["image_tokens"]],
        }
    else:
        out["default"] = measure_inference_variant(
            subject, subject.processor, limits, settings, DEFAULT_PROMPT
        )
    if settings.structured:
        out["structured"] = measure_structured(subject, subject.processor, settings, DEFAULT_PROMPT)
    else:
        out["structured"] = {"ratio": None, "reason": "not requested (--no-structured)"}
    return out


# ----------------------------------------------------------------------------- training


#: Training recipes measured, per family (repository `configs/`).
TRAINING_RECIPES = {
    "smolvlm": "configs/smolvlm2-2.2b-bvpi-lora.yaml",
    "flamingo": "configs/openflamingo-3b-bvpi.yaml",
}


def training_recipe(family: str) -> tuple[Any, str]:
    """The family's published recipe as a `TrainConfig` (from the repository's `configs/`),
    or the config defaults when the file is not there (an installed package)."""
    from roadscene.train.config import TrainConfig, load_config

    path = REPO_ROOT / TRAINING_RECIPES[family]
    if path.is_file():
        return load_config(path), TRAINING_RECIPES[family]
    from roadscene.train.config import ModelSection

    return TrainConfig(model=ModelSection(family=family)), "TrainConfig defaults"


def prepare_for_training(subject: Subject) -> tuple[Any, Any, str]:
    """The family's own training setup (`family.prepare_for_training`, as `roadscene train`
    does): LoRA adapters for SmolVLM2, the Flamingo trainable set with its row mask. Returns
    (model, optimizer, description); the optimizer is the family's (`create_optimizer`, e.g.
    Flamingo's per-group learning rates) or the Trainer's default AdamW."""
    config, source = training_recipe(subject.arch.family)
    family = subject.family
    if hasattr(family, "prepare_for_training"):
        model = family.prepare_for_training(subject.model, config)
    else:  # families without the hook train with the shared LoRA / full setup
        from roadscene.train.runner import prepare_model

        model = prepare_model(subject.model, config, family)
    create_optimizer = getattr(family, "create_optimizer", None)
    optimizer = create_optimizer(model, config) if create_optimizer else None
    if optimizer is None:
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params,
            lr=config.train.learning_rate,
            weight_decay=config.train.weight_decay,
            fused=subject.device.type == "cuda",
        )
    finetune = config.finetune
    what = (
        f"LoRA r {finetune.lora_r} on {finetune.target_modules or 'the family default targets'}"
        if subject.arch.family == "smolvlm"
        else "perceiver + gated cross-attention + 2 token rows"
    )
    return model, optimizer, f"{what} ({source})"


def measure_training(
    subject: Subject, limits: DeviceLimits, settings: GpuBenchSettings
) -> dict[str, Any]:
    from roadscene.targets import DEFAULT_PROMPT

    model, optimizer, recipe = prepare_for_training(subject)
    model.train()
    family = subject.family
    examples = subject.examples(
        settings.train_batch_size, prompt=DEFAULT_PROMPT, answer=TRAINING_ANSWER
    )
    features = [family.encode(subject.processor, example) for example in examples]
    batch = family.collate(subject.processor, features, padding_side="right")
    batch = {key: value.to(subject.device) for key, value in batch.items()}
    for key in ("pixel_values", "vision_x"):
        if key in batch:
            batch[key] = batch[key].to(subject.dtype)
    tokens = int(batch["attention_mask"].sum())
    supervised = int((batch["labels"] != -100).sum())
    bound_s = (
        sum(subject.train_flops(model, subject.sequence_shape(f)) for f in features)
        / limits.matmul_flops_per_s
    )
    params = [p for p in model.parameters() if p.requires_grad]
    counts = costs.count_parameters(model)
    use_autocast = subject.device.type == "cuda"
    runs = []
    for checkpointing in (False, True):
        entry: dict[str, Any] = {"gradient_checkpointing": checkpointing}
        try:
            if checkpointing:
                model.gradient_checkpointing_enable(
                    gradient_checkpointing_kwargs={"use_reentrant": False}
                )
            elif getattr(model, "is_gradient_checkpointing", False):
                model.gradient_checkpointing_disable()
        except ValueError as err:  # the model class does not support it
            entry.update(samples_per_s=None, reason=str(err).splitlines()[0])
            runs.append(entry)
            continue

        def step() -> None:
            with torch.autocast(subject.device.type, dtype=torch.bfloat16, enabled=use_autocast):
                loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        for _ in range(max(settings.warmup, 1)):  # first step allocates optimizer state
            step()
        with track_peak_memory(subject.device) as peak:
            timing = time_call(step, device=subject.device, warmup=0, repeat=settings.train_steps)
        step_s = timing.median
        entry.update(
            step_ms=_ms(step_s),
            samples_per_s=settings.train_batch_size / step_s,
            tokens_per_s=tokens / step_s,
            supervised_tokens_per_s=supervised / step_s,
            peak_memory_bytes=peak.bytes,
            bound_ms=_ms(bound_s),
            x_bound=_ratio(step_s, bound_s),
        )
        runs.append(entry)
        _free_memory(subject.device)
    return {
        "recipe": recipe,
        "batch_size": settings.train_batch_size,
        "tokens_per_batch": tokens,
        "supervised_tokens_per_batch": supervised,
        "weights_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "autocast_bf16": use_autocast,
        "parameters": counts,
        "runs": runs,
    }


# ----------------------------------------------------------------------------- goals


def evaluate_goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's H100 goals for SmolVLM2-2.2B, checked when that architecture was measured."""
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
    parts = {name: sum(p.numel() for p in child.parameters()) for name, child in _parts(model)}
    summary: dict[str, Any] = {"total": costs.count_parameters(model)["total"], "parts": parts}
    if arch.family == "flamingo":
        from roadscene.models import get_family

        config, _ = training_recipe("flamingo")
        model = get_family("flamingo").prepare_for_training(model, config)
        trainable = costs.count_parameters(model)["trainable"]
        embedding = model.get_input_embeddings().weight
        summary["trainable_recipe"] = trainable
        # Only the two new token rows of the embedding get non-zero gradients (row mask).
        summary["trainable_effective"] = trainable - embedding.numel() + 2 * embedding.shape[1]
    return summary


def _parts(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    inner = getattr(model, "model", None)
    if inner is not None:  # SmolVLM: model.{vision_model, connector, text_model} + lm_head
        return [*inner.named_children(), ("lm_head", model.lm_head)]
    return list(model.named_children())


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
    archs = settings.archs or SCALE_ARCHS[settings.scale]
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
            if arch.family == "flamingo" and device.type == "cuda":
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
