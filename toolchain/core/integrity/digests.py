"""Remembered sha256 digests of the models a command loads, so a fresh process does not read
every model byte before it starts.

Loading a recognizer checks each model file it runs against a pack's manifest or ``SHA256SUMS``
and the optimized graph ONNX Runtime caches against its sidecar: about 185 MB of sha256 for the
fp32 FaceNet, the largest single part of the start of ``facenet recognize one.jpg`` after the
imports. :func:`remembered_sha256` hashes a file once and records the digest under the file's
identity; a later call returns the recorded digest only when the file is provably the same
object, unchanged:

* the same device and inode (a replaced file, even a same-size copy, is a new inode: a reused
  inode number still has new times), the same size and the same modification **and change**
  times, to the nanosecond. The change time (``st_ctime``) is set by the kernel on every write,
  truncation, rename, link or ``chmod`` and cannot be set back by ``touch``/``utime``: a byte
  flipped in place with its modification time restored still changes it;
* and the file's times lie at least :data:`SETTLE_SECONDS` before the hash began ("racy" times,
  as git calls them): a file written again within the same timestamp tick after it was hashed
  would otherwise keep its times. A file that recent is hashed every time, never recorded.

What the record vouches for is the caller's check: the digest is still compared with the
manifest's or ``SHA256SUMS``' entry on every load, so a flipped byte is refused (exit 4) as before.
The records live in the user's own cache folder (:func:`digest_dir`: ``$FACENET_CACHE_DIR/digests``,
else ``$XDG_CACHE_HOME/facenet-toolchain/digests`` or ``~/.cache/...``), one small JSON file per
file identity, written atomically; a record that cannot be read or written only costs a hash.
``facenet model verify`` never uses them: it always reads every byte. ``FACENET_DIGEST_CACHE=0``
turns the records off (every load hashes every file, as before).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from toolchain.core.atomic import sha256_file, write_json

log = logging.getLogger(__name__)

SETTLE_SECONDS = 2.0
"""How long before the hash a file's modification and change times must lie for its digest to be
recorded (longer than any file system's timestamp granularity)."""

CACHE_DIR_ENV = "FACENET_CACHE_DIR"
"""Environment variable naming the folder of the toolchain's per-user caches."""

SWITCH_ENV = "FACENET_DIGEST_CACHE"
"""``0`` turns the remembered digests off."""

RECORD_FORMAT = 1
"""Version of a record's fields; a record of another version is ignored (and rewritten)."""


def digest_dir() -> Path | None:
    """Where the records live (see the module docstring); ``None`` when they are turned off or
    there is no home folder."""
    if os.environ.get(SWITCH_ENV, "1") == "0":
        return None
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]) / "digests"
    try:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    except (KeyError, RuntimeError):  # no HOME and no passwd entry
        return None
    return base / "facenet-toolchain" / "digests"


def _identity(info: os.stat_result) -> dict[str, int]:
    return {"format": RECORD_FORMAT, "size": info.st_size, "mtime_ns": info.st_mtime_ns,
            "ctime_ns": info.st_ctime_ns}


def remembered_sha256(path: Path) -> str:
    """The sha256 of the regular file ``path`` (links followed): the recorded one when the file
    is the very file it was recorded for, unchanged (module docstring), else read in full (and
    recorded when its times have settled).

    Raises:
        InputError: ``path`` is a FIFO, socket, device or directory (never read).
        OSError: it cannot be read.
    """
    folder = digest_dir()
    try:
        info = os.stat(path)
    except OSError:
        return sha256_file(path)  # raises the error the caller expects
    record = None if folder is None else folder / f"{info.st_dev:x}-{info.st_ino:x}.json"
    if record is not None:
        try:
            data = json.loads(record.read_text(encoding="utf-8"))
            if (isinstance(data, dict) and isinstance(data.get("sha256"), str)
                    and {k: data.get(k) for k in _identity(info)} == _identity(info)):
                return str(data["sha256"])
        except (OSError, ValueError):
            pass
    started = time.time_ns()
    digest = sha256_file(path)
    after = os.stat(path)
    settled = max(after.st_mtime_ns, after.st_ctime_ns) < started - int(SETTLE_SECONDS * 1e9)
    if record is not None and settled and _identity(after) == _identity(info):
        try:
            record.parent.mkdir(parents=True, exist_ok=True)
            write_json(record, {**_identity(info), "sha256": digest, "path": str(path)})
        except OSError as exc:
            log.debug("cannot record the sha256 of %s in %s (%s)", path, record.parent, exc)
    return digest
