"""``nox -s container``: build the service image without a daemon or a registry, run the image's
own ``CMD`` as its non-root user, and check it answers, recognizes and keeps its gallery.

1. Tools: debootstrap, buildah, podman (apt-installed when root, one line when they cannot be).
2. Base: a Debian bookworm with ``python3`` and ``python3-venv`` made by debootstrap
   (:func:`~toolchain.deploy.host.debian_root`), imported as an image (``BASE`` of the
   Dockerfile; the default, the official Python image, needs a registry).
3. Wheels: the lock's wheels fetched on the host beforehand and mounted into the build at
   ``/wheels`` (``WHEELS``): the build needs no network and no certificate bundle inside the
   image, and installs exactly the hash-pinned bytes, the same on every build.
4. Context: every ``COPY`` source of the Dockerfile, from the checkout, or from ``artifacts`` for
   ``artifacts/...`` (the Dockerfile's ``COPY`` line is the one list of the models). The image is
   tagged with the digest of everything it is built from and reused while that is unchanged.
5. Build: ``buildah bud --isolation chroot --format docker`` (keeps the ``HEALTHCHECK``).
6. Run: the image's ``CMD`` with its ``USER`` and ``WORKDIR`` (``buildah run``), ``/data``
   bind-mounted from a fresh host folder owned by that user. Chroot isolation shares the host's
   network, so ``--host 127.0.0.1 --port 0`` are appended (the last value of an option wins):
   nothing listens on the machine's interfaces and no fixed port can be taken already.
   ``/readyz``; two people enrolled from ``people/``; a photo of both recognized; the process
   stopped with SIGTERM (a graceful shutdown: ``buildah run`` kills its child on a signal, so the
   signal goes to the ``CMD`` process); the gallery found in the host folder; the container
   started again on the same ``/data``: ``/readyz``, both people listed, a photo of one
   recognized.
7. Report: ``<reports>/container.json`` (image size, the time from ``buildah run`` to ``/readyz``,
   what each step cost and whether it was cached).

Standard library only (and ``toolchain.core``): it runs in the Python that runs nox.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from toolchain.core.atomic import sha256_file, write_json
from toolchain.core.integrity.sums import record_files
from toolchain.core.paths import Layout
from toolchain.deploy import host
from toolchain.deploy.host import DeployError, Log
from toolchain.deploy.running import Storage, call, serving, status, working_container

DOCKERFILE = Path("toolchain") / "service" / "container" / "Dockerfile"
IMAGE = "localhost/facenet-serve"
BASE_IMAGE = "localhost/facenet-base"
BASE_PACKAGES = ("python3", "python3-venv")
WHEELS_MOUNT = "/wheels"
TOOLS = ("debootstrap", "buildah", "podman")
REPORT = "container.json"
ENROLLED = ("obama", "biden")
"""The people enrolled over HTTP, from ``people/<name>/``."""
BOTH_PHOTO = PurePosixPath("photos") / "obama_and_biden.jpg"
ONE_PHOTO = PurePosixPath("photos") / "obama1.jpg"
UNKNOWN = "unknown"
PAGES = ("/", "/static/app.js", "/docs", "/docs-assets/swagger-ui-bundle.js")
"""The web page and the offline API docs: package data that must be in the image."""


def instructions(dockerfile: Path) -> list[tuple[str, list[str]]]:
    """``(INSTRUCTION, words)`` of a Dockerfile, continuation lines joined, comments dropped."""
    text = dockerfile.read_text(encoding="utf-8").replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.split()))
    return found


def copy_sources(dockerfile: Path) -> list[PurePosixPath]:
    """Every build-context path the Dockerfile's ``COPY`` instructions read (not ``--from``)."""
    sources: list[PurePosixPath] = []
    for word, args in instructions(dockerfile):
        if word != "COPY" or any(a.startswith("--from=") for a in args):
            continue
        paths = [a for a in args if not a.startswith("--")]
        sources += [PurePosixPath(p) for p in paths[:-1] if PurePosixPath(p) not in sources]
    return sources


def _link_or_copy(origin: str, target: str) -> None:
    try:
        os.link(origin, target)
    except OSError:
        shutil.copy2(origin, target)


def stage_context(root: Path, artifacts: Path, dockerfile: Path, dest: Path) -> str:
    """Lay out the build context in ``dest``: each ``COPY`` source from the checkout, or from
    ``artifacts`` for ``artifacts/...`` (hard links where possible). Returns the sha256 of every
    staged path and content.

    Raises:
        DeployError: a source is missing (the line names the nox session that makes it).
    """
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for source in copy_sources(dockerfile):
        under_artifacts = source.parts[0] == "artifacts"
        origin = (artifacts.joinpath(*source.parts[1:]) if under_artifacts
                  else root.joinpath(*source.parts))
        if not origin.exists():
            hint = "run `nox -s export`" if under_artifacts else "is the checkout complete?"
            raise DeployError(f"{origin} missing (the Dockerfile copies it): {hint}")
        target = dest.joinpath(*source.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, target, copy_function=_link_or_copy,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            _link_or_copy(str(origin), str(target))
    digest = hashlib.sha256()
    for path in sorted(p for p in dest.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(dest).as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def base_image(storage: Storage, cache: Path, arch: str, log: Log, timings: host.Timings) -> str:
    """The Debian base image, imported from the debootstrap root (both cached)."""
    with timings.step("debootstrap"):
        rootfs = host.debian_root(cache, arch, BASE_PACKAGES, log)
    stamp = sha256_file(cache / f"{rootfs.name}.json")[:16]
    name = f"{BASE_IMAGE}:{host.SUITE}-{stamp}"
    with timings.step("base_import"):
        if not storage.has_image(name):
            log(f"importing {rootfs.name} as {name}")
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            try:
                done = subprocess.run(storage.podman("import", "-", name), stdin=tar.stdout,
                                      capture_output=True, text=True, check=False)
            finally:
                if tar.stdout is not None:
                    tar.stdout.close()
                tar.wait()
            if done.returncode != 0 or tar.returncode != 0:
                raise DeployError(f"podman import of {rootfs} failed: "
                                  + " | ".join(done.stderr.strip().splitlines()[-3:]))
    return name


@dataclass(frozen=True)
class Built:
    """The image: its store, tag, base image, and whether this run built it (or reused it)."""

    storage: Storage
    image: str
    base: str
    built: bool


def build(root: Path, artifacts: Path, cache: Path, log: Log, timings: host.Timings) -> Built:
    """Build the image, or reuse it when one was built from the same inputs."""
    storage = Storage(cache / "containers")
    arch = host.host_arch()
    base = base_image(storage, cache, arch, log, timings)
    with timings.step("wheels"):
        wheels = host.fetch_wheels(root, arch, cache, log)
    dockerfile = root / DOCKERFILE
    with timings.step("context"):
        context = cache / "context"
        digest = hashlib.sha256(stage_context(root, artifacts, dockerfile, context).encode())
        digest.update(dockerfile.read_bytes())
        digest.update(f"{base}\0{arch}".encode())
        tag = f"{IMAGE}:{digest.hexdigest()[:16]}"
    built = not storage.has_image(tag)
    with timings.step("build"):
        if built:
            log(f"building {tag} from {DOCKERFILE} (base {base}, wheels from {wheels})")
            host.run(storage.buildah(
                "bud", "--isolation", "chroot", "--format", "docker", "-f", dockerfile,
                "--build-arg", f"BASE={base}", "--build-arg", f"TARGETARCH={arch}",
                "--build-arg", f"WHEELS={WHEELS_MOUNT}", "-v", f"{wheels}:{WHEELS_MOUNT}:ro",
                "-t", tag, context), timeout=3600)
    shutil.rmtree(context, ignore_errors=True)
    prune(storage, {tag, base})
    return Built(storage, tag, base, built)


def prune(storage: Storage, keep: set[str]) -> None:
    """Remove this target's other images from its store (vfs keeps a full copy of each)."""
    listed = host.run(storage.podman("images", "--format", "{{.Repository}}:{{.Tag}}"))
    for name in listed.split():
        if name.startswith((f"{IMAGE}:", f"{BASE_IMAGE}:")) and name not in keep:
            host.run(storage.podman("rmi", name))


def names(result: Any) -> list[str]:
    """The sorted names of a ``/v1/recognize`` answer's faces (``unknown`` for nobody's)."""
    return sorted(str(face["name"] or UNKNOWN) for face in result["faces"])


def check(storage: Storage, image: str, shared: Path, data: Path,
          timings: host.Timings) -> dict[str, Any]:
    """Run the image's ``CMD`` in one container, then again after it stopped (a restart), on one
    bind-mounted ``/data``, and record what it answers."""
    with ExitStack() as stack:
        return _check(stack, storage, image, shared, data, timings)


def _check(stack: ExitStack, storage: Storage, image: str, shared: Path, data: Path,
           timings: host.Timings) -> dict[str, Any]:
    config = json.loads(host.run(storage.buildah("inspect", "--type", "image", image)))
    config = config["OCIv1"]["config"]
    command = [*config["Cmd"], "--host", "127.0.0.1", "--port", "0"]
    image_id = host.run(storage.podman("image", "inspect", "--format", "{{.Id}}", image)).strip()
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    with timings.step("create_container"):
        container = stack.enter_context(working_container(storage, image))
    uid, gid = (int(v) for v in host.run(storage.buildah(
        "run", "--isolation", "chroot", container, "--", "sh", "-c", "id -u; id -g")).split())
    if uid == 0:
        raise DeployError(f"{image} runs as root (USER {config.get('User')!r})")
    os.chown(data, uid, gid)
    people = shared / "people"
    result: dict[str, Any] = {"image_id": image_id, "cmd": config["Cmd"],
                              "user": config.get("User"), "uid": uid,
                              "appended": command[len(config["Cmd"]):]}
    with timings.step("first_run"), serving(storage, container, data, command) as first:
        enrolled = {}
        for person in ENROLLED:
            photos = sorted(p for p in (people / person).iterdir() if p.is_file())
            code, answer = call(f"{first.url}/v1/people/{person}/faces",
                                "POST", [("image", p) for p in photos])
            if code != 201:
                raise DeployError(f"enrolling {person} answered {code}: {answer}")
            enrolled[person] = len(photos)
        code, both = call(f"{first.url}/v1/recognize", "POST", [("image", shared / BOTH_PHOTO)])
        result["first"] = {"seconds_to_ready": first.seconds_to_ready, "readyz": first.ready,
                           "enrolled_photos": enrolled, "recognized": str(BOTH_PHOTO),
                           "names": names(both) if code == 200 else both,
                           "pages": {page: status(first.url + page) for page in PAGES}}
    gallery = data / Path(config["Cmd"][config["Cmd"].index("--gallery") + 1]).name
    result["gallery_on_host"] = {"file": gallery.name, "bytes": gallery.stat().st_size,
                                 "uid": gallery.stat().st_uid}
    with timings.step("second_run"), serving(storage, container, data, command) as second:
        _, listed = call(f"{second.url}/v1/people")
        code, one = call(f"{second.url}/v1/recognize", "POST", [("image", shared / ONE_PHOTO)])
        result["after_restart"] = {
            "seconds_to_ready": second.seconds_to_ready, "readyz": second.ready,
            "people": sorted(p["name"] for p in listed["people"]), "recognized": str(ONE_PHOTO),
            "names": names(one) if code == 200 else one}
    return result


def verdict(result: dict[str, Any]) -> list[str]:
    """What is wrong with a check's result (empty when everything holds)."""
    problems = []
    if sorted(set(result["first"]["names"]) - {UNKNOWN}) != sorted(ENROLLED):
        problems.append(f"{BOTH_PHOTO}: named {result['first']['names']}, expected both "
                        f"{' and '.join(ENROLLED)}")
    if result["after_restart"]["people"] != sorted(ENROLLED):
        problems.append(f"after the restart the gallery holds {result['after_restart']['people']}")
    if result["after_restart"]["names"] != [ENROLLED[0]]:
        problems.append(f"after the restart {ONE_PHOTO}: named "
                        f"{result['after_restart']['names']}, expected {ENROLLED[0]}")
    problems += [f"{page} answered {code}" for page, code in result["first"]["pages"].items()
                 if code != 200]
    if result["gallery_on_host"]["uid"] != result["uid"]:
        problems.append("the gallery on the bind mount is not owned by the image's user")
    return problems


def main(root: Path, artifacts: Path, shared: Path, cache: Path, reports: Path,
         log: Log = print) -> dict[str, Any]:
    """Build the image offline, run and check it, write ``reports/container.json``.

    Args:
        root: the checkout (Dockerfile, lock, sources).
        artifacts: where ``artifacts/...`` sources (the models) are read from.
        shared: the shared example photos (``people/``, ``photos/``).
        cache: where the slow steps' results are kept (e.g. ``.nox/deploy``).
        reports: where ``container.json`` goes.

    Raises:
        DeployError: a tool is missing or failed, or a check does not hold (one line).
    """
    # podman records its store's absolute path: a cache reached through a symbolic link
    # elsewhere would be another store to it
    root, artifacts, cache = root.resolve(), artifacts.resolve(), cache.resolve()
    timings = host.prepare(shared, TOOLS, "building the image", log)
    built = build(root, artifacts, cache, log, timings)
    result = check(built.storage, built.image, shared, cache / "data", timings)
    arch = host.host_arch()
    size = built.storage.image_size(built.image)
    report = {
        "image": built.image, "built": built.built, "arch": arch,
        "dockerfile": DOCKERFILE.as_posix(),
        "lock": host.lock_path(root, arch).relative_to(root).as_posix(),
        "size_bytes": size, "size_mb": round(size / 1e6, 1),
        "base": built.base, "base_size_mb": round(built.storage.image_size(built.base) / 1e6, 1),
        "seconds": timings.seconds, **result,
        "tools": {tool: host.run([tool, "--version"]).strip().splitlines()[0]
                  for tool in ("buildah", "podman", "debootstrap")},
        "problems": verdict(result),
    }
    path = reports / REPORT
    write_json(path, report)
    layout = Layout(artifacts)
    if path.parent.resolve() == layout.reports_dir.resolve():
        record_files(layout, [path])
    if report["problems"]:
        raise DeployError("container check failed: " + "; ".join(report["problems"]))
    return report
