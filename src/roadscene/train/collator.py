"""From examples to training batches: a dataset of a family's encoded features, and the collator
that pads them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from roadscene.data.examples import VisionTextExample
    from roadscene.models.base import ModelFamily


class EncodedDataset:
    """A map-style dataset (torch Dataset protocol) of `family.encode` features of `examples`
    (any sequence of examples: records read from files, scenes rendered on the fly...).

    Encoding (chat template, tokenisation, image processing) happens once per example per epoch,
    or once in total with `cache=True`; the collator then only pads.
    """

    def __init__(
        self,
        examples: Sequence[VisionTextExample],
        family: ModelFamily,
        processor: Any,
        *,
        cache: bool = False,
    ) -> None:
        self.examples = examples
        self.family = family
        self.processor = processor
        self.cache: dict[int, dict[str, torch.Tensor]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        features = self.family.encode(self.processor, self.examples[index])
        if self.cache is not None:
            self.cache[index] = features
        return features


class TrainingCollator:
    """Collator for the HF Trainer: `family.encode(...)` features in, a padded batch out.

    Input: a list of dicts of unpadded tensors (`input_ids`, `attention_mask`, `labels`, image
    tensors). Output: `input_ids`/`attention_mask`/`labels` (B, T) padded on the right with
    pad id / 0 / -100 (so padding never carries loss), image tensors batched by the family.
    No tokenisation happens here; features are computed once per example by the dataset.
    """

    def __init__(
        self, family: ModelFamily, processor: Any, *, pad_to_length: int | None = None
    ) -> None:
        self.family = family
        self.processor = processor
        self.pad_to_length = pad_to_length

    def __call__(self, features: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return self.family.collate(
            self.processor, features, padding_side="right", pad_to_length=self.pad_to_length
        )
