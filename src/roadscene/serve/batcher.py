"""Micro-batching: requests that arrive close together share one model call.

Each request puts one job on a queue and awaits its future. One worker takes the first waiting
job, gathers more for at most `max_wait_s` (or until `max_batch_size`), and runs the batch on a
single model thread, so the event loop keeps accepting requests while the model works. Under load
the queue is never empty, so batches fill without waiting at all.

One bad job never fails its batch-mates: when a batch raises, each of its jobs is run again on its
own and only the one that still fails gets the error. A job whose request gave up (timed out,
client gone) is dropped before its batch runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class QueueFull(Exception):
    """More jobs are waiting than the queue takes: the caller should answer 503."""


class BatcherStopped(Exception):
    """The server is shutting down."""


class BatchObserver(Protocol):
    """What the batcher reports (the server's metrics implement it; the queue depth is read
    from `MicroBatcher.depth` when metrics are asked for)."""

    def batch_done(self, size: int, seconds: float) -> None: ...
    def batch_retried(self, size: int) -> None: ...


@dataclass(frozen=True)
class BatchResult(Generic[R]):
    """One job's answer and how it was made: the size of its batch, the time it waited in the
    queue and the time of the model call."""

    value: R
    batch_size: int
    queued_s: float
    model_s: float


@dataclass
class _Job:
    payload: Any
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class MicroBatcher(Generic[T, R]):
    """`await batcher.submit(payload)` -> `BatchResult`; `run_batch(payloads)` answers a whole
    batch, in order, on one worker thread."""

    def __init__(
        self,
        run_batch: Callable[[Sequence[T]], Sequence[R]],
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_queue: int,
        observer: BatchObserver | None = None,
    ) -> None:
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.observer = observer
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def depth(self) -> int:
        """Jobs waiting for a batch."""
        return self._queue.qsize() if self._queue is not None else 0

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        # one thread: the model answers one batch at a time
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="roadscene-model")
        self._task = asyncio.create_task(self._work(), name="roadscene-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        while self._queue is not None and not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(BatcherStopped("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

    async def submit(self, payload: T) -> BatchResult[R]:
        """Queue one job and wait for its answer (cancelling the wait drops the job)."""
        if self._queue is None or self._task is None or self._task.done():
            raise BatcherStopped("the model worker is not running")
        if self._queue.qsize() >= self.max_queue:
            raise QueueFull(f"{self._queue.qsize()} frames are waiting for the model")
        job = _Job(payload, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(job)
        return await job.future

    async def _gather(self) -> list[_Job]:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [job for job in await self._gather() if not job.future.done()]
            if not batch:
                continue
            started = time.perf_counter()
            try:
                outcomes = await loop.run_in_executor(
                    self._executor, self._run_isolated, [job.payload for job in batch]
                )
            except Exception as error:  # the worker itself must survive anything
                outcomes = [error] * len(batch)
            model_s = time.perf_counter() - started
            if self.observer is not None:
                self.observer.batch_done(len(batch), model_s)
            for job, outcome in zip(batch, outcomes, strict=True):
                if job.future.done():  # its request gave up meanwhile
                    continue
                if isinstance(outcome, BaseException):
                    job.future.set_exception(outcome)
                else:
                    queued_s = started - job.enqueued
                    job.future.set_result(BatchResult(outcome, len(batch), queued_s, model_s))

    def _run_isolated(self, payloads: list[T]) -> list[R | BaseException]:
        """Answers for the batch; if it fails, each job alone, so only a bad job gets an error."""
        try:
            answers = list(self.run_batch(payloads))
            if len(answers) != len(payloads):
                raise RuntimeError(f"{len(answers)} answers for a batch of {len(payloads)}")
            return answers  # type: ignore[return-value]
        except Exception as batch_error:
            if len(payloads) == 1:
                return [batch_error]
        if self.observer is not None:
            self.observer.batch_retried(len(payloads))
        outcomes: list[R | BaseException] = []
        for payload in payloads:
            try:
                [answer] = self.run_batch([payload])
                outcomes.append(answer)
            except Exception as error:
                outcomes.append(error)
        return outcomes
