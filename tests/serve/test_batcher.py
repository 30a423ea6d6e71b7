"""Micro-batching on its own (a plain function as the model): concurrent jobs share batches, one
bad job never fails its batch-mates, a job whose caller gave up is dropped, the queue is bounded."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from roadscene.serve.batcher import MicroBatcher, QueueFull


class Recorder:
    """A 'model' answering `x -> x * 10`, failing on negative inputs, recording its batches."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.seconds = seconds
        self.threads: set[str] = set()

    def __call__(self, payloads):
        self.batches.append(list(payloads))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.seconds)
        if any(p < 0 for p in payloads):
            raise ValueError(f"negative input in {list(payloads)}")
        return [p * 10 for p in payloads]


def _run(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_jobs_share_batches() -> None:
    model = Recorder(seconds=0.05)

    async def scenario():
        batcher = MicroBatcher(model, max_batch_size=4, max_wait_s=0.05, max_queue=100)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(i) for i in range(10)))
        finally:
            await batcher.stop()

    results = _run(scenario())
    assert [r.value for r in results] == [i * 10 for i in range(10)]
    assert sorted(p for batch in model.batches for p in batch) == list(range(10))
    assert max(len(b) for b in model.batches) == 4  # gathered up to the cap
    assert len(model.batches) == 3  # 4 + 4 + 2: never more batches than needed
    assert all(r.batch_size == len(b) for b in model.batches for r in results if r.value // 10 in b)
    assert model.threads == {"roadscene-model_0"}  # one model thread, off the event loop


def test_a_lone_job_waits_at_most_max_wait() -> None:
    model = Recorder()

    async def scenario():
        batcher = MicroBatcher(model, max_batch_size=8, max_wait_s=0.02, max_queue=10)
        await batcher.start()
        try:
            start = time.perf_counter()
            result = await batcher.submit(3)
            return result, time.perf_counter() - start
        finally:
            await batcher.stop()

    result, elapsed = _run(scenario())
    assert result.value == 30 and result.batch_size == 1
    assert 0.015 < result.queued_s < 1.0 and elapsed < 2.0


def test_one_bad_job_never_fails_its_batch_mates() -> None:
    model = Recorder(seconds=0.02)

    class Observer:
        retried: list[int] = []

        def queue_depth(self, depth: int) -> None: ...
        def batch_done(self, size: int, seconds: float) -> None: ...
        def batch_retried(self, size: int) -> None:
            self.retried.append(size)

    observer = Observer()

    async def scenario():
        batcher = MicroBatcher(
            model, max_batch_size=4, max_wait_s=0.05, max_queue=10, observer=observer
        )
        await batcher.start()
        try:
            return await asyncio.gather(
                *(batcher.submit(p) for p in (1, -2, 3, 4)), return_exceptions=True
            )
        finally:
            await batcher.stop()

    one, bad, three, four = _run(scenario())
    assert isinstance(bad, ValueError) and "-2" in str(bad)
    assert (one.value, three.value, four.value) == (10, 30, 40)
    assert model.batches[0] == [1, -2, 3, 4]  # tried together first, then one by one
    assert model.batches[1:] == [[1], [-2], [3], [4]]
    assert observer.retried == [4]


def test_a_job_whose_caller_gave_up_is_dropped() -> None:
    model = Recorder(seconds=0.5)

    async def scenario():
        batcher = MicroBatcher(model, max_batch_size=1, max_wait_s=0.0, max_queue=10)
        await batcher.start()
        try:
            first = asyncio.create_task(batcher.submit(1))  # occupies the model for 0.5 s
            await asyncio.sleep(0.05)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(batcher.submit(2), 0.05)  # gives up while queued
            return await first, await batcher.submit(3)
        finally:
            await batcher.stop()

    first, third = _run(scenario())
    assert (first.value, third.value) == (10, 30)
    assert model.batches == [[1], [3]]  # 2 was never run


def test_the_queue_is_bounded() -> None:
    model = Recorder(seconds=0.5)

    async def scenario():
        batcher = MicroBatcher(model, max_batch_size=1, max_wait_s=0.0, max_queue=2)
        await batcher.start()
        try:
            running = asyncio.create_task(batcher.submit(0))
            await asyncio.sleep(0.1)  # 0 is in the model; the queue is empty
            waiting = [asyncio.create_task(batcher.submit(i)) for i in (1, 2)]
            await asyncio.sleep(0)
            with pytest.raises(QueueFull, match="2 frames are waiting"):
                await batcher.submit(3)
            return [r.value for r in await asyncio.gather(running, *waiting)]
        finally:
            await batcher.stop()

    assert _run(scenario()) == [0, 10, 20]
