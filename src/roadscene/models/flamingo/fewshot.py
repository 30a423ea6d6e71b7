"""Choosing in-context demonstrations (few-shot) from a training file.

- `random`: K rows drawn with a generator seeded by (seed, query image), so a resumed or
  repeated prediction picks the same demonstrations for the same query.
- `similar` (RICES, as in OpenFlamingo's evaluation): the K rows whose images are closest to the
  query image by cosine similarity of the model's own frozen CLIP image embedding (the CLS token
  after the post LayerNorm); ordered least to most similar, so the closest sits next to the query.
  Only the query *image* is used: its annotation or caption is what we predict, so choosing by it
  would leak the answer.

A demonstration never uses the query's own image.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from roadscene.errors import InputError

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from roadscene.models.base import VisionTextExample
    from roadscene.train.data import ExampleRecord

ShotSelection = Literal["random", "similar"]
SHOT_SELECTIONS: tuple[str, ...] = ("random", "similar")

#: images -> (N, D) embeddings (any scale; they are L2-normalised here).
ImageEmbedder = Callable[[Sequence["Image.Image"]], "torch.Tensor"]


def clip_image_embedder(model: Any, processor: Any) -> ImageEmbedder:
    """The Flamingo model's frozen CLIP vision tower: pooled (CLS, post-LayerNorm) features."""
    import torch

    def embed(images: Sequence[Image.Image]) -> torch.Tensor:
        pixels = processor.pixels(list(images))  # (N, 3, H, W)
        vision = model.vision_encoder
        with torch.inference_mode():
            pooled = vision(pixel_values=pixels.to(vision.device, vision.dtype)).pooler_output
        return pooled.float().cpu()  # (N, D)

    return embed


class ShotSelector:
    """Picks `shots` demonstrations for each query from `pool` (records with answers)."""

    def __init__(
        self,
        pool: Sequence[ExampleRecord],
        shots: int,
        selection: ShotSelection = "random",
        *,
        seed: int = 0,
        embed_images: ImageEmbedder | None = None,
        batch_size: int = 16,
    ) -> None:
        if selection not in SHOT_SELECTIONS:
            raise InputError(
                f"unknown shot selection '{selection}'; allowed: {', '.join(SHOT_SELECTIONS)}",
                field="shot_selection",
            )
        if shots < 0:
            raise InputError(f"--shots must be >= 0, got {shots}", field="shots")
        if selection == "similar" and shots and embed_images is None:
            raise InputError(
                "shot selection 'similar' needs an image embedder", field="shot_selection"
            )
        self.pool = [record for record in pool if record.answer is not None]
        if shots and len(self.pool) <= shots:
            raise InputError(
                f"{shots} shots need more than {shots} demonstration rows with answers, "
                f"the shot file has {len(self.pool)}",
                field="shots",
            )
        self.shots = shots
        self.selection = selection
        self.seed = seed
        self.embed_images = embed_images
        self.batch_size = batch_size
        self._pool_embeddings: torch.Tensor | None = None

    def _embed(self, records: Sequence[ExampleRecord]) -> torch.Tensor:
        import torch

        from roadscene.train.data import open_image

        assert self.embed_images is not None
        chunks = []
        for start in range(0, len(records), self.batch_size):
            images = [
                open_image(r.image_path, source=r.source, line=r.line)
                for r in records[start : start + self.batch_size]
            ]
            chunks.append(self.embed_images(images))
        embeddings = torch.cat(chunks)  # (N, D)
        return torch.nn.functional.normalize(embeddings, dim=-1)

    def select(self, queries: Sequence[ExampleRecord]) -> list[list[ExampleRecord]]:
        """Demonstration records for each query, in prompt order."""
        if self.shots == 0:
            return [[] for _ in queries]
        if self.selection == "random":
            chosen = []
            for query in queries:
                generator = random.Random(f"{self.seed}|{query.image}")
                candidates = [r for r in self.pool if r.image_path != query.image_path]
                chosen.append(generator.sample(candidates, self.shots))
            return chosen
        import torch

        if self._pool_embeddings is None:
            self._pool_embeddings = self._embed(self.pool)  # (P, D)
        similarity = self._embed(queries) @ self._pool_embeddings.T  # (Q, P)
        for row, query in enumerate(queries):
            for column, record in enumerate(self.pool):
                if record.image_path == query.image_path:
                    similarity[row, column] = -torch.inf
        nearest = similarity.topk(self.shots, dim=-1).indices  # (Q, K), most similar first
        return [[self.pool[i] for i in reversed(row.tolist())] for row in nearest]

    def attach(
        self, queries: Sequence[ExampleRecord], examples: Sequence[VisionTextExample]
    ) -> list[VisionTextExample]:
        """`examples` (one per query) with their demonstrations filled in."""
        from roadscene.train.data import to_example

        return [
            replace(example, demonstrations=[to_example(r, with_answer=True) for r in chosen])
            for example, chosen in zip(examples, self.select(queries), strict=True)
        ]


def fewshot_predict_options(
    shots: int,
    shots_from: str | Path | None,
    *,
    selection: str = "random",
    seed: int = 0,
    task: str = "auto",
    data: str | Path | None = None,
    image_root: str | Path | None = None,
) -> dict[str, Any]:
    """Keyword arguments for `predict_file` implementing `--shots/--shots-from/--shot-selection`
    (empty for zero-shot). The shot file is read and checked here, before any model work."""
    from roadscene.io import read_records
    from roadscene.predict.runner import Predictor, detect_task
    from roadscene.train.data import load_records

    if selection not in SHOT_SELECTIONS:
        raise InputError(
            f"unknown --shot-selection '{selection}'; allowed: {', '.join(SHOT_SELECTIONS)}",
            field="shot_selection",
        )
    if shots < 0:
        raise InputError(f"--shots must be >= 0, got {shots}", field="shots")
    if shots == 0:
        if shots_from is not None:
            raise InputError("--shots-from needs --shots K (K > 0)", field="shots")
        return {}
    if shots_from is None:
        raise InputError(
            "--shots needs --shots-from TRAIN_FILE (e.g. bvpi_sft_train.jsonl)", field="shots_from"
        )
    shots_from = Path(shots_from)
    if task == "auto":
        if data is None:
            raise InputError("--task auto needs the data file to detect the task", field="task")
        task = detect_task(read_records(data))
    root = Path(image_root) if image_root is not None else shots_from.parent
    pool = load_records(task, shots_from, root, require_answer=True)

    def demonstrations_for(predictor: Predictor) -> Callable[[list, list], list]:
        if not getattr(predictor.family, "supports_demonstrations", False):
            raise InputError(
                f"--shots needs a family that takes in-context demonstrations (flamingo); "
                f"this model is '{predictor.family.name}'",
                field="shots",
            )
        embedder = (
            predictor.family.image_embedder(predictor.model, predictor.processor)
            if selection == "similar"
            else None
        )
        selector = ShotSelector(pool, shots, selection, seed=seed, embed_images=embedder)  # type: ignore[arg-type]
        return selector.attach

    return {"demonstrations_for": demonstrations_for}
