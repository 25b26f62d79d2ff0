"""A real ``facenet serve`` on loopback for the load session (and the service tests): started
on a free port, stopped afterwards, and called with the standard library's HTTP client.

:func:`launch_serve` runs any ``facenet serve`` command and waits for the port uvicorn reports;
:func:`serving` runs this checkout's server on a gallery and yields a :class:`Server`, whose
:meth:`Server.timed` records one request as an :class:`Outcome`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 120.0
"""Longest wait for a server to load its models and bind."""

REQUEST_TIMEOUT_S = 120.0
"""Longest wait for one HTTP answer (a request queued behind 15 others on 2 cores)."""

LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")
"""The line in which uvicorn reports the port it bound."""


@dataclass(frozen=True)
class Outcome:
    """One request: its kind, HTTP status (0: no answer), latency, error code and
    ``Retry-After`` if any."""

    kind: str
    status: int
    seconds: float
    error: str | None = None
    retry_after: str | None = None


def _multipart(fields: Sequence[tuple[str, Path]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, path in fields:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            .encode() + path.read_bytes() + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@dataclass
class Server:
    """A running ``facenet serve`` on loopback."""

    port: int
    process: subprocess.Popen[str]
    log: list[str]

    def call(self, method: str, path: str, files: Sequence[tuple[str, Path]] = ()
             ) -> tuple[int, dict[str, object], str | None]:
        """Send one request; return the status, the JSON body (``{}`` if none) and the
        ``Retry-After`` header."""
        body, ctype = _multipart(files) if files else (None, "")
        conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=REQUEST_TIMEOUT_S)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": ctype} if ctype else {})
            response = conn.getresponse()
            raw = response.read()
            retry_after = response.getheader("Retry-After")
        finally:
            conn.close()
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            payload = {}
        return response.status, payload if isinstance(payload, dict) else {}, retry_after

    def timed(self, kind: str, path: str, files: Sequence[tuple[str, Path]]) -> Outcome:
        """One POST, timed; a transport failure becomes status 0 with its exception's name."""
        start = time.perf_counter()
        try:
            status, payload, retry_after = self.call("POST", path, files)
        except (OSError, http.client.HTTPException) as exc:
            return Outcome(kind, 0, time.perf_counter() - start, type(exc).__name__)
        seconds = time.perf_counter() - start
        error = payload.get("error")
        code = str(error.get("code", status)) if isinstance(error, dict) else None
        return Outcome(kind, status, seconds, code if status >= 300 else None, retry_after)

    def people(self) -> dict[str, int]:
        """Name -> stored embeddings, from ``GET /v1/people``."""
        status, payload, _ = self.call("GET", "/v1/people")
        if status != 200:
            raise RuntimeError(f"GET /v1/people answered {status}: {payload}")
        listed = payload.get("people", [])
        assert isinstance(listed, list)
        return {str(p["name"]): int(p["embeddings"]) for p in listed}


@dataclass
class Launched:
    """A ``facenet serve`` process that reported the port it listens on, and its output."""

    port: int
    process: subprocess.Popen[str]
    log: list[str]


@contextlib.contextmanager
def launch_serve(command: Sequence[str], *, cwd: Path, env: Mapping[str, str],
                 start_timeout: float = START_TIMEOUT_S) -> Iterator[Launched]:
    """Run ``command`` (a ``facenet serve`` on 127.0.0.1, port 0 for any free one) and yield it
    once uvicorn reports its port; SIGTERM it afterwards unless it is gone (SIGKILL if it has not
    stopped 30 s later). Its output is collected into :attr:`Launched.log` as it comes.

    Raises:
        RuntimeError: it ended, or reported no port within ``start_timeout`` seconds (the message
            ends with its last lines of output).
    """
    process = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, cwd=cwd, env=dict(env))
    lines: list[str] = []
    found = threading.Event()
    port: list[int] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if not found.is_set() and (match := LISTENING.search(line)):
                port.append(int(match.group(1)))
                found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + start_timeout
    while not found.wait(0.2):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait(10)
            reader.join(5)
            raise RuntimeError("facenet serve did not start: " + "".join(lines[-20:]))
    try:
        yield Launched(port[0], process, lines)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        reader.join(5)


def checkout_env() -> dict[str, str]:
    """This process's environment with the folder that holds the ``toolchain`` package first on
    ``PYTHONPATH``, so the servers and CLI runs started here run this code; the inherited
    ``PYTHONPATH`` follows it (where a test puts the hooks its servers load)."""
    inherited = os.environ.get("PYTHONPATH", "")
    checkout = str(Path(__file__).resolve().parents[3])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [checkout, inherited]))}


@contextlib.contextmanager
def serving(python: Path, artifacts: Path, gallery: Path, *options: str) -> Iterator[Server]:
    """Start ``facenet serve`` on 127.0.0.1 (port 0) with ``gallery``; stop it afterwards."""
    command = [str(python), "-m", "toolchain", "serve", "--artifacts", str(artifacts),
               "--gallery", str(gallery), "--host", LOOPBACK, "--port", "0", *options]
    env = checkout_env()
    with launch_serve(command, cwd=gallery.parent, env=env) as launched:
        yield Server(launched.port, launched.process, launched.log)
