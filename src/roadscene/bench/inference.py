"""Inference measurements through `Predictor.generate_batch` (the `roadscene predict` path):
batch-1 latency split into preprocessing, image encoding + prefill and decode, batched
throughput, each image-processor setting the family declares, the grammar-constrained
(`--structured`) time ratio, and for families that take clips a clip of N frames beside one
image (tokens and batch-1 time). Every time comes with its lower bound from the measured
limits."""

from __future__ import annotations

import gc
import statistics
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch

from roadscene.bench.measure import (
    Clock,
    DeviceLimits,
    GenerationSplit,
    GenerationTrace,
    split_trace,
    track_peak_memory,
)
from roadscene.bench.subjects import Subject
from roadscene.predict.settings import Decoding

if TYPE_CHECKING:
    from roadscene.bench.gpu import GpuBenchSettings


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
    decoding: Decoding | None = None,
) -> GenerationRun:
    """Time `Predictor.generate_batch` (the `roadscene predict` path) on `examples`, each call
    split by time points into preprocessing, image encoding + prefill and decode steps.

    `forced`: exactly `max_new_tokens` tokens (min = max, so no stop token ends it early).
    `decoding`: how to decode (e.g. with the answer grammar); greedy free text by default.
    """
    from roadscene.predict.predictor import ModelCard, Predictor

    card = ModelCard(base=subject.arch.name, adapter=None, family=subject.family.name)
    predictor = Predictor(subject.family, subject.model, processor, card)
    decoding = Decoding(
        num_beams=1,
        max_new_tokens=max_new_tokens,
        grammar=decoding.grammar if decoding is not None else None,
    )
    predictor.prepare(decoding)  # the grammar compiles outside the timed calls
    clock = Clock(subject.device)
    traces: list[GenerationTrace] = []
    kwargs: dict[str, Any] = {"min_new_tokens": max_new_tokens} if forced else {}

    def vision_started(*_: Any) -> None:
        if traces[-1].vision_start is None:
            traces[-1].vision_start = clock.mark()

    def vision_ended(*_: Any) -> None:
        traces[-1].vision_end = clock.mark()

    def run() -> None:
        traces.append(GenerationTrace(start=clock.mark()))
        predictor.generate_batch(
            examples, decoding, extra_processors=[StepMarker(clock, traces[-1])], **kwargs
        )
        traces[-1].end = clock.mark()

    hooks = [
        subject.built.vision_module.register_forward_pre_hook(vision_started),
        subject.built.vision_module.register_forward_hook(vision_ended),
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
    step = subject.built.decode_step(subject.model, batch=batch, context=int(round(context)))
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
    prefill_flops = subject.built.prefill_flops(subject.model, shape)
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
    from roadscene.targets import GrammarOptions

    structured = Decoding(grammar=GrammarOptions())
    results: dict[str, Any] = {"runs": []}
    for batch_size in (1, settings.batch_sizes[0]):
        examples = subject.examples(batch_size, prompt=prompt)
        constrained = timed_generation(
            subject, processor, examples, max_new_tokens=settings.new_tokens, forced=False,
            warmup=settings.warmup, repeats=settings.repeats,
            decoding=structured,
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


def measure_clip(subject: Subject, settings: GpuBenchSettings, prompt: str) -> dict[str, Any]:
    """One clip of `settings.clip_frames` frames through the family's video path at batch 1:
    its tokens (per frame too) and time, beside one image's (the default processor)."""
    frames = settings.clip_frames
    model = subject.family.prepare_for_clips(subject.model, frames)
    subject = replace(subject, built=replace(subject.built, model=model))
    [example] = subject.clip_examples(1, frames, prompt=prompt)
    features = subject.family.encode(subject.processor, example)
    shape = subject.sequence_shape(features)
    run = timed_generation(
        subject, subject.processor, [example], max_new_tokens=settings.new_tokens, forced=True,
        warmup=settings.warmup, repeats=settings.repeats,
    )  # fmt: skip
    image_tokens = subject.image_tokens(features, clip=True)
    return {
        "frames": frames,
        "frame_size": subject.image_size,
        "prompt_tokens": shape.tokens,
        "image_tokens": image_tokens,
        "image_tokens_per_frame": image_tokens / frames,
        "batch1": {
            "preprocess_ms": _ms(run.preprocess),
            "encode_prefill_ms": _ms(run.encode_prefill),
            "decode_ms_per_token": _ms(run.decode_per_token),
            "total_ms": _ms(run.seconds),
            "new_tokens": settings.new_tokens,
            "peak_memory_bytes": run.peak_bytes,
        },
    }


def measure_inference(
    subject: Subject, limits: DeviceLimits, settings: GpuBenchSettings
) -> dict[str, Any]:
    from roadscene.targets import DEFAULT_PROMPT

    out: dict[str, Any] = {}
    variants = subject.built.processors or {"default": (subject.processor, None)}
    for name, (processor, longest_edge) in variants.items():
        measured = measure_inference_variant(subject, processor, limits, settings, DEFAULT_PROMPT)
        out[name] = {"longest_edge": longest_edge, **measured} if longest_edge else measured
    if "reduced" in out:  # the family measured a reduced image setting beside its default
        default_ms = out["default"]["batch1"]["encode_prefill_ms"]
        reduced_ms = out["reduced"]["batch1"]["encode_prefill_ms"]
        out["prefill_difference"] = {
            "default_ms": default_ms,
            "reduced_ms": reduced_ms,
            "saved_ms": default_ms - reduced_ms,
            "speedup": default_ms / reduced_ms if reduced_ms else None,
            "image_tokens": [out["default"]["image_tokens"], out["reduced"]["image_tokens"]],
        }
    if settings.structured:
        out["structured"] = measure_structured(subject, subject.processor, settings, DEFAULT_PROMPT)
    else:
        out["structured"] = {"ratio": None, "reason": "not requested (--no-structured)"}
    if subject.family.supports_clips and settings.clip_frames:
        clip = measure_clip(subject, settings, DEFAULT_PROMPT)
        image = out["default"]
        clip["vs_image"] = {
            "image_tokens": image["image_tokens"],
            "prompt_tokens": image["prompt_tokens"],
            "total_ms": image["batch1"]["total_ms"],
            "encode_prefill_ms": image["batch1"]["encode_prefill_ms"],
        }
        out["clip"] = clip
    return out
