"""The container image of ``facenet serve``, built and run for real (``toolchain.deploy.container``,
what ``nox -s container`` runs).

The image is built without a daemon or a registry: a Debian bookworm base made by debootstrap,
``buildah bud`` with chroot isolation, the hash-pinned wheels fetched on the host beforehand. Its
tag is the digest of everything it is built from, so an image ``nox -s container`` built from the
same inputs is reused (the cache is the checkout's ``.nox/deploy``); otherwise the test builds it.
It then runs the image's own ``CMD`` as the image's user, twice on one bind-mounted ``/data``.
Building needs root (debootstrap) and installs buildah, podman and debootstrap with apt when they
are missing; without root the test skips with a reason that is a failure under CI.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.service_server import ROOT, examples, models_artifacts

from toolchain.core import contracts
from toolchain.deploy import container, host

pytestmark = [pytest.mark.real]

CACHE = ROOT / ".nox" / "deploy"
COMPOSE = ROOT / "toolchain" / "service" / "container" / "compose.yaml"


def stages() -> list[list[tuple[str, list[str]]]]:
    """The Dockerfile's instructions before the first ``FROM``, then those of each stage."""
    found: list[list[tuple[str, list[str]]]] = [[]]
    for word, args in container.instructions(ROOT / container.DOCKERFILE):
        if word == "FROM":
            found.append([])
        found[-1].append((word, args))
    return found


def test_the_recipe_installs_only_locked_wheels_and_runs_as_a_user() -> None:
    preamble, build, final = stages()
    assert preamble == [("ARG", ["BASE=python:3.11.7-slim-bookworm"])]
    assert build[0] == ("FROM", ["${BASE}", "AS", "build"]) and final[0] == ("FROM", ["${BASE}"])
    installs = [" ".join(a) for w, a in build if w == "RUN" and "install" in a]
    assert len(installs) == 2, installs
    assert "--require-hashes -r requirements/lock/${TARGETARCH}.txt" in installs[0]
    assert "--no-deps --no-build-isolation --no-index ." in installs[1]
    user = next(a for w, a in final if w == "USER")
    assert user not in (["root"], ["0"])
    health = " ".join(next(a for w, a in final if w == "HEALTHCHECK"))
    assert "127.0.0.1:8000/healthz" in health
    assert not any(w == "RUN" and "pip" in a for w, a in final)
    compose = COMPOSE.read_text()
    assert "dockerfile: toolchain/service/container/Dockerfile" in compose
    assert '"127.0.0.1:8000:8000"' in compose and "--token-file" in compose


def test_the_image_copies_the_container_pack_and_serves_it() -> None:
    """The Dockerfile copies one model pack (the one `nox -s container` writes) and its CMD
    serves it with --models."""
    copied = [s for s in container.copy_sources(ROOT / container.DOCKERFILE)
              if s.parts[0] == "artifacts"]
    assert [s.as_posix() for s in copied] == [f"artifacts/{contracts.CONTAINER_PACK}"]
    assert '"--models", "/srv/facenet/pack"' in (ROOT / container.DOCKERFILE).read_text()


def pins(text: str) -> dict[str, str]:
    """``name==version`` lines of a requirement or lock file, names normalized (PEP 503)."""
    found = {}
    for line in text.splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split("==")
            found[re.sub(r"[-_.]+", "-", name.strip()).lower()] = version.split()[0]
    return found


@pytest.mark.parametrize("arch", sorted(host.ARCHES))
def test_the_locks_pin_the_requirement_files_versions(arch: str) -> None:
    locked = pins(host.current_lock(ROOT, arch).read_text())
    for source in host.LOCK_INPUTS:
        for name, version in pins((ROOT / source).read_text()).items():
            assert locked.get(name) == version, (arch, source, name, version)
    assert "setuptools" in locked


@pytest.mark.slow
@pytest.mark.timeout(2 * 3600)
def test_the_image_builds_offline_and_serves_as_its_user(tmp_path: Path) -> None:
    artifacts, shared = models_artifacts(), examples()
    if os.geteuid() != 0:
        pytest.skip("building the image needs root (debootstrap, apt): run `nox -s container` "
                    "as root")
    context = tmp_path / "artifacts"
    packed = subprocess.run(
        [sys.executable, "-m", "toolchain", "model", "pack", "--runtime", "onnxruntime",
         "--out", str(context / contracts.CONTAINER_PACK), "--artifacts", str(artifacts)],
        capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert packed.returncode == 0, packed.stderr
    try:
        report = container.main(ROOT, context, shared, CACHE, tmp_path)
    except host.DeployError as exc:
        pytest.fail(str(exc))
    assert (tmp_path / container.REPORT).is_file()
    assert report["problems"] == []
    assert report["cmd"][:2] == ["facenet", "serve"] and report["user"] == "facenet"
    assert report["uid"] != 0 and report["gallery_on_host"]["uid"] == report["uid"]
    assert report["appended"] == ["--host", "127.0.0.1", "--port", "0"]
    first, again = report["first"], report["after_restart"]
    assert first["readyz"]["status"] == "ready" and first["readyz"]["people"] == 0
    assert set(first["names"]) - {container.UNKNOWN} == set(container.ENROLLED)
    assert set(first["pages"].values()) == {200}
    assert again["readyz"]["people"] == len(container.ENROLLED)
    assert again["people"] == sorted(container.ENROLLED) and again["names"] == ["obama"]
    assert report["size_mb"] > report["base_size_mb"] > 0
