"""A test-only gate on the inference pool of a ``facenet serve`` process, so that the tests of
the queue (503), the timeout (504) and the load test's burst do not depend on the machine's speed.

:class:`PoolGate` listens on 127.0.0.1 and writes a ``sitecustomize`` (:data:`GATE_SITECUSTOMIZE`)
that the server loads through ``PYTHONPATH`` (as ``tests/test_batch_ray.py`` injects its kills):
the product code has no hook. In the server, every :meth:`WorkerPool.submit` reports to the gate:
``admitted`` or ``busy`` (the 503) when a request reaches the pool, ``run`` when a worker starts
the job, then ``done <outcome>`` when the job ends (``ok`` or the exception's name). The gate
answers ``run`` only when it lets the job go: a held job keeps its worker (and the queue behind
it) busy for as long as the test wants, whatever the speed of the machine; every other report is
answered at once. Each report names the pool's capacity (``--workers`` + ``--queue``), so a gate
can hold the pool of one server among several (the load session's burst).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

GATE_VARIABLE = "FACENET_TEST_POOL_GATE"
"""The environment variable naming the gate's ``host:port`` (the hook does nothing without it)."""

GATE_SITECUSTOMIZE = f"""
import os

_gate = os.environ.get({GATE_VARIABLE!r})
if _gate:
    import socket

    import toolchain.service.pool as _pool

    _host, _port = _gate.rsplit(":", 1)
    _submit = _pool.WorkerPool.submit

    def _tell(pool, event):
        # One connection per report; blocks until the gate answers (a gate gone lets it pass).
        try:
            with socket.create_connection((_host, int(_port))) as conn:
                conn.sendall(f"{{pool.capacity}} {{event}}\\n".encode())
                conn.recv(1)
        except OSError:
            pass

    def _gated_submit(self, fn):
        def job():
            _tell(self, "run")
            outcome = "ok"
            try:
                return fn()
            except BaseException as exc:
                outcome = type(exc).__name__
                raise
            finally:
                _tell(self, "done " + outcome)

        try:
            future = _submit(self, job)
        except _pool.Busy:
            _tell(self, "busy")
            raise
        _tell(self, "admitted")
        return future

    _pool.WorkerPool.submit = _gated_submit
"""
"""The ``sitecustomize`` of a gated server: reports every job of its pool to the gate."""

WAIT_S = 300.0
"""Longest wait for an event of the server (a hang guard: the test fails beyond it)."""


class Report(NamedTuple):
    """One report of a gated pool: its capacity and the event."""

    capacity: int
    event: str


class PoolGate:
    """The test's end of the hook: holds the jobs of the pools of capacity ``capacity`` (every
    pool if ``None``) until :meth:`release`, or until ``arrivals`` requests have reached such a
    pool (admitted or refused), whichever comes first.

    Use as a context manager; :meth:`install` gives the environment of a gated server.
    """

    def __init__(self, capacity: int | None = None, arrivals: int | None = None):
        self._capacity = capacity
        self._arrivals = arrivals
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._changed = threading.Condition()
        self._released = False
        self._held: list[socket.socket] = []
        self.reports: list[Report] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> PoolGate:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()
        self._listener.close()

    def install(self, folder: Path, pythonpath: str) -> dict[str, str]:
        """Write the hook into ``folder``; the environment of a server that loads it (the hook's
        folder before ``pythonpath``)."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "sitecustomize.py").write_text(GATE_SITECUSTOMIZE)
        host, port = self._listener.getsockname()[:2]
        return {GATE_VARIABLE: f"{host}:{port}",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(folder), pythonpath]))}

    def release(self) -> None:
        """Let the held jobs go, and every later one at once."""
        with self._changed:
            self._released = True
            held, self._held = self._held, []
            self._changed.notify_all()
        for conn in held:
            _answer(conn)

    def wait(self, done: Callable[[list[Report]], bool], what: str) -> list[Report]:
        """Wait until ``done(reports)`` holds; return the reports (fail after :data:`WAIT_S`)."""
        with self._changed:
            if not self._changed.wait_for(lambda: done(self.reports), WAIT_S):
                raise AssertionError(f"the server never reported {what}: {self.reports}")
            return list(self.reports)

    def count(self, event: str) -> int:
        """Reports of the gated pools whose event starts with ``event``."""
        with self._changed:
            return sum(r.event.startswith(event) for r in self.reports if self._gated(r))

    def _gated(self, report: Report) -> bool:
        return self._capacity is None or report.capacity == self._capacity

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn.makefile("r", encoding="utf-8") as lines:
            capacity, event = lines.readline().strip().split(" ", 1)
        report = Report(int(capacity), event)
        with self._changed:
            self.reports.append(report)
            arrived = sum(r.event in ("admitted", "busy") for r in self.reports if self._gated(r))
            if self._arrivals is not None and arrived >= self._arrivals:
                self._released = True
                held, self._held = self._held, []
            else:
                held = []
            hold = event == "run" and self._gated(report) and not self._released
            if hold:
                self._held.append(conn)
            self._changed.notify_all()
        for waiting in held:
            _answer(waiting)
        if not hold:
            _answer(conn)


def _answer(conn: socket.socket) -> None:
    """Tell a reporting job to go on, and hang up."""
    with contextlib.suppress(OSError):
        conn.sendall(b"g")
    conn.close()
