"""A command in a buildah working container, started and stopped like a service, and HTTP to it.

``buildah run`` with chroot isolation shares the host's network and, on a signal, kills its child
outright; :func:`serving` therefore binds the server to 127.0.0.1 on a free port and stops it with
SIGTERM sent to the container's own process (a graceful shutdown). Standard library only.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolchain.deploy import host
from toolchain.deploy.host import DeployError

LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")
START_TIMEOUT_S = 300.0
"""Longest wait for the server to load its models and bind (a loaded 2-core machine)."""
STOP_TIMEOUT_S = 60.0
DATA = "/data"
"""The image's volume: the gallery lives there."""


@dataclass(frozen=True)
class Storage:
    """A private container store (vfs: no kernel overlay support needed) under the cache."""

    root: Path

    def options(self) -> list[str]:
        """Global options of buildah and podman that select this store."""
        return ["--root", str(self.root / "storage"), "--runroot", str(self.root / "run"),
                "--storage-driver", "vfs"]

    def buildah(self, *args: str | Path) -> list[str]:
        """A buildah command line on this store."""
        return ["buildah", *self.options(), *(str(a) for a in args)]

    def podman(self, *args: str | Path) -> list[str]:
        """A podman command line on this store."""
        return ["podman", *self.options(), *(str(a) for a in args)]

    def has_image(self, name: str) -> bool:
        """Whether the store holds an image of that name."""
        done = subprocess.run(self.podman("image", "exists", name), capture_output=True,
                              check=False)
        return done.returncode == 0

    def image_size(self, name: str) -> int:
        """Bytes of an image (its layers together, as `docker images` shows)."""
        return int(host.run(self.podman("image", "inspect", "--format", "{{.Size}}", name)))


def _opener() -> urllib.request.OpenerDirector:
    """HTTP without proxies (the server is on 127.0.0.1)."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def call(url: str, method: str = "GET", files: Sequence[tuple[str, Path]] = (),
         timeout: float = 300.0) -> tuple[int, Any]:
    """One HTTP request (``files``: multipart ``(field, photo)`` parts); ``(status, JSON)``."""
    data, headers = None, {}
    if files:
        boundary = uuid.uuid4().hex
        parts: list[bytes] = []
        for name, path in files:
            parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                      f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                      .encode(), path.read_bytes(), b"\r\n"]
        data = b"".join([*parts, f"--{boundary}--\r\n".encode()])
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with _opener().open(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def status(url: str, timeout: float = 60.0) -> int:
    """The HTTP status of a GET (a page or an asset: no JSON expected)."""
    try:
        with _opener().open(url, timeout=timeout) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def _children() -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            found.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    return found


def container_process(runner: int) -> int | None:
    """The ``CMD`` process ``buildah run`` (pid ``runner``) started: its deepest descendant
    whose root directory is the container's (``buildah run``'s own helpers stay at ``/``)."""
    children, best, depth = _children(), None, -1
    stack = [(runner, 0)]
    while stack:
        pid, level = stack.pop()
        for child in children.get(pid, []):
            try:
                inside = os.readlink(f"/proc/{child}/root") != "/"
            except OSError:
                continue
            if inside and level > depth:
                best, depth = child, level
            stack.append((child, level + 1))
    return best


@dataclass
class Served:
    """A running server: its address, the seconds from ``buildah run`` to ``/readyz``
    answering, that answer, and the output so far."""

    url: str
    seconds_to_ready: float
    ready: Any
    log: list[str] = field(default_factory=list)


@contextmanager
def working_container(storage: Storage, image: str) -> Iterator[str]:
    """A buildah working container of ``image`` (its name), removed afterwards."""
    name = f"facenet-check-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    host.run(storage.buildah("from", "--name", name, image), timeout=900)
    try:
        # buildah 1.28 mounts the image's own anonymous VOLUME over a `-v` bind mount of the
        # same path (docker and podman replace it): the container's declaration is dropped.
        host.run(storage.buildah("config", "--volume", f"{DATA}-", name))
        yield name
    finally:
        host.run(storage.buildah("rm", name), timeout=300)


@contextmanager
def serving(storage: Storage, container: str, data: Path,
            command: Sequence[str]) -> Iterator[Served]:
    """``command`` running in ``container`` with ``data`` as ``/data``, answering ``/readyz``;
    stopped with SIGTERM to its process (graceful) afterwards.

    Raises:
        DeployError: it ended or reported no port within :data:`START_TIMEOUT_S` (the message
            ends with its last output line), or ``/readyz`` did not answer 200.
    """
    lines: list[str] = []
    started = time.perf_counter()
    process = subprocess.Popen(
        storage.buildah("run", "--isolation", "chroot", "-v", f"{data}:{DATA}", container, "--",
                        *command),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    port: list[int] = []
    found = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if not found.is_set() and (match := LISTENING.search(line)):
                port.append(int(match.group(1)))
                found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not found.wait(0.2):
            if process.poll() is not None or time.monotonic() > deadline:
                raise DeployError(f"`{shlex.join(command)}` did not start: "
                                  + (lines[-1] if lines else "no output"))
        url = f"http://127.0.0.1:{port[0]}"
        status, ready = call(url + "/readyz")
        if status != 200:
            raise DeployError(f"/readyz answered {status}: {ready}")
        yield Served(url, round(time.perf_counter() - started, 2), ready, lines)
    finally:
        stop(process)
        reader.join(10)


def stop(process: subprocess.Popen[str]) -> None:
    """Stop ``buildah run`` gracefully: SIGTERM to its container's process, then wait; its
    process group is killed if it has not ended :data:`STOP_TIMEOUT_S` later."""
    if process.poll() is None and (pid := container_process(process.pid)) is not None:
        os.kill(pid, signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
