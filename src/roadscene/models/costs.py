"""Work a model must do, counted from its architecture: FLOPs and bytes moved.

These give the physical lower bounds printed beside each measured time:
- prefill / training: FLOPs ÷ the device's measured matmul throughput;
- decode: max(bytes read per step ÷ measured bandwidth, FLOPs per step ÷ throughput).

FLOPs are 2 · (matmul weights) · (tokens through them) plus attention (QKᵀ and AV:
4 · n_query · n_key · width per layer; causal self-attention counts half, the minimum an
implementation must do). Norms, activations, softmax and the embedding gather are left out
(they are memory-bound and small), so every figure is a lower bound. The weights are counted
on the model object itself (real or on the meta device), the token counts come from the config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from roadscene.targets import CAPTION_PROMPT, DEFAULT_PROMPT


def unwrap(model: Any) -> nn.Module:
    """The transformers model under a PEFT wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def matmul_weight_count(module: nn.Module, *, exclude: tuple[nn.Module, ...] = ()) -> int:
    """Elements of the weight matrices of every Linear / Conv2d under `module` (LoRA's small
    matrices included), minus those under the `exclude` submodules."""
    excluded = {id(sub) for ex in exclude for sub in ex.modules()}
    total = 0
    for sub in module.modules():
        if id(sub) in excluded:
            continue
        if isinstance(sub, (nn.Linear, nn.Conv2d)):
            total += sub.weight.numel()
    return total


def parameter_bytes(module: nn.Module, *, exclude: tuple[nn.Module, ...] = ()) -> int:
    excluded = {id(p) for ex in exclude for p in ex.parameters()}
    return sum(p.numel() * p.element_size() for p in module.parameters() if id(p) not in excluded)


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Total and trainable parameter counts (works on the meta device)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}


def attention_flops(n_query: int, n_key: int, width: int, *, causal: bool) -> float:
    """QKᵀ and AV for one layer and one sequence; causal halves the work."""
    flops = 4.0 * n_query * n_key * width
    return flops / 2 if causal else flops


@dataclass
class SequenceShape:
    """One sequence of a prefill or training batch.

    tokens: text length including image placeholder tokens; images: images in the sequence;
    tiles: vision-encoder inputs per image (SmolVLM tiles; 1 for Flamingo).
    """

    tokens: int
    images: int = 1
    tiles: int = 1


#: A typical structured answer (the published target format): the benchmark's training target.
BENCH_ANSWER = (
    "Sidewalk: center. Road: left. RoadVsSidewalk: left_of. Nearby: a person close on the left; "
    "2 cars close on the left and right. Far: a traffic light farther away on the center. "
    "Context: A narrow street with parked cars, a crossing ahead and shops on the right."
)
#: The texts the benchmark's offline tokenizers are trained on (prompts and the answer).
BENCH_TEXTS: list[str] = [DEFAULT_PROMPT, CAPTION_PROMPT, BENCH_ANSWER] * 8


@dataclass
class BenchModel:
    """A model under test at a stored architecture (random weights) and its cost formulas.

    `prefill_flops(model, shape)` -> FLOPs by part of one forward over one sequence;
    `decode_step(model, batch=, context=)` -> {"bytes", "flops"} of one decode step;
    `train_flops(model, shape)` -> FLOPs of one training step of the family's recipe on one
    sequence; `processors` are the image-processor settings measured (name -> (processor,
    longest image edge or None)); `training` says what the recipe trains; `clip_token_id` the
    token a clip's frames expand into (None: the image token).
    """

    model: nn.Module
    processor: Any
    vision_module: nn.Module
    image_token_id: int
    prefill_flops: Callable[..., dict[str, float]]
    decode_step: Callable[..., dict[str, float]]
    train_flops: Callable[..., float]
    processors: dict[str, tuple[Any, int | None]] = field(default_factory=dict)
    training: str = ""
    clip_token_id: int | None = None
