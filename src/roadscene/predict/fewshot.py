"""Choosing in-context demonstrations (few-shot) from a training file.

- `random`: K rows drawn with a generator seeded by (seed, query image), so a resumed or
  repeated prediction picks the same demonstrations for the same query.
- `similar` (RICES, as in OpenFlamingo's evaluation): the K rows whose images are closest to the
  query image by cosine similarity of the model's own image embedding (`family.image_embedder`,
  for Flamingo its frozen CLIP tower); ordered least to most similar, so the closest sits next
  to the query.
  Only the query *image* is used: its annotation or caption is what we predict, so choosing by it
  would leak the answer.

A demonstration never uses the query's own image.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from roadscene.data.examples import VisionTextExample, to_example
from roadscene.data.images import OnBadImage, check_images, open_image
from roadscene.errors import InputError

if TYPE_CHECKING:
    import torch

    from roadscene.data.records import ExampleRecord
    from roadscene.models.base import ImageEmbedder
    from roadscene.predict.predictor import Predictor

ShotSelection = Literal["random", "similar"]
SHOT_SELECTIONS: tuple[str, ...] = ("random", "similar")


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
        return [
            replace(example, demonstrations=[to_example(r, with_answer=True) for r in chosen])
            for example, chosen in zip(examples, self.select(queries), strict=True)
        ]


def shot_selector(
    predictor: Predictor,
    pool_file: Path,
    *,
    task: str,
    image_root: Path,
    shots: int,
    selection: ShotSelection,
    seed: int,
    on_bad_image: OnBadImage = "error",
) -> ShotSelector:
    """The selector `predict_file` uses for `--shots K --shots-from FILE`: the shot file is read
    (answers required), its images opened once (a bad one stops the run, or with
    `on_bad_image="skip"` is left out of the pool) and the family is checked to take
    demonstrations."""
    from roadscene.data.records import load_records

    family = predictor.family
    if not family.supports_demonstrations:
        raise InputError(
            f"--shots needs a family that takes in-context demonstrations; this model is "
            f"'{family.name}'",
            field="shots",
        )
    embedder = None
    if selection == "similar":
        embedder = family.image_embedder(predictor.model, predictor.processor)
        if embedder is None:
            raise InputError(
                f"--shot-selection similar needs an image embedding, which the {family.name} "
                "family does not offer; use random",
                field="shot_selection",
            )
    pool = load_records(task, pool_file, image_root, require_answer=True)
    clip_row = next((record for record in pool if record.clip is not None), None)
    if clip_row is not None:
        raise InputError(
            "demonstrations are still images; this shot file names a clip",
            path=pool_file,
            line=clip_row.line,
        )
    pool, _ = check_images(pool, on_bad_image)
    return ShotSelector(pool, shots, selection, seed=seed, embed_images=embedder)
