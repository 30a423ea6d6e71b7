"""Preference pairs as batches, and the log-probability of each answer.

`PreferenceCollator` builds the batch TRL's `DPOTrainer` trains on from pair rows: each pair is
encoded by the family exactly like an SFT example (its `encode`: the chat prompt with the image
expanded, then the answer and its end-of-answer token), once with the chosen answer and once
with the rejected one. The batch holds 2B rows, the B chosen ones first, right-padded, with
`completion_mask` = 1 on the answer tokens (the tokens SFT puts loss on). So DPO scores exactly
the tokens SFT trained and generation produces, for every family, and `pair_logprobs` (the
held-out preference accuracy) scores them the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from roadscene.errors import InputError
from roadscene.models.base import IGNORE_INDEX, floating_dtype

if TYPE_CHECKING:
    import torch

    from roadscene.data.pairs import PairRecord
    from roadscene.models.base import ModelFamily


class PreferenceCollator:
    """Pair rows (`{"index": i}` into `pairs`) -> `input_ids`, `attention_mask`,
    `completion_mask` (2B, T) and the family's image tensors for the 2B rows.

    `max_length` cuts answers so prompt + answer fit; a prompt that alone reaches it (image
    tokens included) is an InputError naming the pair, never silently cut. `cache` keeps the
    encoded pairs in memory after first use.
    """

    def __init__(
        self,
        family: ModelFamily,
        processor: Any,
        pairs: Sequence[PairRecord],
        *,
        max_length: int | None = None,
        cache: bool = False,
    ) -> None:
        self.family = family
        self.processor = processor
        self.pairs = pairs
        self.max_length = max_length
        self.cache: dict[int, tuple[dict, dict]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.pairs)

    def encoded(self, index: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(chosen, rejected) features of pair `index`."""
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        from roadscene.data.examples import VisionTextExample
        from roadscene.data.images import open_image

        pair = self.pairs[index]
        image = open_image(pair.image_path, source=pair.source, line=pair.line)
        chosen = VisionTextExample(
            images=[image], prompt=pair.prompt, answer=pair.chosen, image_ref=pair.image
        )
        features = tuple(
            self._fit(self.family.encode(self.processor, example), pair)
            for example in (chosen, replace(chosen, answer=pair.rejected))
        )
        if self.cache is not None:
            self.cache[index] = features  # type: ignore[assignment]
        return features  # type: ignore[return-value]

    def _fit(self, features: dict[str, torch.Tensor], pair: PairRecord) -> dict[str, torch.Tensor]:
        length = int(features["input_ids"].shape[0])
        if self.max_length is None or length <= self.max_length:
            return features
        answer = (features["labels"] != IGNORE_INDEX).nonzero()
        prompt_length = int(answer[0]) if len(answer) else length
        if prompt_length >= self.max_length:
            raise InputError(
                f"the prompt with its image tokens is {prompt_length} tokens, so "
                f"dpo.max_length={self.max_length} leaves no answer token; raise dpo.max_length "
                "or set it to null",
                path=pair.source,
                line=pair.line,
                field="dpo.max_length",
            )
        per_token = ("input_ids", "attention_mask", "labels", *self.family.token_keys)
        return {
            key: value[: self.max_length] if key in per_token else value
            for key, value in features.items()
        }

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        encoded = [self.encoded(int(row["index"])) for row in rows]
        features = [chosen for chosen, _ in encoded] + [rejected for _, rejected in encoded]
        batch = self.family.collate(self.processor, features, padding_side="right")
        labels = batch.pop("labels")
        batch["completion_mask"] = (labels != IGNORE_INDEX).long()
        return batch


def pair_logprobs(
    model: Any, collator: PreferenceCollator, *, batch_size: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probability of the chosen and of the rejected answer of every pair (N,), N,
    under `model` (a plain forward; the tokens DPO scores)."""
    import torch

    device = next(model.parameters()).device
    dtype = floating_dtype(model)
    chosen, rejected = [], []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(collator), batch_size):
                rows = [{"index": i} for i in range(start, min(start + batch_size, len(collator)))]
                batch = {key: value.to(device) for key, value in collator(rows).items()}
                completion = batch.pop("completion_mask")[:, 1:]
                for key in collator.family.image_keys:
                    if key in batch:
                        batch[key] = batch[key].to(dtype)
                logits = model(**batch, use_cache=False).logits[:, :-1].float()  # (2B, T-1, V)
                targets = batch["input_ids"][:, 1:, None]
                token_logps = logits.log_softmax(-1).gather(-1, targets).squeeze(-1)
                sums = (token_logps * completion).sum(dim=1).cpu()
                half = len(rows)
                chosen.append(sums[:half])
                rejected.append(sums[half:])
    finally:
        model.train(was_training)
    return torch.cat(chosen), torch.cat(rejected)


def preference_scores(chosen: torch.Tensor, rejected: torch.Tensor) -> dict[str, float]:
    """`preference_accuracy`: share of pairs whose chosen answer is more likely than the
    rejected one; `logp_margin`: mean of log p(chosen) - log p(rejected)."""
    if not len(chosen):
        return {}
    return {
        "preference_accuracy": float((chosen > rejected).float().mean()),
        "logp_margin": float((chosen - rejected).mean()),
    }
