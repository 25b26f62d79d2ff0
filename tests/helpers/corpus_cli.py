"""Bad-input corpus, command-line area: usage errors, non-regular photo files, unreadable files
named on the command line, faces too small to enroll, optional modules that are not installed.

Registered on import (``test_bad_inputs`` imports every ``corpus_*.py``); each case is checked by
``test_bad_inputs.test_refused``: exit code, one error line, nothing in the workspace changed.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from functools import partial
from pathlib import Path

from PIL import Image

from helpers.cli import facenet
from helpers.corpus import (
    Command,
    Outcome,
    Store,
    Workspace,
    case,
    face_photo,
    jpeg_bytes,
    read_only_runner,
    real_file,
    run,
    tiny,
)

# ---- usage errors (no models needed: refused while the command line is parsed) ----


@case("usage-export-unknown-format")
def _export_bogus(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    return (partial(facenet, "model", "export", "--format", "bogus", "--artifacts", ws.artifacts),
            Outcome(2, "'bogus'", ("unknown export format", "onnx-int8")))


def threshold_case(value: str) -> None:
    @case(f"usage-recognize-threshold-{value}")
    def _setup(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
        return (partial(facenet, "recognize", ws.inputs, "--threshold", value,
                        "--artifacts", ws.artifacts),
                Outcome(2, "--threshold", (value, "(0, 2]")))


for _value in ("nan", "inf", "-inf", "0", "2.5"):
    threshold_case(_value)


# ---- photo files that are not regular files, or cannot be read ----


def with_fifo(path: Path, command: Callable[[], subprocess.CompletedProcess[str]]
              ) -> subprocess.CompletedProcess[str]:
    """Run ``command`` while a FIFO exists at ``path`` (made after the workspace snapshot: the
    snapshot reads every file, and reading a FIFO nobody writes to blocks)."""
    os.mkfifo(path)
    try:
        return command()
    finally:
        path.unlink()


def special_file_case(command: str) -> None:
    @case(f"{command}-fifo-named-jpg", needs="models")
    def _fifo(ws: Workspace, store: Store | None) -> tuple[Command, Outcome]:
        assert store is not None
        ws.runtime(store)
        path = ws.inputs / "x.jpg"
        args = partial(facenet, command, path, "--artifacts", ws.artifacts)
        return partial(with_fifo, path, args), Outcome(1, "x.jpg", ("not a regular file",),
                                                       strict=command == "recognize")

    @case(f"{command}-link-to-dev-zero", needs="models")
    def _zero(ws: Workspace, store: Store | None) -> tuple[Command, Outcome]:
        assert store is not None
        ws.runtime(store)
        path = ws.inputs / "zero.jpg"
        path.symlink_to("/dev/zero")
        return (partial(facenet, command, path, "--artifacts", ws.artifacts),
                Outcome(1, "zero.jpg", ("not a regular file",), strict=command == "recognize"))

    @case(f"{command}-unreadable-photo-by-name", needs="models")
    def _unreadable(ws: Workspace, store: Store | None) -> tuple[Command, Outcome]:
        assert store is not None
        ws.runtime(store)
        path = ws.photo("locked.jpg", data=jpeg_bytes(face_photo()))
        path.chmod(0)
        runner = read_only_runner()
        return (partial(facenet, command, path, "--artifacts", ws.artifacts, preexec=runner),
                Outcome(1, "locked.jpg", ("cannot read", "Permission denied"),
                        strict=command == "recognize"))


for _command in ("recognize", "enroll"):
    special_file_case(_command)


# ---- enrollment needs a face of a minimum size ----


@case("enroll-face-too-small", needs="models")
def _too_small(ws: Workspace, store: Store | None) -> tuple[Command, Outcome]:
    """The real face photo at 28 % scale: MTCNN still finds the face, about 32x45 px."""
    assert store is not None
    ws.runtime(store)
    photo = face_photo()
    small = photo.resize((round(photo.width * 0.28), round(photo.height * 0.28)),
                         Image.Resampling.LANCZOS)
    path = ws.photo("Tiny.jpg", data=jpeg_bytes(small))
    return (partial(facenet, "enroll", path, "--largest", "--artifacts", ws.artifacts),
            Outcome(1, "Tiny.jpg", ("under the 40 px", "--min-enroll-face"), strict=False))


# ---- a command whose optional modules are not installed (the runtime-only install) ----

BLOCK_MODULES = """
import sys
from importlib.abc import MetaPathFinder


class Block(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, Block())
from toolchain.cli.main import main
main()
"""
"""``python -c`` program: the ``facenet`` command line as if ``blocked`` were not installed."""


def without(blocked: set[str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    return run(["-c", BLOCK_MODULES.format(blocked=blocked), *map(str, args)])


@case("missing-extra-inspect")
def _no_h5py(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    path = tiny(ws)
    return (partial(without, {"h5py", "tensorflow"}, "model", "inspect", path),
            Outcome(6, "'h5py'", ('pip install "facenet-toolchain[inspect]"',)))


def real_tree(ws: Workspace, *names: str) -> None:
    """Link the real ``artifacts/<name>`` trees into the workspace."""
    for name in names:
        (ws.artifacts / name).symlink_to(real_file(name, "run the main job (`nox`) first"))


@case("missing-extra-export", needs="models")
def _no_tensorflow(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    real_tree(ws, "weights", "reference")
    return (partial(without, {"tensorflow", "keras"}, "model", "export", "--format", "keras",
                    "--artifacts", ws.artifacts),
            Outcome(6, "is not installed", ('pip install "facenet-toolchain[convert]"',)))


@case("missing-extra-parity", needs="models")
def _no_tensorflow_parity(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    real_tree(ws, "weights", "reference", "models")
    return (partial(without, {"tensorflow", "keras", "onnx", "ai_edge_litert"}, "model", "parity",
                    "--artifacts", ws.artifacts),
            Outcome(6, "is not installed", ('pip install "facenet-toolchain[convert]"',)))
