"""What the container and aarch64 targets share on the host: commands that fail in one line, the
tools they need (installed with apt when root), minimal Debian root file systems made by
debootstrap, hash-pinned wheel locks and the wheels they pin, and step timings.

Everything slow is cached under a folder the caller names (``.nox/deploy`` in a checkout,
git-ignored) and reused while its recipe is unchanged: a root file system while the suite,
architecture and package list are the same, the wheels while the lock file is. Standard library
only (and ``toolchain.core``): this runs in the Python that runs nox, before any environment
exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolchain.core.atomic import sha256_file, write_json, write_text
from toolchain.core.errors import EnvironmentToolError

Log = Callable[[str], None]
"""Where progress lines go (``session.log`` under nox, ``print`` elsewhere)."""


class DeployError(EnvironmentToolError):
    """A tool the deploy checks drive is missing or failed; the message is one line."""


APT_PACKAGES: dict[str, str] = {
    "debootstrap": "debootstrap",
    "buildah": "buildah",
    "podman": "podman",
    "qemu-aarch64-static": "qemu-user-static",
    "unshare": "util-linux",
    "dpkg-deb": "dpkg",
}
"""Every command the targets drive, and the Debian package that has it."""

SUITE = "bookworm"
"""Debian 12: the base of the official ``python:3.11-*-bookworm`` images and of Raspberry Pi OS
(64-bit)."""
MIRROR = "http://deb.debian.org/debian"
PYTHON = "3.11"
"""The ``python3`` of bookworm, which both targets run."""
GLIBC_MINOR = 36
"""bookworm's glibc is 2.36: the newest ``manylinux_2_NN`` wheel tag its Python accepts."""
ARCHES: dict[str, str] = {"amd64": "x86_64", "arm64": "aarch64"}
"""Debian (and Docker) architecture names, and the machine name wheel tags use for each."""

LOCK_DIR = Path("requirements") / "lock"
"""``<arch>.txt`` per architecture: every wheel the image (and a Raspberry Pi) installs, pinned by
sha256."""
LOCK_INPUTS = (Path("requirements") / "runtime.txt", Path("requirements") / "serve.txt")
"""What a lock resolves: the runtime and ``facenet serve`` (plus the build backend)."""
LOCK_HINT = "nox -s deploy_lock"
_DIGEST_MARK = "# inputs sha256 "


@dataclass
class Timings:
    """Wall seconds of named steps, in the order they ran."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the body as step ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 2)


def shown(command: Sequence[str | Path], limit: int = 160) -> str:
    """``command`` as a shell line, shortened to ``limit`` characters for messages."""
    text = shlex.join(str(part) for part in command)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run(command: Sequence[str | Path], *, timeout: float = 3600.0,
        env: Mapping[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run ``command`` to its end and return its standard output.

    Raises:
        DeployError: it is not installed, ran longer than ``timeout`` seconds or failed; the
            message names the command and ends with its last lines of error output.
    """
    args = [str(part) for part in command]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                              env=None if env is None else dict(env), cwd=cwd, check=False)
    except FileNotFoundError:
        raise DeployError(f"{args[0]}: command not found") from None
    except subprocess.TimeoutExpired:
        raise DeployError(f"`{shown(args)}` ran more than {timeout:.0f} s") from None
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-3:]
        raise DeployError(f"`{shown(args)}` failed (exit {done.returncode}): "
                          + " | ".join(line.strip() for line in tail))
    return done.stdout


def require_tools(commands: Sequence[str], log: Log) -> None:
    """Make sure every command in ``commands`` is installed: apt installs the missing ones when
    this process is root.

    Raises:
        DeployError: some are missing and cannot be installed here (the line says how).
    """
    missing = [command for command in commands if shutil.which(command) is None]
    if not missing:
        return
    packages = sorted({APT_PACKAGES[command] for command in missing})
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise DeployError(f"{', '.join(missing)} not installed; as root: "
                          f"`apt-get install {' '.join(packages)}`")
    log(f"installing {' '.join(packages)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-qq"], env=env, timeout=900)
    run(["apt-get", "install", "-y", "-qq", *packages], env=env, timeout=1800)


def require_root(what: str) -> None:
    """Refuse in one line when this process is not root.

    Raises:
        DeployError: it is not.
    """
    if os.geteuid() != 0:
        raise DeployError(f"{what} needs root (debootstrap unpacks a Debian system with its "
                          "owners and modes); run it as root, as CI does")


def require_shared(shared: Path) -> None:
    """Refuse in one line when the shared example photos are not there.

    Raises:
        DeployError: ``shared`` has no ``people/`` and ``photos/``.
    """
    if not ((shared / "people").is_dir() and (shared / "photos").is_dir()):
        raise DeployError(f"{shared} has no people/ and photos/: the shared example photos "
                          "belong next to the checkout (../shared/data/face_recognition_examples)")


def prepare(shared: Path, tools: Sequence[str], needs_root: str, log: Log) -> Timings:
    """What every deploy target checks first, in this order: the shared photos, its tools
    (installed with apt where missing), root; the timings start with the tools' step.

    Raises:
        DeployError: one of them is missing.
    """
    require_shared(shared)
    timings = Timings()
    with timings.step("tools"):
        require_tools(tools, log)
    require_root(needs_root)
    return timings


def host_arch() -> str:
    """This machine's architecture in Debian's naming (``amd64``, ``arm64``)."""
    machine = platform.machine()
    return next((arch for arch, name in ARCHES.items() if name == machine), machine)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def debian_root(cache: Path, arch: str, include: Sequence[str], log: Log) -> Path:
    """A minimal Debian ``bookworm`` root file system for ``arch`` with ``include`` installed.

    debootstrap makes it once (``--variant=minbase``); it is kept under ``cache`` and reused while
    the suite, mirror, architecture and package list are the ones recorded beside it. For another
    architecture than this machine's, debootstrap only downloads (``--foreign``) and every
    package is unpacked with ``dpkg-deb -x``: nothing of that architecture runs, so no emulator is
    registered with the kernel. The downloaded packages and package lists are removed (an image
    does not need them).

    Raises:
        DeployError: not root, or debootstrap or dpkg-deb failed.
    """
    recipe = {"suite": SUITE, "mirror": MIRROR, "arch": arch, "variant": "minbase",
              "include": sorted(include)}
    root = cache / f"{SUITE}-{arch}-root"
    stamp = cache / f"{root.name}.json"
    if root.is_dir() and _read_json(stamp) == recipe:
        return root
    require_root("debootstrap")
    cache.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    shutil.rmtree(root, ignore_errors=True)
    work = cache / f"{root.name}.partial"
    shutil.rmtree(work, ignore_errors=True)
    foreign = arch != host_arch()
    log(f"debootstrap {SUITE} {arch} with {', '.join(include)}"
        + (" (download and unpack only)" if foreign else ""))
    run(["debootstrap", "--variant=minbase", f"--arch={arch}", f"--include={','.join(include)}",
         *(["--foreign"] if foreign else []), SUITE, work, MIRROR], timeout=1800)
    archives = work / "var" / "cache" / "apt" / "archives"
    debs = sorted(archives.glob("*.deb"))
    if foreign:
        for deb in debs:
            run(["dpkg-deb", "-x", deb, work], timeout=600)
    for deb in debs:
        deb.unlink()
    lists = work / "var" / "lib" / "apt" / "lists"
    for item in lists.glob("*"):
        if item.is_file():
            item.unlink()
    work.rename(root)
    write_json(stamp, recipe)
    return root


def lock_path(root: Path, arch: str) -> Path:
    """The lock file of ``arch`` in checkout ``root``."""
    return root / LOCK_DIR / f"{arch}.txt"


def build_requirements(root: Path) -> list[str]:
    """``[build-system] requires`` of the project (locked too: the image builds it offline)."""
    import tomllib  # Python 3.11, like every Python the deploy targets run in

    with (root / "pyproject.toml").open("rb") as fh:
        return list(tomllib.load(fh)["build-system"]["requires"])


def inputs_digest(root: Path) -> str:
    """sha256 of what a lock resolves: the requirement files and the build requirements."""
    digest = hashlib.sha256()
    for path in LOCK_INPUTS:
        digest.update((root / path).read_bytes())
    digest.update("\n".join(build_requirements(root)).encode())
    return digest.hexdigest()


def wheel_target(arch: str) -> list[str]:
    """pip options that select the wheels bookworm's CPython 3.11 on ``arch`` installs."""
    machine = ARCHES[arch]
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(GLIBC_MINOR, 16, -1)]
    tags.append(f"manylinux2014_{machine}")
    return ["--only-binary=:all:", "--implementation", "cp", "--python-version", PYTHON,
            "--abi", "cp" + PYTHON.replace(".", ""),
            *(option for tag in tags for option in ("--platform", tag))]


def write_lock(root: Path, arch: str) -> Path:
    """Resolve :data:`LOCK_INPUTS` and the build requirements for ``arch`` and write its lock:
    every wheel ``name==version`` with its sha256 (``pip install --dry-run --report``).

    Raises:
        DeployError: pip cannot resolve them, or reports a wheel without a sha256.
    """
    with tempfile.TemporaryDirectory(prefix="facenet-lock-") as tmp:
        report = Path(tmp) / "report.json"
        run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
             "--quiet", "--report", report, "--target", Path(tmp) / "target",
             *wheel_target(arch), *(x for p in LOCK_INPUTS for x in ("-r", root / p)),
             *build_requirements(root)], timeout=900)
        installs = json.loads(report.read_text(encoding="utf-8"))["install"]
    lines = [
        f"# Every wheel the container image installs on linux/{arch} ({ARCHES[arch]}), and a",
        f"# Raspberry Pi (arm64): {' + '.join(p.as_posix() for p in LOCK_INPUTS)} and the build",
        f"# backend, resolved for CPython {PYTHON} on glibc 2.{GLIBC_MINOR} (Debian {SUITE}), "
        "each pinned by sha256.",
        f"# Written by `{LOCK_HINT}`; do not edit.",
        f"{_DIGEST_MARK}{inputs_digest(root)}",
    ]
    for item in sorted(installs, key=lambda i: str(i["metadata"]["name"]).lower()):
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        sha = item["download_info"].get("archive_info", {}).get("hashes", {}).get("sha256")
        if not sha:
            raise DeployError(f"pip reported no sha256 for {name}=={version}")
        lines.append(f"{name}=={version} \\\n    --hash=sha256:{sha}")
    path = lock_path(root, arch)
    write_text(path, "\n".join(lines) + "\n")
    return path


def current_lock(root: Path, arch: str) -> Path:
    """The lock of ``arch``, checked to be made from the current requirement files.

    Raises:
        DeployError: it is missing or was made from other requirements (the line says how to
            remake it).
    """
    path = lock_path(root, arch)
    rel = path.relative_to(root)
    if not path.is_file():
        raise DeployError(f"{rel} missing: run `{LOCK_HINT}`")
    recorded = next((line.removeprefix(_DIGEST_MARK).strip()
                     for line in path.read_text(encoding="utf-8").splitlines()
                     if line.startswith(_DIGEST_MARK)), None)
    if recorded != inputs_digest(root):
        inputs = ", ".join(p.as_posix() for p in LOCK_INPUTS)
        raise DeployError(f"{rel} was made from other requirements than {inputs} now hold: "
                          f"run `{LOCK_HINT}`")
    return path


def locked_hashes(lock: Path) -> set[str]:
    """Every sha256 a lock file pins."""
    return {part.removeprefix("--hash=sha256:")
            for part in lock.read_text(encoding="utf-8").split()
            if part.startswith("--hash=sha256:")}


def fetch_wheels(root: Path, arch: str, cache: Path, log: Log) -> Path:
    """The folder of every wheel the lock of ``arch`` pins, downloaded once (``pip download
    --require-hashes``: a file that does not match its pin is refused) and reused while the lock
    is unchanged; wheels of an older lock are removed.

    Raises:
        DeployError: the lock is stale, or pip cannot download a pinned wheel.
    """
    lock = current_lock(root, arch)
    dest = cache / "wheels" / arch
    stamp = dest / ".lock-sha256"
    wanted = locked_hashes(lock)
    present = {sha256_file(wheel) for wheel in dest.glob("*.whl")}
    if stamp.is_file() and stamp.read_text() == sha256_file(lock) and wanted <= present:
        return dest
    log(f"downloading the wheels of {lock.relative_to(root)}")
    dest.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
         "-r", lock, "--dest", dest, *wheel_target(arch)], timeout=1800)
    for wheel in dest.glob("*.whl"):
        if sha256_file(wheel) not in wanted:
            wheel.unlink()
    write_text(stamp, sha256_file(lock))
    return dest


def disk_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path`` (symbolic links not followed)."""
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
