"""Where the real data and artifacts of the suite are, and running a command on a read-only folder.

The shared photos and clip sit next to the checkout (``../shared/data``), never inside it; the
artifacts of the main job are under ``FACENET_ARTIFACTS``. A lookup that finds nothing skips with
the nox session that makes it, which is a failure under CI (see ``tests/conftest.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from helpers import allowances
from toolchain.core.atomic import write_bytes
from toolchain.core.integrity import record_files
from toolchain.core.paths import Layout

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "face_recognition_examples"
"""The shared real photos and clip (``../shared/data/face_recognition_examples`` next to the
checkout, as on the developers' machines and in CI); never copied into the repository."""


def shared_data(sub: str = "") -> Path:
    """A folder of the shared real data, or skip (a failure under CI) if it is not there."""
    path = SHARED_DATA / sub
    if not path.is_dir():
        pytest.skip(f"{path} missing: run `nox -s tests` from a checkout next to shared/")
    return path


def artifacts_root() -> Path:
    """The artifacts directory of the real-file tests (env ``FACENET_ARTIFACTS``)."""
    return Path(os.environ.get("FACENET_ARTIFACTS", "artifacts"))


READ_ONLY_MOUNT = ('mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" || exit 97; '
                   'shift; exec "$@"')
"""Shell run in a private mount namespace: ``$1`` becomes a read-only bind mount of itself, then
the command runs; exit 97 when the mount cannot be made."""


def write_web_report(name: str, data: bytes) -> Path:
    """Write ``<artifacts>/reports/web/NAME`` (a screenshot of the web page, ``local.json``)
    atomically and list it in the artifacts' ``SHA256SUMS``, as the toolchain's own report writers
    do: the browser tests write into the user's artifacts, which ``facenet model verify`` must
    still pass afterwards (nothing is listed before the main job has written ``SHA256SUMS``)."""
    layout = Layout(artifacts_root())
    path = layout.reports_dir / "web" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, data)
    record_files(layout, [path])
    return path


def run_read_only(folder: Path, command: Sequence[str], **options: Any
                  ) -> subprocess.CompletedProcess[str]:
    """Run ``command`` with ``folder`` read-only for it, for real: as root (who writes through
    permission bits) ``folder`` is a read-only bind mount in a private mount namespace; otherwise
    the write bits of ``folder`` and its subfolders are cleared for the run. Skips when neither
    can be done."""
    if os.geteuid() != 0:
        folders = [folder, *(p for p in folder.rglob("*") if p.is_dir() and not p.is_symlink())]
        modes = {path: path.stat().st_mode for path in folders}
        for path, mode in modes.items():
            path.chmod(mode & ~0o222)
        try:
            return subprocess.run(list(command), capture_output=True, text=True, **options)
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
    if shutil.which("unshare") is None:
        pytest.skip(f"a {allowances.READ_ONLY_MOUNT} needs util-linux's unshare as root")
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           READ_ONLY_MOUNT, "sh", str(folder), *command],
                          capture_output=True, text=True, **options)
    if done.returncode == 97:
        pytest.skip(f"cannot make a {allowances.READ_ONLY_MOUNT} here: {done.stderr.strip()}")
    return done
