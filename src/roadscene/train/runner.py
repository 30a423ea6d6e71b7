"""`roadscene train`: config -> data -> model (LoRA / QLoRA / full) -> HF Trainer -> saved model.

The HF Trainer does the loop, so `torchrun` / `accelerate launch` scale it out unchanged. The
final folder (`{output_dir}/model`) holds the adapter (or full model), the processor with its
chat template and the resolved config: `roadscene predict --model {output_dir}/model` needs
nothing else.

`run_training` runs the supervised stage here; `stage: dpo` runs the preference stage
(`roadscene.train.dpo`), which shares the helpers below: checkpoint checks, data splits, the
trainable model, the Trainer's arguments, the callbacks and the saved run folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roadscene.errors import InputError
from roadscene.train.config import TrainConfig, model_start, save_config

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


def load_split(config: TrainConfig, split: str, limit: int | None) -> tuple[list, Any]:
    """The task's rows of `split` whose images open (bad ones per `data.on_bad_image`)."""
    from roadscene.data.images import check_images
    from roadscene.data.records import load_records, task_file

    data = config.data
    records = load_records(
        data.task, task_file(data.task, split, data.data_dir), image_root(config), limit=limit
    )
    return check_images(records, data.on_bad_image)


def image_root(config: TrainConfig) -> str:
    return config.data.image_root or config.data.data_dir


def checkpoint_to_resume(config: TrainConfig, resume: bool) -> str | None:
    """The newest checkpoint to continue from (with `resume`); a run folder that already holds
    checkpoints without `resume` is refused rather than overwritten."""
    from transformers.trainer_utils import get_last_checkpoint

    output_dir = Path(config.train.output_dir)
    last_checkpoint = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if resume and last_checkpoint is None:
        raise InputError("--resume given but there is no checkpoint-* folder", path=output_dir)
    if not resume and last_checkpoint is not None:
        raise InputError(
            "output_dir already holds checkpoints; pass --resume to continue, or choose another "
            "train.output_dir",
            path=output_dir,
        )
    return last_checkpoint if resume else None


def load_trainable_model(config: TrainConfig, family: Any) -> tuple[Any, Any]:
    """(model prepared as `config.finetune` says, processor). `model.name_or_path` may be a
    training output folder holding an adapter: that adapter keeps training on its base."""
    import torch

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
    loaded = family.load(base, quantization=quantization, dtype=dtype)
    model = family.prepare_for_training(
        loaded.model,
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


def best_metric(config: TrainConfig) -> str:
    # Field accuracy only means something when answers carry the fields (bvpi).
    return "field_accuracy" if config.data.task == "bvpi" else "loss"


def training_arguments(
    config: TrainConfig, *, evaluate: bool, keep_best: bool, args_class: Any = None, **extra: Any
) -> Any:
    """The Trainer's arguments from the recipe (`args_class`: a TrainingArguments subclass such
    as TRL's DPOConfig, given its own settings in `extra`)."""
    import torch
    from transformers import TrainingArguments

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
) -> list[Any]:
    """The resolved config in every checkpoint, the generation-based field accuracy on the val
    rows (when enabled), then the caller's callbacks."""
    from roadscene.train.callbacks import GenerationEvalCallback, SaveConfigCallback

    gen = config.generation_eval
    callbacks: list[Any] = [SaveConfigCallback(config, prompts)]
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
    config, prompts, training_summary.json), written atomically by the main process."""
    import shutil

    from roadscene.io import atomic_dir, write_json
    from roadscene.train.config import save_prompts

    metrics = dict(output.metrics)
    if evaluate and trainer.state.global_step > 0:
        metrics.update(trainer.evaluate())
    model_dir = Path(config.train.output_dir) / MODEL_SUBDIR
    if trainer.is_world_process_zero():
        with atomic_dir(model_dir) as tmp:
            trainer.save_model(str(tmp))  # adapter or full weights + processor
            # A frozen copy of the starting adapter (the preference stage's reference) is only
            # needed while training; the model is the trained adapter.
            if (tmp / "ref" / "adapter_config.json").is_file():
                shutil.rmtree(tmp / "ref")
            save_config(config, tmp)
            save_prompts(tmp, config.data.task, list(prompts))
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
    return TrainResult(
        model_dir=model_dir,
        metrics=metrics,
        skipped_images=skipped,
        best_checkpoint=trainer.state.best_model_checkpoint,
        is_main_process=trainer.is_world_process_zero(),
    )


def run_training(
    config: TrainConfig,
    *,
    resume: bool = False,
    extra_callbacks: list[Any] | None = None,
    train_examples: Sequence[Any] | None = None,
) -> TrainResult:
    """Train as `config` says; `resume` continues from the newest checkpoint in output_dir.

    `train_examples` replaces the train split's files with any sequence of
    `VisionTextExample` s (e.g. scenes rendered on the fly; its `prompts` attribute, if any,
    names the prompts saved with the model); eval data still comes from `config.data`.
    `stage: dpo` trains on preference pairs instead (`roadscene.train.dpo.run_dpo`).
    """
    if config.stage == "dpo":
        if train_examples is not None:
            raise ValueError("the dpo stage trains on pair files, not on train_examples")
        from roadscene.train.dpo import run_dpo

        return run_dpo(config, resume=resume, extra_callbacks=extra_callbacks)

    import torch
    from transformers import set_seed

    from roadscene.data.examples import RecordExamples
    from roadscene.models import get_family
    from roadscene.train.collator import EncodedDataset, TrainingCollator

    train_cfg = config.train
    if train_cfg.num_threads:
        torch.set_num_threads(train_cfg.num_threads)
    last_checkpoint = checkpoint_to_resume(config, resume)

    set_seed(train_cfg.seed)
    family = get_family(config.model.family)
    train_records: list = []
    bad_train: Any = []
    if train_examples is None:
        train_records, bad_train = load_split(
            config, config.data.train_split, config.data.max_train_examples
        )
        if not train_records:
            raise InputError(f"no usable training rows in split '{config.data.train_split}'")
    eval_records: list = []
    bad_eval_count = 0
    if config.data.eval_split:
        eval_records, bad_eval = load_split(
            config, config.data.eval_split, config.data.max_eval_examples
        )
        bad_eval_count = len(bad_eval)
    skipped = len(bad_train) + bad_eval_count
    if skipped:
        print(f"skipped {skipped} rows with missing or unreadable images (data.on_bad_image=skip)")

    model, processor = load_trainable_model(config, family)
    if train_examples is None:
        train_examples = RecordExamples(train_records)
    # The annotated task's prompts carry each row's annotation: no prompt of its own to save.
    prompts = (
        [] if config.data.task == "annotated" else list(getattr(train_examples, "prompts", []))
    )
    cache = config.data.cache_encoded
    train_dataset = EncodedDataset(train_examples, family, processor, cache=cache)
    eval_dataset = (
        EncodedDataset(RecordExamples(eval_records), family, processor, cache=cache)
        if eval_records
        else None
    )
    evaluate = eval_dataset is not None
    gen = config.generation_eval
    args = training_arguments(
        config, evaluate=evaluate, keep_best=gen.enabled and gen.keep_best and evaluate
    )
    pad_to = train_cfg.pad_to_length if train_cfg.padding == "max_length" else None
    trainer = family.make_trainer(
        config.family_options,
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=TrainingCollator(family, processor, pad_to_length=pad_to),
        processing_class=processor,
        callbacks=run_callbacks(config, family, processor, eval_records, prompts, extra_callbacks),
        optimizers=(
            family.create_optimizer(
                model, learning_rate=train_cfg.learning_rate, options=config.family_options
            ),
            None,
        ),
    )
    output = trainer.train(resume_from_checkpoint=last_checkpoint)
    return finish_run(
        trainer,
        config,
        output,
        prompts=prompts,
        skipped=skipped,
        evaluate=evaluate,
        summary={"train_rows": len(train_dataset), "eval_rows": len(eval_records)},
    )
