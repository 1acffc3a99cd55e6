"""The bounded compute queue: FIFO slots, 503 when full, deadlines that cancel the work, shutdown."""
from __future__ import annotations

import asyncio
import threading

import pytest

from os2d.serve.errors import UnavailableError
from os2d.serve.queue import Cancelled, ComputeQueue, raise_if_cancelled


def run(coro):
    return asyncio.run(coro)


def blocking_job(release: threading.Event, log: list, tag):
    def job(cancel: threading.Event):
        while not release.wait(0.01):
            raise_if_cancelled(cancel)
        log.append(tag)
        return tag
    return job


def test_jobs_run_in_arrival_order_and_report_queue_time():
    async def main():
        queue = ComputeQueue(concurrency=1, queue_size=10, timeout_s=30)
        release, log = threading.Event(), []
        tasks = [asyncio.create_task(queue.run(blocking_job(release, log, i))) for i in range(5)]
        await asyncio.sleep(0.05)
        assert queue.running == 1 and queue.waiting == 4
        release.set()
        results = await asyncio.gather(*tasks)
        queue.close()
        return log, results

    log, results = run(main())
    assert log == [0, 1, 2, 3, 4] and [r.value for r in results] == [0, 1, 2, 3, 4]
    assert results[-1].queue_s >= results[0].queue_s


def test_full_queue_answers_503_at_once():
    async def main():
        queue = ComputeQueue(concurrency=1, queue_size=2, timeout_s=30)
        release, log = threading.Event(), []
        tasks = [asyncio.create_task(queue.run(blocking_job(release, log, i))) for i in range(3)]
        await asyncio.sleep(0.05)
        with pytest.raises(UnavailableError, match="overloaded"):
            await queue.run(blocking_job(release, log, "late"))
        release.set()
        await asyncio.gather(*tasks)
        queue.close()
        return log

    assert run(main()) == [0, 1, 2]


def test_timeout_cancels_the_running_job_and_frees_its_slot():
    async def main():
        queue = ComputeQueue(concurrency=1, queue_size=5, timeout_s=0.2)
        never, log = threading.Event(), []
        with pytest.raises(UnavailableError, match="timeout"):
            await queue.run(blocking_job(never, log, "stuck"))
        done = threading.Event()
        done.set()
        quick = await queue.run(blocking_job(done, log, "next"))  # the cancelled job let go of the slot
        queue.close()
        return log, quick.value

    assert run(main()) == (["next"], "next")


def test_waiting_past_the_deadline_is_503_and_leaves_the_queue():
    async def main():
        queue = ComputeQueue(concurrency=1, queue_size=5, timeout_s=0.3)
        release, log = threading.Event(), []
        stubborn = lambda cancel: release.wait(10)  # noqa: E731 -- ignores cancellation, keeps the slot
        first = asyncio.create_task(queue.run(stubborn))
        await asyncio.sleep(0.05)
        with pytest.raises(UnavailableError, match="in the queue"):
            await queue.run(blocking_job(release, log, "second"))
        assert queue.waiting == 0
        with pytest.raises(UnavailableError, match="took longer"):
            await first
        release.set()
        queue.close()

    run(main())


def test_close_refuses_waiting_and_new_requests_and_cancels_running_ones():
    async def main():
        queue = ComputeQueue(concurrency=1, queue_size=5, timeout_s=30)
        never, log = threading.Event(), []
        running = asyncio.create_task(queue.run(blocking_job(never, log, "running")))
        waiting = asyncio.create_task(queue.run(blocking_job(never, log, "waiting")))
        await asyncio.sleep(0.05)
        await asyncio.get_running_loop().run_in_executor(None, queue.close)
        with pytest.raises(UnavailableError, match="shutting down"):
            await waiting
        with pytest.raises(Cancelled):
            await running
        with pytest.raises(UnavailableError, match="shutting down"):
            await queue.run(blocking_job(never, log, "new"))
        return log

    assert run(main()) == []
