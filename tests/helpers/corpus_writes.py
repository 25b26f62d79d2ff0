"""Bad-input corpus, area "writes": destinations an atomic write must not replace, and the
integrity checks of ``facenet model verify`` / ``facenet model checksums`` (``SHA256SUMS`` entries
that point outside the artifacts tree, a tampered model, a gallery checked with ``--gallery``).

A write refused here is refused before anything is written: the special file (a device node
like ``/dev/full``, a FIFO, a socket) is still there, unchanged, and no temporary file is left.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
import stat
import struct
from collections.abc import Callable
from contextlib import closing
from functools import partial
from pathlib import Path

import numpy as np

from helpers.cli import facenet
from helpers.corpus import Command, Outcome, Store, Workspace, case, other_model_gallery


def _export_to(ws: Workspace, destination: Path) -> Command:
    other_model_gallery(ws.gallery)
    return partial(facenet, "gallery", "export", destination, "--artifacts", ws.artifacts)


def _char_device(path: Path) -> None:
    os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 7))  # what /dev/full is


def _socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))


SPECIAL: dict[str, tuple[Callable[[Path], None], str]] = {
    "char-device": (_char_device, "character device"),
    "fifo": (os.mkfifo, "FIFO"),
    "socket": (_socket, "socket"),
}


def export_over_special(variant: str) -> None:
    make, kind = SPECIAL[variant]

    @case(f"writes-export-over-{variant}")
    def _setup(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
        target = ws.inputs / "out.json"
        make(target)
        return _export_to(ws, target), Outcome(
            3, str(target), (f"is a {kind}, not a regular file", "refusing to write over it"))

    @case(f"writes-export-through-link-to-{variant}")
    def _through_link(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
        make(ws.inputs / "node")
        link = ws.inputs / "out.json"
        link.symlink_to("node")
        return _export_to(ws, link), Outcome(
            3, str(link), (f"is a symbolic link to a {kind}", "refusing to write through it"))


for _variant in SPECIAL:
    export_over_special(_variant)


@case("writes-export-through-dangling-link")
def _dangling(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    link = ws.inputs / "out.json"
    link.symlink_to("missing.json")
    return _export_to(ws, link), Outcome(
        3, str(link), ("is a dangling symbolic link (to missing.json)",))


@case("writes-export-through-link-loop")
def _loop(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    link = ws.inputs / "out.json"
    link.symlink_to("out.json")
    return _export_to(ws, link), Outcome(3, str(link), ("cannot be followed",))


# ---- SHA256SUMS and `facenet model checksums` ----

def _verify(ws: Workspace, *extra: str | Path) -> Command:
    return partial(facenet, "model", "verify", *extra, "--artifacts", ws.artifacts)


@case("verify-sums-absolute-path")
def _sums_absolute(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    secret = ws.inputs / "hostname"
    secret.write_bytes(b"a file outside the artifacts tree\n")
    digest = hashlib.sha256(secret.read_bytes()).hexdigest()
    (ws.artifacts / "SHA256SUMS").write_text(f"{digest}  {secret}\n")
    return _verify(ws), Outcome(4, str(secret), ("a path outside the artifacts tree",))


@case("checksums-refuses-tampered-model")
def _checksums_model(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    model = ws.models / "facenet.onnx"
    model.parent.mkdir()
    model.write_bytes(b"the exported model")
    proc = facenet("model", "checksums", "--artifacts", ws.artifacts)
    assert proc.returncode == 0, proc.stderr
    model.write_bytes(b"the exported modeL")
    return partial(facenet, "model", "checksums", "--artifacts", ws.artifacts), Outcome(
        4, str(model), ("no longer matches SHA256SUMS", "regenerate it with `nox -s export`"))


# ---- `facenet model verify --gallery FILE` ----

def _damaged_gallery(ws: Workspace, damage: Callable[[sqlite3.Connection], None]) -> Path:
    other_model_gallery(ws.gallery)
    with closing(sqlite3.connect(ws.gallery)) as conn, conn:
        damage(conn)
    return ws.gallery


@case("verify-gallery-near-zero-vector")
def _gallery_near_zero(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    blob = struct.pack("<128f", *([1e-25] * 128))
    path = _damaged_gallery(ws, lambda c: c.execute("UPDATE embeddings SET vector = ?", (blob,)))
    return _verify(ws, "--gallery", path), Outcome(
        4, str(path), ("embedding 1 ('Someone')", "not a unit vector"))


@case("verify-gallery-huge-threshold")
def _gallery_threshold(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    path = _damaged_gallery(
        ws, lambda c: c.execute("INSERT INTO meta VALUES ('threshold', '1e300')"))
    return _verify(ws, "--gallery", path), Outcome(
        4, str(path), ("stored threshold '1e300' is not a distance in (0, 2]",))


@case("verify-gallery-random-bytes")
def _gallery_random_bytes(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    other_model_gallery(ws.gallery)
    data = bytearray(ws.gallery.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 512] = np.random.default_rng(9).bytes(512)
    ws.gallery.write_bytes(bytes(data))
    return _verify(ws, "--gallery", ws.gallery), Outcome(4, str(ws.gallery), ("malformed",))


@case("verify-gallery-missing")
def _gallery_missing(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    return _verify(ws, "--gallery", ws.gallery), Outcome(3, str(ws.gallery), ("missing",))


@case("verify-gallery-fifo")
def _gallery_fifo(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    os.mkfifo(ws.gallery)
    return _verify(ws, "--gallery", ws.gallery), Outcome(
        3, str(ws.gallery), ("a FIFO, not a regular file",))
