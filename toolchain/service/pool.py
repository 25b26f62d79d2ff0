"""A fixed pool of inference threads in front of a bounded queue.

Inference (decoding, MTCNN, FaceNet) runs on ``workers`` threads; ONNX Runtime releases the GIL,
so they compute in parallel while the event loop keeps answering. At most ``workers + queue``
requests hold a slot (running or waiting); one more is refused at once with :class:`Busy`
(``503`` with ``Retry-After``) instead of queueing without bound. A slot is released when its job
has really finished, not when its request gave up waiting, so a timed-out job still counts until
its thread is free.

:class:`Ticket` is how a job that writes and the request that waits for it agree on a timeout:
either the request cancels first and the job writes nothing, or the job has begun its write and
the request waits for it to end; an answer of ``504`` therefore always means "nothing written".
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class Busy(Exception):
    """Every worker is busy and the queue is full."""

    def __init__(self, retry_after: int):
        super().__init__(f"the server is busy: every inference worker is in use and the queue "
                         f"is full; retry in {retry_after} s")
        self.retry_after = retry_after


class TimedOut(Exception):
    """A job did not finish within the request timeout (and wrote nothing)."""


class Ticket:
    """The agreement between a job that may write and the request that waits for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._committing = False

    @property
    def cancelled(self) -> bool:
        """The request gave up; the job should stop and must not write."""
        with self._lock:
            return self._cancelled

    def begin_commit(self) -> bool:
        """Called by the job before it writes: ``False`` if the request has given up."""
        with self._lock:
            if self._cancelled:
                return False
            self._committing = True
            return True

    def cancel(self) -> bool:
        """Called by the request on timeout: ``False`` if the job's write has begun."""
        with self._lock:
            if self._committing:
                return False
            self._cancelled = True
            return True


def _consume(done: asyncio.Future[Any]) -> None:
    """Mark the outcome of a job nobody waits for any more as seen (no "never retrieved" log)."""
    if not done.cancelled():
        done.exception()


class WorkerPool:
    """``workers`` threads and ``queue`` waiting places; see the module docstring."""

    def __init__(self, workers: int, queue: int, name: str = "facenet-worker"):
        self.workers = workers
        self.capacity = workers + queue
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._held = 0
        self._mean_s = 0.5

    @property
    def held(self) -> int:
        """Slots in use: jobs running or waiting."""
        with self._lock:
            return self._held

    def retry_after(self) -> int:
        """Seconds after which a slot is likely free: the queue ahead at the mean job time."""
        with self._lock:
            return max(1, math.ceil(self._held * self._mean_s / self.workers))

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn`` on a worker.

        Raises:
            Busy: every slot is held.
        """
        with self._lock:
            if self._held >= self.capacity:
                busy = True
            else:
                busy = False
                self._held += 1
        if busy:
            raise Busy(self.retry_after())
        start = time.perf_counter()

        def release(_: Future[T]) -> None:
            elapsed = time.perf_counter() - start
            with self._lock:
                self._held -= 1
                self._mean_s = 0.8 * self._mean_s + 0.2 * elapsed

        try:
            future = self._executor.submit(fn)
        except BaseException:
            with self._lock:
                self._held -= 1
            raise
        future.add_done_callback(release)
        return future

    async def run(self, fn: Callable[[Ticket], T], timeout_s: float) -> T:
        """Run ``fn(ticket)`` on a worker and wait at most ``timeout_s`` for its result.

        Raises:
            Busy: every slot is held.
            TimedOut: the job did not finish in time and was cancelled before writing.
        """
        ticket = Ticket()
        future = self.submit(lambda: fn(ticket))
        waiting = asyncio.wrap_future(future)
        waiting.add_done_callback(_consume)
        try:
            return await asyncio.wait_for(asyncio.shield(waiting), timeout_s)
        except asyncio.TimeoutError:
            if ticket.cancel():
                future.cancel()
                raise TimedOut(f"the request took longer than {timeout_s:g} s; nothing was "
                               "written") from None
            return await waiting

    def shutdown(self) -> None:
        """Stop taking jobs; wait for the running ones."""
        self._executor.shutdown(wait=True, cancel_futures=True)
