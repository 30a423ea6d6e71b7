"""A language-model loss that counts some answer tokens more than others.

A clip answer holds about 45 tokens, and only one per close person, bicycle or car says how it
moves (`standing still`, `approaching`, `moving away`, `crossing`): what the frames, not the
last image, decide. `train.motion_loss_weight` counts the tokens of each motion word that many
times (docs/training.md, "What training does"); every other token counts once.

The weighted sum is divided by the number of answer tokens (the Trainer's `num_items_in_batch`
when it gives one, over the whole accumulated batch and every process), so gradient
accumulation and data parallelism see the same loss as one large batch, and a weight of 1 is
the usual mean cross-entropy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from roadscene.errors import InputError
from roadscene.models.base import IGNORE_INDEX
from roadscene.schema import MOTIONS


def motion_word_tokens(tokenizer: Any) -> list[list[int]]:
    """The token ids of each motion word as an answer writes it (after `, `, so with its
    leading space)."""
    words = []
    for word in MOTIONS:
        ids = tokenizer(f" {word}", add_special_tokens=False)["input_ids"]
        if not ids:
            raise InputError(
                f"the tokenizer writes no token for the motion word '{word}'",
                field="motion_loss_weight",
            )
        words.append(list(ids))
    return words


def weighted_token_loss(words: Sequence[Sequence[int]], weight: float) -> Callable[..., Any]:
    """A `compute_loss_func` for the HF Trainer: next-token cross-entropy over the answer with
    every token of each answer span that spells one of `words` (token id sequences) counted
    `weight` times (see the module docstring)."""
    import torch
    import torch.nn.functional as F

    patterns = [torch.tensor(word, dtype=torch.long) for word in words]
    on_device: dict[Any, list[Any]] = {}  # the patterns, copied once to each device seen

    def loss(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
        logits = outputs["logits"] if isinstance(outputs, Mapping) else outputs[0]
        # Position t predicts token t + 1.  (batch, length - 1, vocab) and (batch, length - 1)
        logits = logits[:, :-1].float()
        targets = labels[:, 1:].to(logits.device)
        per_token = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            targets.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="none",
        ).view_as(targets)
        answer = targets != IGNORE_INDEX
        in_word = torch.zeros_like(answer)
        if targets.device not in on_device:
            on_device[targets.device] = [p.to(targets.device) for p in patterns]
        for pattern in on_device[targets.device]:
            size = len(pattern)
            if size > targets.shape[1]:
                continue
            # (batch, starts, size): where the whole word starts, then every token it covers
            starts = (targets.unfold(1, size, 1) == pattern).all(-1)
            for offset in range(size):
                in_word[:, offset : offset + starts.shape[1]] |= starts
        weights = torch.where(in_word, weight, 1.0) * answer
        count = num_items_in_batch if num_items_in_batch is not None else answer.sum()
        if isinstance(count, torch.Tensor):
            count = count.to(logits.device)
        return (per_token * weights).sum() / count

    return loss
