"""Trainer callbacks: generation-based field accuracy and (preference stage) held-out preference
accuracy at every evaluation, and the resolved config written into every checkpoint."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

if TYPE_CHECKING:
    from roadscene.data.records import ExampleRecord
    from roadscene.models.base import ModelFamily
    from roadscene.train.config import TrainConfig

FIELDS = ("sidewalk", "road", "relation")


def strict_field_scores(predictions: Sequence[str], targets: Sequence[str]) -> dict[str, float]:
    """Strict per-field accuracy of predicted vs target answers, both parsed with
    `roadscene.targets.parse_response`: a field counts as right only when the prediction states
    it and its value equals the target's (a missing field is wrong).

    Returns `{field}_accuracy` for sidewalk/road/relation, `field_accuracy` (their mean) and
    `exact_match` (whole answer identical after stripping).
    """
    from roadscene.targets import parse_response

    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets")
    if not targets:
        return {}
    counts = dict.fromkeys(FIELDS, 0)
    exact = 0
    for prediction, target in zip(predictions, targets, strict=True):
        parsed_prediction, parsed_target = parse_response(prediction), parse_response(target)
        for name in FIELDS:
            value = getattr(parsed_prediction, name)
            counts[name] += int(value is not None and value == getattr(parsed_target, name))
        exact += int(prediction.strip() == target.strip())
    total = len(targets)
    scores = {f"{name}_accuracy": counts[name] / total for name in FIELDS}
    scores["field_accuracy"] = sum(counts.values()) / (len(FIELDS) * total)
    scores["exact_match"] = exact / total
    return scores


class GenerationEvalCallback(TrainerCallback):
    """At every evaluation, greedily generate answers for a fixed val subset, add
    `eval_field_accuracy`, `eval_{field}_accuracy` and `eval_exact_match` to the evaluation
    metrics (so `metric_for_best_model` can keep the best checkpoint by them), log them and
    append them with a few samples to `generation_eval.jsonl` in the run folder."""

    def __init__(
        self,
        family: ModelFamily,
        processor: Any,
        records: Sequence[ExampleRecord],
        *,
        batch_size: int,
        max_new_tokens: int,
        output_dir: str | Path,
    ) -> None:
        self.family = family
        self.processor = processor
        self.records = list(records)
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.log_path = Path(output_dir) / "generation_eval.jsonl"

    def predict(self, model: Any) -> list[str]:
        from roadscene.data.examples import to_example

        was_training = model.training
        model.eval()
        texts: list[str] = []
        try:
            for start in range(0, len(self.records), self.batch_size):
                chunk = self.records[start : start + self.batch_size]
                examples = [to_example(r, with_answer=False) for r in chunk]
                texts.extend(
                    self.family.generate(
                        model, self.processor, examples, max_new_tokens=self.max_new_tokens
                    )
                )
        finally:
            model.train(was_training)
        return texts

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):  # noqa: ANN001
        if model is None or metrics is None or not self.records:
            return control
        predictions = self.predict(model)
        targets = [record.answer or "" for record in self.records]
        scores = {f"eval_{k}": v for k, v in strict_field_scores(predictions, targets).items()}
        metrics.update(scores)
        state.log_history.append({**scores, "step": state.global_step})
        if state.is_world_process_zero:
            samples = [
                {"image": r.image, "prediction": p, "target": t}
                for r, p, t in zip(self.records[:3], predictions, targets, strict=False)
            ]
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a", encoding="utf-8") as handle:
                line = {"step": state.global_step, **scores, "samples": samples}
                handle.write(json.dumps(line, ensure_ascii=False) + "\n")
            print(
                f"step {state.global_step}: "
                + ", ".join(f"{k.removeprefix('eval_')} {v:.3f}" for k, v in scores.items()),
                flush=True,
            )
        return control


class PreferenceEvalCallback(TrainerCallback):
    """At every evaluation of the preference stage, score the held-out pairs under the policy:
    add `eval_preference_accuracy` (share of pairs whose chosen answer has the higher summed
    log-probability) and `eval_logp_margin` to the evaluation metrics and the log. (TRL's own
    `eval_rewards/accuracies` compares log-probability *ratios* against the reference model.)"""

    def __init__(self, collator: Any, *, batch_size: int) -> None:
        self.collator = collator
        self.batch_size = batch_size

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):  # noqa: ANN001
        from roadscene.train.preference import pair_logprobs, preference_scores

        if model is None or metrics is None or not len(self.collator):
            return control
        chosen, rejected = pair_logprobs(model, self.collator, batch_size=self.batch_size)
        scores = {f"eval_{k}": v for k, v in preference_scores(chosen, rejected).items()}
        metrics.update(scores)
        state.log_history.append({**scores, "step": state.global_step})
        if state.is_world_process_zero:
            print(
                f"step {state.global_step}: "
                + ", ".join(f"{k.removeprefix('eval_')} {v:.3f}" for k, v in scores.items()),
                flush=True,
            )
        return control


class SaveConfigCallback(TrainerCallback):
    """Write the resolved config and the training prompts into every checkpoint folder."""

    def __init__(self, config: TrainConfig, prompts: Sequence[str]) -> None:
        self.config = config
        self.prompts = list(prompts)

    def on_save(self, args, state, control, **kwargs):  # noqa: ANN001
        from roadscene.train.config import save_config, save_prompts

        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                save_config(self.config, folder)
                save_prompts(folder, self.config.data.task, self.prompts)
        return control


class StopAfterSaveCallback(TrainerCallback):
    """Stop training right after the first checkpoint is written (used to test resuming)."""

    def on_save(self, args, state, control, **kwargs):  # noqa: ANN001
        control.should_training_stop = True
        return control


class NonFiniteLossCallback(TrainerCallback):
    """Stop training with one line naming the step when the training loss becomes NaN or
    infinite (a learning rate far too high, broken data): the weights are lost from there on, so
    continuing would only write NaN into checkpoints and the summary. The loss is read from the
    model's forward output in training mode; the check runs before the step's checkpoint."""

    def __init__(self) -> None:
        self.bad_loss: float | None = None
        self._hook: Any = None

    def _check(self, module: Any, inputs: Any, output: Any) -> None:
        import torch

        if not module.training or self.bad_loss is not None:
            return
        loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
        if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss.detach()).all()):
            self.bad_loss = float(loss.detach().float().reshape(-1)[0])

    def on_train_begin(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
        if model is not None and self._hook is None:
            self._hook = model.register_forward_hook(self._check)
        return control

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if self.bad_loss is not None:
            from roadscene.errors import InputError

            self.on_train_end(args, state, control)
            raise InputError(
                f"training stopped at step {state.global_step}: the training loss became "
                f"{self.bad_loss} (is train.learning_rate far too high?); checkpoints saved "
                "before this step are kept"
            )
        return control

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        return control
