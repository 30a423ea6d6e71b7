"""The preference stage (`stage: dpo`): TRL's `DPOTrainer` continues an SFT run on (prompt,
chosen, rejected) pairs.

- **Start and reference.** `model.name_or_path` is an SFT run's model folder. A LoRA / QLoRA
  run's adapter keeps training on its base; a full model gets new adapters (lora / qlora) or
  trains whole (full). The reference is always the SFT model: for adapters, TRL keeps a frozen
  copy of the adapter as it was at the start (its `ref` adapter) and scores the reference with
  it; disabling the adapter instead would score the pre-SFT base model when the SFT adapter is
  the one that continues. For full training, a frozen copy of the starting model.
- **Batches.** `PreferenceCollator` (the family's own encoding, as SFT): TRL's loss, metrics,
  checkpoints and resume; our tokens. `dpo.max_length` never cuts a prompt (image tokens).
- **Logged and saved like SFT**: TRL's `rewards/margins`, `rewards/accuracies` (train and
  eval), eval loss on the held-out pairs, `eval_preference_accuracy` (chosen answer more likely
  than rejected), the generation-based field accuracy on the val rows, checkpoints with the
  resolved config, `--resume`, and `{output_dir}/model`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from roadscene.errors import InputError
from roadscene.train.config import TrainConfig
from roadscene.train.stage import (
    TrainResult,
    finish_run,
    image_root,
    load_eval_rows,
    load_trainable_model,
    optimizers,
    report_skipped,
    run_callbacks,
    start_run,
    training_arguments,
)


def load_pair_split(config: TrainConfig, file: str | Path, limit: int | None) -> tuple[list, Any]:
    """Pairs of `file` whose images open (bad ones per `data.on_bad_image`)."""
    from roadscene.data.images import check_images
    from roadscene.data.pairs import load_pairs

    pairs = load_pairs(file, image_root(config), limit=limit)
    return check_images(pairs, config.data.on_bad_image)  # type: ignore[arg-type]


def pair_files(config: TrainConfig) -> tuple[Path, Path | None]:
    """(train pairs, held-out pairs or None) as the recipe names them."""
    from roadscene.data.pairs import pair_file

    data, dpo = config.data, config.dpo
    train = Path(dpo.train_file) if dpo.train_file else pair_file(data.train_split, data.data_dir)
    if dpo.eval_file:
        return train, Path(dpo.eval_file)
    return train, pair_file(data.eval_split, data.data_dir) if data.eval_split else None


def _require_trl() -> None:
    try:
        import trl  # noqa: F401
    except ImportError:
        raise InputError(
            "stage dpo needs TRL, which is not installed: pip install 'roadscene[dpo]'",
            field="stage",
        ) from None


def run_dpo(
    config: TrainConfig, *, resume: bool = False, extra_callbacks: list[Any] | None = None
) -> TrainResult:
    """Preference-tune the SFT model named by `config.model.name_or_path` (module docstring)."""
    _require_trl()
    from datasets import Dataset
    from peft import PeftModel
    from trl import DPOConfig, DPOTrainer

    from roadscene.models import get_family
    from roadscene.train.callbacks import PreferenceEvalCallback
    from roadscene.train.preference import PreferenceCollator

    last_checkpoint = start_run(config, resume)
    train_cfg, data, dpo = config.train, config.data, config.dpo
    family = get_family(config.model.family)

    train_file, eval_file = pair_files(config)
    train_pairs, bad_train = load_pair_split(config, train_file, data.max_train_examples)
    if not train_pairs:
        raise InputError("no usable preference pairs", path=train_file)
    eval_pairs, bad_eval = (
        load_pair_split(config, eval_file, data.max_eval_examples) if eval_file else ([], [])
    )
    eval_rows, bad_rows = load_eval_rows(config) if config.generation_eval.enabled else ([], [])
    skipped = len(bad_train) + len(bad_eval) + len(bad_rows)
    report_skipped(skipped)

    model, processor = load_trainable_model(config, family)
    # Adapters: TRL freezes a copy of the starting adapter as the reference. Full training: a
    # frozen copy of the starting model (TRL would reload it from its path otherwise).
    ref_model = None
    if not isinstance(model, PeftModel):
        ref_model = copy.deepcopy(model).eval().requires_grad_(False)

    # Rows only point into the pair lists; the collator encodes them (TRL sees a vision dataset
    # by its `image` key and leaves tokenisation to the collator).
    def rows(pairs: list, offset: int) -> Any:
        return Dataset.from_list(
            [{"image": pair.image, "index": offset + i} for i, pair in enumerate(pairs)]
        )

    cache = data.cache_encoded
    collator = PreferenceCollator(
        family, processor, [*train_pairs, *eval_pairs], max_length=dpo.max_length, cache=cache
    )
    evaluate = bool(eval_pairs)
    args = training_arguments(
        config,
        family,
        evaluate=evaluate,
        # as in SFT: the best checkpoint by the val rows' field accuracy
        keep_best=evaluate and bool(eval_rows) and config.generation_eval.keep_best,
        args_class=DPOConfig,
        beta=dpo.beta,
        loss_type=list(dpo.loss_type),
        loss_weights=dpo.loss_weights,
        label_smoothing=dpo.label_smoothing,
        max_length=None,  # the collator applies dpo.max_length (never inside the prompt)
        precompute_ref_log_probs=False,
    )
    prompts = [pair.prompt for pair in train_pairs]
    stage_callbacks = []
    if eval_pairs:
        eval_collator = PreferenceCollator(
            family, processor, eval_pairs, max_length=dpo.max_length, cache=cache
        )
        stage_callbacks.append(
            PreferenceEvalCallback(eval_collator, batch_size=train_cfg.eval_batch_size)
        )
    callbacks = run_callbacks(
        config, family, processor, eval_rows, prompts, extra_callbacks, stage_callbacks
    )
    trainer = DPOTrainer(
        model=model,
        ref_model=ref_model,
        args=args,
        data_collator=collator,
        train_dataset=rows(train_pairs, 0),
        eval_dataset=rows(eval_pairs, len(train_pairs)) if evaluate else None,
        processing_class=processor,
        callbacks=callbacks,
        optimizers=optimizers(config, family, model),
    )
    output = trainer.train(resume_from_checkpoint=last_checkpoint)
    return finish_run(
        trainer,
        config,
        output,
        prompts=prompts,
        skipped=skipped,
        evaluate=evaluate,
        summary={
            "train_pairs": len(train_pairs),
            "eval_pairs": len(eval_pairs),
            "train_file": str(train_file),
            "eval_file": str(eval_file) if eval_file else None,
            "eval_rows": len(eval_rows),
        },
    )
