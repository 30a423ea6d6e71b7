"""`roadscene train`: config -> data -> model (LoRA / QLoRA / full) -> HF Trainer -> saved model.

The HF Trainer does the loop, so `torchrun` / `accelerate launch` (DDP, FSDP, DeepSpeed; one node
or several) scale it out unchanged; `roadscene.train.launch` reads what the launcher asked for
(docs/training.md, "Several GPUs or nodes"). The final folder (`{output_dir}/model`) holds the
adapter (or full model), the processor with its chat template and the resolved config:
`roadscene predict --model {output_dir}/model` needs nothing else.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roadscene.errors import InputError
from roadscene.train.config import CONFIG_FILENAME, TrainConfig, save_config

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


def _data_path(config: TrainConfig, file: str) -> Path:
    """A data file named in the config: relative paths are relative to data.data_dir."""
    path = Path(file)
    return path if path.is_absolute() else Path(config.data.data_dir) / path


def _load_split(
    config: TrainConfig, split: str, limit: int | None, file: str | None = None
) -> tuple[list, Any]:
    from roadscene.data.images import check_images
    from roadscene.data.records import load_records, task_file

    data = config.data
    image_root = data.image_root or data.data_dir
    path = _data_path(config, file) if file else task_file(data.task, split, data.data_dir)
    records = load_records(data.task, path, image_root, limit=limit, clip=data.clip)
    return check_images(records, data.on_bad_image)


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


def _mixed_examples(config: TrainConfig) -> tuple[Any, int]:
    """The task mix of `data.mix` (every source file read, every image checked) and the number
    of rows skipped for bad images."""
    from roadscene.data.images import check_images
    from roadscene.data.mix import MixedExamples
    from roadscene.data.records import load_records

    data = config.data
    assert data.mix is not None
    image_root = data.image_root or data.data_dir
    sources, skipped = [], 0
    for source in data.mix.sources:
        path = _data_path(config, source.file)
        if not path.is_file():
            raise InputError("mix source file not found", path=path, field="data.mix.sources")
        records, bad = check_images(
            load_records(source.task, path, image_root, clip=data.clip), data.on_bad_image
        )
        sources.append(records)
        skipped += len(bad)
    return MixedExamples(data.mix, sources, seed=config.train.seed), skipped


def _has_clips(examples: Any, *record_lists: list) -> bool:
    """Whether the training data holds clips (rows naming a video or frames, or clip examples
    such as synthetic clips rendered on the fly)."""
    if any(record.clip is not None for records in record_lists for record in records):
        return True
    from roadscene.data.mix import MixedExamples

    if isinstance(examples, MixedExamples):
        return any(r.clip is not None for rows in examples.records for r in rows)
    return bool(getattr(examples, "clips", False))  # e.g. `RenderedClips`


def _epoch_callback(dataset: Any) -> Any:
    """Tells an augmented dataset which epoch is starting (its seed includes the epoch)."""
    from transformers import TrainerCallback

    class AugmentEpoch(TrainerCallback):
        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            dataset.set_epoch(int(state.epoch or 0))

    return AugmentEpoch()


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
    """
    from roadscene.train.launch import check_launch, process_device, use_family_fsdp_layers

    check_launch()
    import torch
    from transformers import TrainingArguments, set_seed

    from roadscene.data.augment import AugmentedExamples, Augmenter
    from roadscene.data.examples import RecordExamples
    from roadscene.io import atomic_dir, check_output, write_json
    from roadscene.models import get_family
    from roadscene.train.callbacks import (
        GenerationEvalCallback,
        NonFiniteLossCallback,
        SaveConfigCallback,
    )
    from roadscene.train.checkpoints import checkpoints, resume_checkpoint
    from roadscene.train.collator import EncodedDataset, TrainingCollator
    from roadscene.train.config import save_prompts

    train_cfg = config.train
    output_dir = Path(train_cfg.output_dir)
    if train_cfg.num_threads:
        torch.set_num_threads(train_cfg.num_threads)

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

    set_seed(train_cfg.seed)
    family = get_family(config.model.family)
    train_records: list = []
    bad_train: Any = []
    mix_plan: dict[str, Any] | None = None
    mix_skipped = 0
    if train_examples is None and config.data.mix is not None:
        train_examples, mix_skipped = _mixed_examples(config)
        mix_plan = train_examples.plan()
        shares = ", ".join(f"{k} {v:.3f}" for k, v in mix_plan["sources"].items())
        print(
            f"task mix over {mix_plan['items']} items: {shares}; annotated "
            f"{mix_plan['annotated']:.3f}, few-shot {mix_plan['few_shot']:.3f}"
        )
    elif train_examples is None:
        train_records, bad_train = _load_split(
            config,
            config.data.train_split,
            config.data.max_train_examples,
            config.data.train_file,
        )
        if not train_records:
            raise InputError(f"no usable training rows in split '{config.data.train_split}'")
    eval_records: list = []
    bad_eval_count = 0
    if config.data.eval_split or config.data.eval_file:
        eval_records, bad_eval = _load_split(
            config,
            config.data.eval_split or "",
            config.data.max_eval_examples,
            config.data.eval_file,
        )
        bad_eval_count = len(bad_eval)
    skipped = len(bad_train) + bad_eval_count + mix_skipped
    if skipped:
        print(f"skipped {skipped} rows with missing or unreadable images (data.on_bad_image=skip)")

    quantization = "4bit" if config.finetune.method == "qlora" else "none"
    use_bf16 = _use_bf16(train_cfg.bf16)
    dtype = _torch_dtype(config.model.dtype)
    if dtype is None and config.finetune.method == "full":
        # Full fine-tuning keeps fp32 master weights; the Trainer autocasts to bf16 on GPU.
        dtype = torch.float32
    loaded = family.load(
        config.model.name_or_path, quantization=quantization, dtype=dtype, device=process_device()
    )
    if train_examples is None:
        train_examples = RecordExamples(train_records)
    model = loaded.model
    if _has_clips(train_examples, train_records, eval_records):
        model = family.prepare_for_clips(model, config.data.clip.frames)
    model = family.prepare_for_training(
        model,
        config.finetune,
        config.family_options,
        gradient_checkpointing=train_cfg.gradient_checkpointing,
    )
    model.train()
    processor = loaded.processor

    # The annotated task's prompts carry each row's annotation: no prompt of its own to save.
    prompts = (
        [] if config.data.task == "annotated" else list(getattr(train_examples, "prompts", []))
    )
    epoch_callbacks: list[Any] = []
    if config.data.augment.active:
        augmented = AugmentedExamples(
            train_examples, Augmenter(config.data.augment, seed=train_cfg.seed), config.data.task
        )
        train_examples = augmented
        epoch_callbacks.append(_epoch_callback(augmented))
    cache = config.data.cache_encoded
    train_dataset = EncodedDataset(train_examples, family, processor, cache=cache)
    eval_dataset = (
        EncodedDataset(RecordExamples(eval_records), family, processor, cache=cache)
        if eval_records
        else None
    )
    use_family_fsdp_layers(family.fsdp_wrap_classes)
    gen = config.generation_eval
    use_generation = gen.enabled and eval_dataset is not None
    # Field accuracy only means something when answers carry the fields (bvpi).
    best_metric = "field_accuracy" if config.data.task == "bvpi" else "loss"
    keep_best = use_generation and gen.keep_best
    args = TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=train_cfg.num_epochs,
        max_steps=train_cfg.max_steps,
        per_device_train_batch_size=train_cfg.batch_size,
        per_device_eval_batch_size=train_cfg.eval_batch_size,
        gradient_accumulation_steps=train_cfg.grad_accum,
        learning_rate=train_cfg.learning_rate,
        weight_decay=train_cfg.weight_decay,
        adam_beta2=train_cfg.adam_beta2,
        warmup_steps=train_cfg.warmup_steps,
        lr_scheduler_type=train_cfg.lr_scheduler,
        max_grad_norm=train_cfg.max_grad_norm,
        seed=train_cfg.seed,
        bf16=use_bf16,
        # Cards without bf16 (T4, V100) train LoRA over fp16 weights with fp16 autocast.
        fp16=train_cfg.bf16 == "auto" and torch.cuda.is_available() and not use_bf16,
        activation_checkpointing=train_cfg.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        logging_steps=train_cfg.logging_steps,
        eval_strategy="steps" if eval_dataset is not None else "no",
        eval_steps=train_cfg.eval_steps,
        save_strategy="steps",
        save_steps=train_cfg.eval_steps,
        save_total_limit=train_cfg.save_total_limit,
        load_best_model_at_end=keep_best,
        metric_for_best_model=best_metric if keep_best else None,
        greater_is_better=(best_metric != "loss") if keep_best else None,
        train_sampling_strategy="group_by_length" if train_cfg.group_by_length else "random",
        remove_unused_columns=False,
        dataloader_num_workers=train_cfg.dataloader_num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        # Without a GPU, torchrun workers must form a gloo (MULTI_CPU) group.
        use_cpu=not torch.cuda.is_available(),
        report_to=train_cfg.report_to,
        ddp_find_unused_parameters=False,
    )
    callbacks: list[Any] = [
        SaveConfigCallback(config, prompts),
        NonFiniteLossCallback(),
        *epoch_callbacks,
    ]
    if use_generation:
        callbacks.append(
            GenerationEvalCallback(
                family,
                processor,
                eval_records[: gen.num_examples],
                batch_size=gen.batch_size,
                max_new_tokens=gen.max_new_tokens,
                output_dir=output_dir,
            )
        )
    callbacks.extend(extra_callbacks or [])
    pad_to = train_cfg.pad_to_length if train_cfg.padding == "max_length" else None
    trainer = family.make_trainer(
        config.family_options,
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=TrainingCollator(family, processor, pad_to_length=pad_to),
        processing_class=processor,
        callbacks=callbacks,
        optimizers=(
            family.create_optimizer(
                model, learning_rate=train_cfg.learning_rate, options=config.family_options
            ),
            None,
        ),
    )
    output = trainer.train(resume_from_checkpoint=last_checkpoint if resume else None)
    metrics = dict(output.metrics)
    if eval_dataset is not None and trainer.state.global_step > 0:
        metrics.update(trainer.evaluate())

    # Every process takes part in saving: FSDP and DeepSpeed ZeRO-3 gather the full weights
    # from all of them; only the main process writes. The folder appears whole or not at all.
    staging = output_dir / f".{MODEL_SUBDIR}.saving"
    if trainer.is_world_process_zero():
        shutil.rmtree(staging, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(staging))  # adapter or full weights + processor
    if trainer.is_world_process_zero():
        with atomic_dir(model_dir, ours=is_model_output, what="a trained model folder") as tmp:
            for item in staging.iterdir():
                item.rename(tmp / item.name)
            save_config(config, tmp)
            save_prompts(tmp, config.data.task, prompts)
        shutil.rmtree(staging)
        summary = {
            "metrics": metrics,
            "train_rows": len(train_dataset),
            "eval_rows": len(eval_records),
            "skipped_bad_images": skipped,
            "best_checkpoint": trainer.state.best_model_checkpoint,
            "global_step": trainer.state.global_step,
        }
        if mix_plan is not None:
            summary["mix"] = mix_plan
        write_json(model_dir / "training_summary.json", summary)
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
