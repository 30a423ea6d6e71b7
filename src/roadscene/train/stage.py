"""What every training stage (supervised `run_training`, preference `run_dpo`) shares: the
launch and run-folder checks with the checkpoint to resume, data splits, the trainable model, the
Trainer's arguments, the callbacks and the saved run folder, so a stage states only its data and
its trainer.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roadscene.errors import InputError
from roadscene.train.config import CONFIG_FILENAME, TrainConfig, model_start, save_config

MODEL_SUBDIR = "model"


@dataclass
class TrainResult:
    model_dir: Path
    metrics: dict[str, float]
    skipped_images: int
    best_checkpoint: str | None
    is_main_process: bool = True  # False on the other ranks of a torchrun / accelerate launch


def _torch_dtype(name: str) -> Any:
    import torch

    return None if name == "auto" else getattr(torch, name)


def _use_bf16(setting: str) -> bool:
    import torch

    if setting == "auto":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return setting == "true"


def data_path(config: TrainConfig, file: str | Path) -> Path:
    """A data file named in the config: relative paths are relative to data.data_dir."""
    path = Path(file)
    return path if path.is_absolute() else Path(config.data.data_dir) / path


def image_root(config: TrainConfig) -> str:
    return config.data.image_root or config.data.data_dir


def load_split(
    config: TrainConfig, split: str, limit: int | None, file: str | None = None
) -> tuple[list, Any]:
    """The task's rows of `split` (or of `file`, when given) whose images open (bad ones per
    `data.on_bad_image`)."""
    from roadscene.data.images import check_images
    from roadscene.data.records import load_records, task_file

    data = config.data
    path = data_path(config, file) if file else task_file(data.task, split, data.data_dir)
    records = load_records(data.task, path, image_root(config), limit=limit, clip=data.clip)
    return check_images(records, data.on_bad_image)


def load_eval_rows(config: TrainConfig) -> tuple[list, Any]:
    """The rows evaluated on (`data.eval_file`, else `data.eval_split`; none when neither)."""
    data = config.data
    if not (data.eval_split or data.eval_file):
        return [], []
    return load_split(config, data.eval_split or "", data.max_eval_examples, data.eval_file)


def is_run_dir(folder: Path) -> bool:
    """Whether `folder` is a training run folder (checkpoints, a saved model, the generation-eval
    log): a new run may only go into such a folder, a new one or an empty one."""
    names = {path.name for path in folder.iterdir()}
    run_files = {MODEL_SUBDIR, "generation_eval.jsonl", CONFIG_FILENAME}
    return bool(names & run_files) or any(
        name.startswith(("checkpoint-", "incomplete-checkpoint-")) for name in names
    )


def is_model_output(folder: Path) -> bool:
    """Whether `folder` is a model folder `run_training` wrote (it may be replaced)."""
    return (folder / CONFIG_FILENAME).is_file()


def start_run(config: TrainConfig, resume: bool) -> str | None:
    """Checks before any work, for every stage; returns the checkpoint to continue from.

    The launch must be what was asked for (`launch.check_launch`); output_dir must be new, empty
    or a run folder, and its model folder one this runner wrote. With `resume`, the newest
    complete checkpoint (newer half-written ones are set aside, `checkpoints.resume_checkpoint`);
    without it, a folder that already holds checkpoints is refused rather than overwritten.
    Also applies `train.num_threads` and the seed."""
    import torch
    from transformers import set_seed

    from roadscene.io import check_output
    from roadscene.train.checkpoints import checkpoints, resume_checkpoint
    from roadscene.train.launch import check_launch

    check_launch()
    train = config.train
    if train.num_threads:
        torch.set_num_threads(train.num_threads)
    output_dir = Path(train.output_dir)
    check_output(output_dir, folder=True, ours=is_run_dir, what="a training run folder")
    model_dir = output_dir / MODEL_SUBDIR
    check_output(model_dir, folder=True, ours=is_model_output, what="a trained model folder")
    last_checkpoint: str | None = None
    if resume:
        last_checkpoint = str(resume_checkpoint(output_dir))
    elif checkpoints(output_dir):
        raise InputError(
            "output_dir already holds checkpoints; pass --resume to continue, or choose another "
            "train.output_dir",
            path=output_dir,
        )
    set_seed(train.seed)
    return last_checkpoint


def load_trainable_model(
    config: TrainConfig, family: Any, clip_frames: int | None = None
) -> tuple[Any, Any]:
    """(model prepared as `config.finetune` says, processor), on this process's device.
    `model.name_or_path` may be a training output folder holding an adapter: that adapter keeps
    training on its base. With `clip_frames` (the data holds clips of that many frames), the
    family first gets what clips need (`prepare_for_clips`)."""
    import torch

    from roadscene.train.launch import process_device

    base, adapter = model_start(config.model.name_or_path)
    if adapter is not None:
        saved = _saved_family(adapter)
        if saved is not None and saved != family.name:
            raise InputError(
                f"this run was trained with the {saved} family, not {family.name}; set "
                f"model.family: {saved}",
                path=adapter,
            )
    quantization = "4bit" if config.finetune.method == "qlora" else "none"
    dtype = _torch_dtype(config.model.dtype)
    if dtype is None and config.finetune.method == "full":
        # Full fine-tuning keeps fp32 master weights; the Trainer autocasts to bf16 on GPU.
        dtype = torch.float32
    loaded = family.load(base, quantization=quantization, dtype=dtype, device=process_device())
    model = loaded.model
    if clip_frames is not None:
        model = family.prepare_for_clips(model, clip_frames)
    model = family.prepare_for_training(
        model,
        config.finetune,
        config.family_options,
        gradient_checkpointing=config.train.gradient_checkpointing,
        adapter=adapter,
    )
    model.train()
    return model, loaded.processor


def _saved_family(folder: Path) -> str | None:
    from roadscene.train.config import read_saved_config

    saved = read_saved_config(folder)
    return saved.model.family if saved is not None else None


def report_skipped(skipped: int) -> None:
    """Say how many rows `data.on_bad_image: skip` left out (nothing when none)."""
    if skipped:
        print(f"skipped {skipped} rows with missing or unreadable images (data.on_bad_image=skip)")


def optimizers(config: TrainConfig, family: Any, model: Any) -> tuple[Any, None]:
    """The Trainer's (optimizer, scheduler): the family's optimizer, the Trainer's schedule."""
    optimizer = family.create_optimizer(
        model, learning_rate=config.train.learning_rate, options=config.family_options
    )
    return optimizer, None


def best_metric(config: TrainConfig) -> str:
    # Field accuracy only means something when answers carry the fields (bvpi).
    return "field_accuracy" if config.data.task == "bvpi" else "loss"


def training_arguments(
    config: TrainConfig,
    family: Any,
    *,
    evaluate: bool,
    keep_best: bool,
    args_class: Any = None,
    **extra: Any,
) -> Any:
    """The Trainer's arguments from the recipe (`args_class`: a TrainingArguments subclass such
    as TRL's DPOConfig, given its own settings in `extra`). Under an FSDP launch that names no
    layers, the family's layers are wrapped (`launch.use_family_fsdp_layers`)."""
    import torch
    from transformers import TrainingArguments

    from roadscene.train.launch import use_family_fsdp_layers

    use_family_fsdp_layers(family.fsdp_wrap_classes)
    train = config.train
    use_bf16 = _use_bf16(train.bf16)
    metric = best_metric(config)
    return (args_class or TrainingArguments)(
        output_dir=str(train.output_dir),
        num_train_epochs=train.num_epochs,
        max_steps=train.max_steps,
        per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=train.eval_batch_size,
        gradient_accumulation_steps=train.grad_accum,
        learning_rate=train.learning_rate,
        weight_decay=train.weight_decay,
        adam_beta2=train.adam_beta2,
        warmup_steps=train.warmup_steps,
        lr_scheduler_type=train.lr_scheduler,
        max_grad_norm=train.max_grad_norm,
        seed=train.seed,
        bf16=use_bf16,
        # Cards without bf16 (T4, V100) train LoRA over fp16 weights with fp16 autocast.
        fp16=train.bf16 == "auto" and torch.cuda.is_available() and not use_bf16,
        activation_checkpointing=train.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        logging_steps=train.logging_steps,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=train.eval_steps,
        save_strategy="steps",
        save_steps=train.eval_steps,
        save_total_limit=train.save_total_limit,
        load_best_model_at_end=keep_best,
        metric_for_best_model=metric if keep_best else None,
        greater_is_better=(metric != "loss") if keep_best else None,
        train_sampling_strategy="group_by_length" if train.group_by_length else "random",
        remove_unused_columns=False,
        dataloader_num_workers=train.dataloader_num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        # Without a GPU, torchrun workers must form a gloo (MULTI_CPU) group.
        use_cpu=not torch.cuda.is_available(),
        report_to=train.report_to,
        ddp_find_unused_parameters=False,
        **extra,
    )


def run_callbacks(
    config: TrainConfig,
    family: Any,
    processor: Any,
    eval_records: Sequence[Any],
    prompts: Sequence[str],
    extra_callbacks: Sequence[Any] | None,
    stage_callbacks: Sequence[Any] = (),
) -> list[Any]:
    """The resolved config in every checkpoint, the stop on a NaN / inf training loss, the
    stage's own callbacks, the generation-based field accuracy on the val rows (when enabled),
    then the caller's callbacks."""
    from roadscene.train.callbacks import (
        GenerationEvalCallback,
        NonFiniteLossCallback,
        SaveConfigCallback,
    )

    gen = config.generation_eval
    callbacks: list[Any] = [
        SaveConfigCallback(config, prompts),
        NonFiniteLossCallback(),
        *stage_callbacks,
    ]
    if gen.enabled and eval_records:
        callbacks.append(
            GenerationEvalCallback(
                family,
                processor,
                eval_records[: gen.num_examples],
                batch_size=gen.batch_size,
                max_new_tokens=gen.max_new_tokens,
                output_dir=config.train.output_dir,
            )
        )
    callbacks.extend(extra_callbacks or [])
    return callbacks


def finish_run(
    trainer: Any,
    config: TrainConfig,
    output: Any,
    *,
    prompts: Sequence[str],
    skipped: int,
    evaluate: bool,
    summary: dict[str, Any],
) -> TrainResult:
    """Final evaluation, then `{output_dir}/model` (weights or adapter, processor, resolved
    config, prompts, training_summary.json), whole or not at all; then the process group is
    left."""
    from roadscene.io import atomic_dir, write_json
    from roadscene.train.config import save_prompts

    metrics = dict(output.metrics)
    if evaluate and trainer.state.global_step > 0:
        metrics.update(trainer.evaluate())
    output_dir = Path(config.train.output_dir)
    model_dir = output_dir / MODEL_SUBDIR
    # Every process takes part in saving: FSDP and DeepSpeed ZeRO-3 gather the full weights
    # from all of them; only the main process writes. The folder appears whole or not at all.
    staging = output_dir / f".{MODEL_SUBDIR}.saving"
    if trainer.is_world_process_zero():
        shutil.rmtree(staging, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(staging))  # adapter or full weights + processor
    if trainer.is_world_process_zero():
        # A frozen copy of the starting adapter (the preference stage's reference) is only
        # needed while training; the model is the trained adapter.
        if (staging / "ref" / "adapter_config.json").is_file():
            shutil.rmtree(staging / "ref")
        with atomic_dir(model_dir, ours=is_model_output, what="a trained model folder") as tmp:
            for item in staging.iterdir():
                item.rename(tmp / item.name)
            save_config(config, tmp)
            save_prompts(tmp, config.data.task, list(prompts))
        shutil.rmtree(staging)
        write_json(
            model_dir / "training_summary.json",
            {
                "stage": config.stage,
                "metrics": metrics,
                **summary,
                "skipped_bad_images": skipped,
                "best_checkpoint": trainer.state.best_model_checkpoint,
                "global_step": trainer.state.global_step,
            },
        )
    trainer.accelerator.wait_for_everyone()
    result = TrainResult(
        model_dir=model_dir,
        metrics=metrics,
        skipped_images=skipped,
        best_checkpoint=trainer.state.best_model_checkpoint,
        is_main_process=trainer.is_world_process_zero(),
    )
    # Leave the process group (a gloo rank that exits without it can abort at exit).
    trainer.accelerator.end_training()
    return result
