"""Training measurements: steps of each family's published recipe (its `prepare_for_training`
and optimizer, as `roadscene train` sets them up) with and without gradient checkpointing."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from roadscene.bench.inference import _free_memory, _ms, _ratio
from roadscene.bench.measure import DeviceLimits, time_call, track_peak_memory
from roadscene.bench.subjects import Subject
from roadscene.models import costs
from roadscene.models.costs import BENCH_ANSWER

if TYPE_CHECKING:
    from roadscene.bench.gpu import GpuBenchSettings

REPO_ROOT = Path(__file__).resolve().parents[3]


def training_recipe(family: str) -> tuple[Any, str]:
    """The family's published recipe as a `TrainConfig` (from the repository's `configs/`),
    or the config defaults when the file is not there (an installed package)."""
    from roadscene.models import get_family
    from roadscene.train.config import ModelSection, TrainConfig, load_config

    recipe = get_family(family).recipe
    path = REPO_ROOT / "configs" / recipe
    if recipe and path.is_file():
        return load_config(path), f"configs/{recipe}"
    return TrainConfig(model=ModelSection(family=family)), "TrainConfig defaults"


def prepare_for_training(subject: Subject) -> tuple[Any, Any, str]:
    """The family's own training setup (`family.prepare_for_training`, as `roadscene train`
    does): e.g. LoRA adapters, or the Flamingo trainable set with its row mask. Returns
    (model, optimizer, description); the optimizer is the family's (`create_optimizer`) or the
    Trainer's default AdamW."""
    config, source = training_recipe(subject.arch.family)
    family = subject.family
    model = family.prepare_for_training(
        subject.model,
        config.finetune,
        config.family_options,
        gradient_checkpointing=config.train.gradient_checkpointing,
    )
    optimizer = family.create_optimizer(
        model, learning_rate=config.train.learning_rate, options=config.family_options
    )
    if optimizer is None:
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params,
            lr=config.train.learning_rate,
            weight_decay=config.train.weight_decay,
            fused=subject.device.type == "cuda",
        )
    finetune = config.finetune
    what = subject.built.training or (
        f"{finetune.method} r {finetune.lora_r} on "
        f"{finetune.target_modules or 'the family default targets'}"
        if finetune.method != "full"
        else "full fine-tuning"
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
        settings.train_batch_size, prompt=DEFAULT_PROMPT, answer=BENCH_ANSWER
    )
    features = [family.encode(subject.processor, example) for example in examples]
    batch = family.collate(subject.processor, features, padding_side="right")
    batch = {key: value.to(subject.device) for key, value in batch.items()}
    for key in family.image_keys:
        if key in batch:
            batch[key] = batch[key].to(subject.dtype)
    tokens = int(batch["attention_mask"].sum())
    supervised = int((batch["labels"] != -100).sum())
    bound_s = (
        sum(subject.built.train_flops(model, subject.sequence_shape(f)) for f in features)
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
