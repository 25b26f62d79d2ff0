"""A real ``facenet serve`` process on 127.0.0.1 for the service tests, and what they share.

The server runs in the runtime environment (``FACENET_RUNTIME_PYTHON``: no TensorFlow) when it
is set, else in the test's own Python; it binds port 0 and is started and stopped by the load
test's launcher (:func:`toolchain.bench.loadtest.server.launch_serve`, which reads the port
uvicorn reports). Every server gets its own gallery in a temporary folder unless given one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from helpers.cli import facenet_argv, python_env
from helpers.real import artifacts_root, shared_data
from toolchain.bench.loadtest.server import launch_serve

ROOT = Path(__file__).resolve().parents[2]


def examples() -> Path:
    """The shared real photos and clip (people/, photos/, video/)."""
    return shared_data()


def models_artifacts() -> Path:
    """The artifacts folder with the exported runtime models, or skip (a failure under CI)."""
    root = artifacts_root()
    for name in ("facenet.onnx", "mtcnn_pnet.onnx", "mtcnn_rnet.onnx", "mtcnn_onet.onnx"):
        if not (root / "models" / name).is_file():
            pytest.skip(f"{root / 'models' / name} missing: run `nox -s export` first")
    return root


def server_python() -> str:
    """The runtime environment's python if given, else this one (which has the serve extra)."""
    runtime = os.environ.get("FACENET_RUNTIME_PYTHON", "")
    return runtime if runtime and Path(runtime).is_file() else sys.executable


@dataclass
class Server:
    """A running server: its address, gallery and log."""

    url: str
    gallery: Path | str
    process: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)

    def get(self, path: str, **kwargs: object) -> requests.Response:
        return requests.get(self.url + path, timeout=60, **kwargs)  # type: ignore[arg-type]

    def post(self, path: str, **kwargs: object) -> requests.Response:
        return requests.post(self.url + path, timeout=60, **kwargs)  # type: ignore[arg-type]

    def delete(self, path: str, **kwargs: object) -> requests.Response:
        return requests.delete(self.url + path, timeout=60, **kwargs)  # type: ignore[arg-type]

    def enroll(self, name: str, *photos: Path, headers: dict[str, str] | None = None
               ) -> requests.Response:
        files = [("image", (p.name, p.read_bytes())) for p in photos]
        return self.post(f"/v1/people/{name}/faces", files=files, headers=headers or {})

    def recognize(self, photo: Path, headers: dict[str, str] | None = None) -> requests.Response:
        return self.post("/v1/recognize", files={"image": (photo.name, photo.read_bytes())},
                         headers=headers or {})


@contextmanager
def running_server(tmp: Path, *options: str, command: Sequence[str] | None = None,
                   env: dict[str, str] | None = None, artifacts: Path | None = None,
                   gallery: Path | str | None = None) -> Iterator[Server]:
    """Start ``facenet serve`` with ``options`` on 127.0.0.1:0; stop it (SIGTERM) afterwards.

    ``command`` replaces ``python -m toolchain`` (with the checkout on ``PYTHONPATH``), e.g. an
    installed ``facenet``; ``artifacts`` the real artifacts folder; ``gallery`` a file or a
    ``postgresql://`` URL, by default ``tmp/gallery.db``.
    """
    artifacts = artifacts or models_artifacts()
    gallery = gallery or tmp / "gallery.db"
    if command is None:
        base, inherited = facenet_argv(python=server_python()), python_env()
    else:
        base = list(command)
        inherited = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with ExitStack() as stack:
        try:
            launched = stack.enter_context(launch_serve(
                [*base, "serve", "--artifacts", str(artifacts), "--gallery", str(gallery),
                 "--port", "0", *options],
                cwd=tmp, env={**inherited, **(env or {})}))
        except RuntimeError as exc:
            raise AssertionError(str(exc)) from exc
        yield Server(f"http://127.0.0.1:{launched.port}", gallery, launched.process,
                     launched.log)


def assert_error(response: requests.Response, status: int, code: str, exit_code: int) -> str:
    """Check the one JSON error shape; return its message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.text
    error = response.json()["error"]
    assert (error["status"], error["code"], error["exit_code"]) == (status, code, exit_code), error
    assert error["message"] and "Traceback" not in response.text
    return str(error["message"])
