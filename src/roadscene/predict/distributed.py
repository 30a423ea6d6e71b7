"""`roadscene predict --engine ray`: the same prediction file, answered by a pool of Ray workers.

The driver (this process) does what `predict_file` does before and after the model: it checks
the data file, the output so far and the images (`plan_prediction`), and it writes every line
(`PredictionWriter`). The rows still to do go to Ray Data as one block per batch; a fixed pool
of actors (`PredictWorker`) each loads the model once and answers its blocks with the same
`RowPredictor` the local engine runs (batched, grammar-constrained), so a line's bytes do not
depend on the engine. Lines are appended as blocks finish, in any order, and the finished file
is put in data-file order: the same bytes `predict` writes locally.

Faults: a worker that dies (out of memory, a lost node) is restarted by Ray and its block is
redone; the writer never writes a data line twice. A Python error in a worker stops the run
(retrying a deterministic error would not help); rerunning the command resumes from the lines
already written, like a local run.

Ray is imported here only, so nothing else in roadscene needs it (`roadscene[distributed]`).
"""

from __future__ import annotations

import os
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from roadscene.errors import InputError, option_error
from roadscene.predict.predictor import ModelCard, Predictor
from roadscene.predict.runner import (
    PredictionJob,
    PredictionWriter,
    PredictSummary,
    RowPredictor,
    plan_prediction,
)
from roadscene.predict.settings import PredictSettings


class RaySettings(BaseModel):
    """Where the Ray workers run and what each one holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str | None = Field(
        None,
        description="Ray cluster: auto (started with `ray start`), ray://HOST:10001 (Ray "
        "Client), local (a new private instance); default: RAY_ADDRESS, else a running local "
        "cluster, else a new one.",
    )
    num_workers: int = Field(1, ge=1, description="Workers (actors), each with its own model.")
    gpus_per_worker: float = Field(
        0, ge=0, description="GPUs per worker (0: CPU; 0.5 puts two workers on one GPU)."
    )
    cpus_per_worker: int = Field(
        1, ge=1, description="CPUs reserved per worker; also its torch thread count."
    )

    @classmethod
    def from_options(cls, **options: object) -> RaySettings:
        """Settings from command-line options; a bad value is an InputError naming it."""
        try:
            return cls(**options)  # type: ignore[arg-type]
        except ValidationError as err:
            raise option_error(err, whole="options") from None


@dataclass(frozen=True)
class KillWorkerOnce:
    """Test hook: the worker that gets data line `line` exits at once (as the kernel's OOM
    killer would end it), the first time only (`marker` is created then)."""

    line: int
    marker: Path


class PredictWorker:
    """One Ray actor: loads the model once, then answers blocks of rows with `RowPredictor`."""

    def __init__(
        self,
        card: ModelCard,
        settings: PredictSettings,
        device: str,
        threads: int,
        kill_once: KillWorkerOnce | None = None,
    ) -> None:
        import torch

        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        torch.set_num_threads(threads)
        self.answer = RowPredictor(Predictor.load(card, device=device), settings)
        self.kill_once = kill_once

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        records = [pickle.loads(blob) for blob in batch["record"]]
        lines = [record.line for record in records]
        hook = self.kill_once
        if hook is not None and hook.line in lines and not hook.marker.exists():
            hook.marker.touch()
            os._exit(1)
        return {"line": np.array(lines, dtype=np.int64), "text": np.array(self.answer(records))}


def predict_file_ray(
    data: str | Path,
    out: str | Path,
    card: ModelCard,
    settings: PredictSettings | None = None,
    ray_settings: RaySettings | None = None,
    *,
    progress: bool = True,
    kill_worker_once: KillWorkerOnce | None = None,
) -> PredictSummary:
    """`predict_file` on Ray workers: the same output file, resumable, in data-file order.

    Connects to the cluster `ray_settings.address` names unless Ray is already initialised in
    this process (and then leaves it running); the data file, the images and the model must be
    at the same paths on every node.
    """
    ray_settings = ray_settings or RaySettings()
    try:
        import ray
    except ImportError:
        raise InputError(
            "--engine ray needs Ray: pip install 'roadscene[distributed]'", field="engine"
        ) from None
    job = plan_prediction(data, out, card, settings)
    if not job.todo:
        return job.summary
    started = not ray.is_initialized()
    if started:
        ray.init(address=ray_settings.address, log_to_driver=True)
    try:
        _stream(ray, job, ray_settings, progress=progress, kill_worker_once=kill_worker_once)
    finally:
        if started:
            ray.shutdown()
    return job.summary


def _check_resources(ray: Any, ray_settings: RaySettings) -> None:
    """Refuse a pool the cluster cannot hold: Ray would wait for it forever."""
    available = ray.cluster_resources()
    workers = ray_settings.num_workers
    for resource, per_worker, option in (
        ("CPU", ray_settings.cpus_per_worker, "--cpus-per-worker"),
        ("GPU", ray_settings.gpus_per_worker, "--gpus-per-worker"),
    ):
        have = available.get(resource, 0)
        if per_worker and workers * per_worker > have:
            raise InputError(
                f"{workers} workers x {per_worker} {resource} ({option}) need "
                f"{workers * per_worker:g} {resource}s; the Ray cluster has {have:g}: lower "
                "--num-workers or add nodes"
            )


def _stream(
    ray: Any,
    job: PredictionJob,
    ray_settings: RaySettings,
    *,
    progress: bool,
    kill_worker_once: KillWorkerOnce | None,
) -> None:
    from ray.data import ActorPoolStrategy, DataContext
    from ray.exceptions import RayTaskError
    from tqdm.auto import tqdm

    _check_resources(ray, ray_settings)
    context = DataContext.get_current()
    context.enable_progress_bars = False  # our own bar counts rows, as the local engine does
    context.print_on_execution_start = False
    batch_size = job.settings.batch_size
    # One block per batch: a block is redone whole after a fault, and its rows reach the
    # file when it finishes, so a crash costs at most a batch per worker. The rows are built
    # here (no read task): a read task could wait forever for a CPU the workers hold.
    rows = [{"record": pickle.dumps(r)} for r in job.todo]
    blocks = -(-len(rows) // batch_size)
    gpus = ray_settings.gpus_per_worker
    dataset = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
        PredictWorker,
        fn_constructor_kwargs={
            "card": job.card,
            "settings": job.settings,
            "device": "cuda" if gpus else "cpu",
            "threads": ray_settings.cpus_per_worker,
            "kill_once": kill_worker_once,
        },
        batch_size=batch_size,
        compute=ActorPoolStrategy(size=ray_settings.num_workers),
        num_cpus=ray_settings.cpus_per_worker,
        num_gpus=gpus or None,
    )
    start = time.perf_counter()
    bar = tqdm(total=len(rows), unit="item", disable=not progress, desc="predict (ray)")
    try:
        with PredictionWriter(job) as writer:
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                writer.write(zip(batch["line"].tolist(), batch["text"].tolist(), strict=True))
                bar.update(len(batch["line"]))
    except RayTaskError as err:
        # An InputError in a worker (e.g. the model folder missing on that node) is reported
        # as the one line it is, not as a Ray traceback.
        cause = getattr(err, "cause", None)
        if isinstance(cause, InputError):
            raise cause from None
        raise
    finally:
        bar.close()
    job.summary.seconds = time.perf_counter() - start
