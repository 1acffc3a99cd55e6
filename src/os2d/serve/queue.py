"""A bounded queue in front of the compute threads of one worker, with deadlines and cancellation.

Requests wait in FIFO order for one of ``concurrency`` compute slots; when ``queue_size``
requests are waiting already, the next one is refused at once (503, the server is overloaded).
A request that has waited plus computed for ``timeout_s`` gets 503 and its work is cancelled: the
job receives a :class:`threading.Event` that the detection checks after each pyramid level.
A slot is released only when the compute thread is really done, so timed-out work never
oversubscribes the CPU.
"""
from __future__ import annotations

import asyncio
import collections
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Deque, Set

from os2d.serve.errors import UnavailableError


class Cancelled(Exception):
    """Raised inside a compute job whose request was given up (timeout, shutdown)."""


def raise_if_cancelled(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise Cancelled("the request was cancelled")


@dataclass(frozen=True)
class Timed:
    """A job's result and how long it waited and computed (seconds)."""

    value: Any
    queue_s: float
    compute_s: float


class ComputeQueue:
    """``await queue.run(job)`` runs ``job(cancel_event)`` on a compute thread (see the module docstring)."""

    def __init__(self, *, concurrency: int, queue_size: int, timeout_s: float) -> None:
        self.concurrency, self.queue_size, self.timeout_s = concurrency, queue_size, timeout_s
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="os2d-compute")
        self._free = concurrency
        self._waiters: Deque[asyncio.Future] = collections.deque()
        self._cancels: Set[threading.Event] = set()
        self._closing = False

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def running(self) -> int:
        return self.concurrency - self._free

    async def run(self, job: Callable[[threading.Event], Any]) -> Timed:
        if self._closing:
            raise UnavailableError("the server is shutting down")
        if len(self._waiters) >= self.queue_size:
            raise UnavailableError(f"the server is overloaded ({len(self._waiters)} requests are queued); retry later")
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        await self._acquire(loop, self.timeout_s)
        queued = time.perf_counter() - start
        cancel = threading.Event()
        self._cancels.add(cancel)
        future = loop.run_in_executor(self._pool, job, cancel)
        future.add_done_callback(lambda done: self._job_done(done, cancel))
        try:
            value = await asyncio.wait_for(asyncio.shield(future), max(0.0, self.timeout_s - queued))
        except asyncio.TimeoutError:
            cancel.set()
            raise UnavailableError(f"the request took longer than the request timeout ({self.timeout_s:g} s)") \
                from None
        except asyncio.CancelledError:  # the client went away or the server stops
            cancel.set()
            raise
        return Timed(value=value, queue_s=queued, compute_s=time.perf_counter() - start - queued)

    async def _acquire(self, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        slot = loop.create_future()
        self._waiters.append(slot)
        try:
            await asyncio.wait_for(slot, timeout_s)
        except (asyncio.TimeoutError, asyncio.CancelledError) as err:
            if slot.done() and not slot.cancelled() and slot.exception() is None:
                self._release()  # the slot came just as we gave up: pass it on
            elif slot in self._waiters:
                self._waiters.remove(slot)
            if isinstance(err, asyncio.TimeoutError):
                raise UnavailableError(f"the request waited longer than the request timeout "
                                       f"({timeout_s:g} s) in the queue") from None
            raise

    def _release(self) -> None:
        while self._waiters:
            slot = self._waiters.popleft()
            if not slot.done():
                slot.set_result(None)
                return
        self._free += 1

    def _job_done(self, future: asyncio.Future, cancel: threading.Event) -> None:
        self._cancels.discard(cancel)
        if not future.cancelled():
            future.exception()  # retrieved: a cancelled job's error is not logged as "never retrieved"
        self._release()

    def close(self) -> None:
        """Refuse new work, answer waiting requests with 503, cancel running jobs, stop the threads."""
        self._closing = True
        while self._waiters:
            slot = self._waiters.popleft()
            if not slot.done():
                slot.set_exception(UnavailableError("the server is shutting down"))
        for cancel in list(self._cancels):
            cancel.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
