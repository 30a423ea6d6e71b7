"""`roadscene train`: config -> data -> model (LoRA / QLoRA / full) -> HF Trainer -> saved model.

The HF Trainer does the loop, so `torchrun` / `accelerate launch` (DDP, FSDP, DeepSpeed; one node
or several) scale it out unchanged; `roadscene.train.launch` reads what the launcher asked for
(docs/training.md, "Several GPUs or nodes"). The final folder (`{output_dir}/model`) holds the
adapter (or full model), the processor with its chat template and the resolved config:
`roadscene predict --model {output_dir}/model` needs nothing else.

`run_training` runs the supervised stage here; `stage: dpo` runs the preference stage
(`roadscene.train.dpo`). Both go through the shared steps of `roadscene.train.stage`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from roadscene.errors import InputError
from roadscene.train.config import TrainConfig
from roadscene.train.stage import (
    TrainResult,
    data_path,
    finish_run,
    image_root,
    load_eval_rows,
    load_split,
    load_trainable_model,
    optimizers,
    report_skipped,
    run_callbacks,
    start_run,
    training_arguments,
)


def _loss_kwargs(config: TrainConfig, processor: Any) -> dict[str, Any]:
    """The Trainer's `compute_loss_func` when motion words weigh more (`roadscene.train.loss`), else
    nothing: the model's own loss."""
    weight = config.train.motion_loss_weight
    if weight == 1.0:
        return {}
    from roadscene.train.loss import motion_word_tokens, weighted_token_loss

    words = motion_word_tokens(getattr(processor, "tokenizer", processor))
    return {"compute_loss_func": weighted_token_loss(words, weight)}


def _mixed_examples(config: TrainConfig) -> tuple[Any, int]:
    """The task mix of `data.mix` (every source file read, every image checked) and the number
    of rows skipped for bad images."""
    from roadscene.data.images import check_images
    from roadscene.data.mix import MixedExamples
    from roadscene.data.records import load_records

    data = config.data
    assert data.mix is not None
    sources, skipped = [], 0
    for source in data.mix.sources:
        path = data_path(config, source.file)
        if not path.is_file():
            raise InputError("mix source file not found", path=path, field="data.mix.sources")
        records, bad = check_images(
            load_records(source.task, path, image_root(config), clip=data.clip), data.on_bad_image
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
    """Train as `config` says; `resume` continues from the newest complete checkpoint in
    output_dir.

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

    last_checkpoint = start_run(config, resume)

    from roadscene.data.augment import AugmentedExamples, Augmenter
    from roadscene.data.examples import RecordExamples
    from roadscene.models import get_family
    from roadscene.train.collator import EncodedDataset, TrainingCollator

    train_cfg = config.train
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
        train_records, bad_train = load_split(
            config,
            config.data.train_split,
            config.data.max_train_examples,
            config.data.train_file,
        )
        if not train_records:
            raise InputError(f"no usable training rows in split '{config.data.train_split}'")
    eval_records, bad_eval = load_eval_rows(config)
    skipped = len(bad_train) + len(bad_eval) + mix_skipped
    report_skipped(skipped)

    if train_examples is None:
        train_examples = RecordExamples(train_records)
    clips = _has_clips(train_examples, train_records, eval_records)
    model, processor = load_trainable_model(
        config, family, clip_frames=config.data.clip.frames if clips else None
    )
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
    evaluate = eval_dataset is not None
    gen = config.generation_eval
    args = training_arguments(
        config, family, evaluate=evaluate, keep_best=gen.enabled and gen.keep_best and evaluate
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
        callbacks=run_callbacks(
            config, family, processor, eval_records, prompts, extra_callbacks, epoch_callbacks
        ),
        optimizers=optimizers(config, family, model),
        **_loss_kwargs(config, processor),
    )
    output = trainer.train(resume_from_checkpoint=last_checkpoint)
    summary: dict[str, Any] = {"train_rows": len(train_dataset), "eval_rows": len(eval_records)}
    if mix_plan is not None:
        summary["mix"] = mix_plan
    return finish_run(
        trainer,
        config,
        output,
        prompts=prompts,
        skipped=skipped,
        evaluate=evaluate,
        summary=summary,
    )
