"""Flamingo training on the HF Trainer: which parameters train, optimizer groups, gate
regularisation and text dropout of the field labels.

- Trainable: the perceiver, the gated cross-attention layers and the embedding rows of
  `<|endofchunk|>` and `<image>` (a gradient hook zeroes every other row's gradient; that
  group has no weight decay, so AdamW leaves those rows bit-identical).
- Optimizer groups (`FlamingoTrainer.create_optimizer`): gates at lr × gate_lr_multiplier without
  decay; cross-attention weight matrices with `cross_attention_weight_decay`; the rest without.
- Loss (`compute_loss`): the model's answer-only cross-entropy + gate_regularization ×
  mean(tanh(gate)²).
- Text dropout (`get_batch_samples`): each field label token span in a supervised answer is
  removed with probability `text_dropout`, from a generator seeded by (seed, global step), so a
  resumed run draws exactly what the uninterrupted run drew.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn
from transformers import Trainer

from roadscene.models.base import IGNORE_INDEX
from roadscene.models.flamingo.recipe import FIELD_LABELS, FlamingoTrainingSection

GATE_NAMES = ("attn_gate", "ff_gate")


def is_trainable_name(name: str) -> bool:
    """Perceiver and cross-attention parameters (the embedding is handled separately)."""
    return name.startswith("perceiver.") or ".gated_cross_attn_layer." in name


def prepare_for_training(model: nn.Module, recipe: FlamingoTrainingSection) -> nn.Module:
    """Freeze everything except the perceiver (with its frame embeddings, when it has them),
    the cross-attention and the two new token rows."""
    config = model.config
    model.requires_grad_(False)
    for name, param in model.named_parameters():
        if is_trainable_name(name):
            param.requires_grad_(True)
    embedding = model.get_input_embeddings().weight
    embedding.requires_grad_(True)
    row_mask = torch.zeros(embedding.shape[0], 1)
    row_mask[[config.endofchunk_token_id, config.media_token_id]] = 1.0

    def keep_new_token_rows(grad: torch.Tensor) -> torch.Tensor:
        return grad * row_mask.to(device=grad.device, dtype=grad.dtype)

    embedding.register_hook(keep_new_token_rows)
    if recipe.gate_init is not None:
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.endswith(GATE_NAMES):
                    param.fill_(recipe.gate_init)
    return model


def add_frame_embeddings(model: nn.Module, frames: int) -> None:
    """Frame embeddings for clips of up to `frames` frames (existing rows kept, new rows zero),
    recorded in the config so the saved model has them."""
    perceiver = model.perceiver
    old = perceiver.frame_embs
    dim = perceiver.latents.shape[1]
    new = torch.zeros(frames, dim, dtype=perceiver.latents.dtype, device=perceiver.latents.device)
    if old is not None:
        new[: old.shape[0]] = old.detach()
    perceiver.frame_embs = nn.Parameter(new)
    model.config.max_num_frames = frames


def parameter_groups(
    model: nn.Module, learning_rate: float, recipe: FlamingoTrainingSection
) -> list[dict[str, Any]]:
    """AdamW groups: gates (lr × multiplier, no decay), cross-attention matrices (decay), rest."""
    gates, decayed, plain = [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.endswith(GATE_NAMES):
            gates.append(param)
        elif ".gated_cross_attn_layer." in name and param.ndim == 2:
            decayed.append(param)
        else:
            plain.append(param)  # perceiver, LayerNorms, the two embedding rows
    return [
        {"params": gates, "lr": learning_rate * recipe.gate_lr_multiplier, "weight_decay": 0.0},
        {
            "params": decayed,
            "lr": learning_rate,
            "weight_decay": recipe.cross_attention_weight_decay,
        },
        {"params": plain, "lr": learning_rate, "weight_decay": 0.0},
    ]


def gate_penalty(model: nn.Module) -> torch.Tensor | float:
    """mean over the trainable gates of tanh(gate)² (0 when the gates are frozen, as under
    PEFT adapters)."""
    gates = [
        param
        for name, param in model.named_parameters()
        if name.endswith(GATE_NAMES) and param.requires_grad
    ]
    if not gates:
        return 0.0
    return torch.stack([gate.tanh().pow(2).sum() for gate in gates]).mean()


def label_token_sequences(tokenizer: Any, labels: Sequence[str] = FIELD_LABELS) -> list[list[int]]:
    """Token ids of each field label as it appears inside an answer (after a space)."""
    return [tokenizer(" " + label, add_special_tokens=False)["input_ids"] for label in labels]


def drop_field_labels(
    batch: dict[str, torch.Tensor],
    label_sequences: Sequence[Sequence[int]],
    probability: float,
    pad_token_id: int,
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """Remove each supervised occurrence of a label token sequence with `probability`.

    Rows are right-padded again to the batch's width; other keys pass through unchanged.
    """
    input_ids, attention_mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    batch_size, width = input_ids.shape
    rows_ids, rows_mask, rows_labels = [], [], []
    for row in range(batch_size):
        ids = input_ids[row].tolist()
        supervised = (labels[row] != IGNORE_INDEX).tolist()
        remove: set[int] = set()
        for start in range(width):
            if not supervised[start]:
                continue
            for sequence in label_sequences:
                end = start + len(sequence)
                if ids[start:end] == list(sequence) and all(supervised[start:end]):
                    if torch.rand((), generator=generator).item() < probability:
                        remove.update(range(start, end))
                    break
        keep = torch.tensor([i for i in range(width) if i not in remove], dtype=torch.long)
        padding = width - len(keep)
        rows_ids.append(
            torch.cat([input_ids[row, keep], input_ids.new_full((padding,), pad_token_id)])
        )
        rows_mask.append(torch.cat([attention_mask[row, keep], attention_mask.new_zeros(padding)]))
        rows_labels.append(
            torch.cat([labels[row, keep], labels.new_full((padding,), IGNORE_INDEX)])
        )
    return {
        **batch,
        "input_ids": torch.stack(rows_ids),
        "attention_mask": torch.stack(rows_mask),
        "labels": torch.stack(rows_labels),
    }


class FlamingoTrainer(Trainer):
    """HF Trainer with the Flamingo recipe's optimizer groups, gate regularisation and text
    dropout. Everything else (loop, bf16 autocast, checkpoints, resume) is the Trainer's."""

    def __init__(self, *args: Any, recipe: FlamingoTrainingSection, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recipe = recipe
        tokenizer = self.processing_class.tokenizer
        self.label_sequences = label_token_sequences(tokenizer)
        self.pad_token_id = tokenizer.pad_token_id

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(
                self.args, opt_model
            )
            groups = parameter_groups(opt_model, self.args.learning_rate, self.recipe)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def get_batch_samples(
        self, epoch_iterator: Iterator, num_batches: int, device: torch.device
    ) -> tuple[list, torch.Tensor | int | None]:
        batch_samples = []
        for _ in range(num_batches):
            try:
                batch_samples.append(next(epoch_iterator))
            except StopIteration:
                break
        if self.recipe.text_dropout > 0:
            generator = torch.Generator().manual_seed(
                self.args.seed * 1_000_003 + self.state.global_step
            )
            batch_samples = [
                drop_field_labels(
                    batch,
                    self.label_sequences,
                    self.recipe.text_dropout,
                    self.pad_token_id,
                    generator,
                )
                if "labels" in batch
                else batch
                for batch in batch_samples
            ]
        return batch_samples, self._get_num_items_in_batch(batch_samples, device)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> Any:
        loss, outputs = super().compute_loss(
            model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
        )
        if self.recipe.gate_regularization > 0 and model.training:
            penalty = self.recipe.gate_regularization * gate_penalty(model)
            # The answer loss is normalised over the whole accumulated batch; the penalty is
            # added once per optimizer step.
            loss = loss + penalty / self.args.gradient_accumulation_steps
        return (loss, outputs) if return_outputs else loss
