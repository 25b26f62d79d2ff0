"""The bad-input corpus' machinery: workspaces, snapshots, the case registry, the checks.

Cases register with :func:`case` in ``test_bad_inputs.py`` and in the ``corpus_*.py`` modules
it imports (one per area); ``test_bad_inputs.test_refused`` runs every registered case.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import io
import json
import os
import shutil
import sqlite3
import stat
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from helpers import allowances
from helpers.cli import facenet, python_env
from helpers.legacy_h5 import BAD_H5, lambda_b64, write_legacy_h5
from helpers.real import artifacts_root
from toolchain.core.integrity import CACHE_SUFFIXES
from toolchain.gallery import open_gallery

ROOT = Path(__file__).resolve().parents[2]
RECOVER = ROOT / "legacy_env" / "recover.py"
ONNX_MODELS = ("facenet.onnx", "mtcnn_pnet.onnx", "mtcnn_rnet.onnx", "mtcnn_onet.onnx")
ENROLLED = "Ben Affleck"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


# --------------------------------------------------------------------------------------------
# Running commands and checking what they left behind
# --------------------------------------------------------------------------------------------


def run(argv: list[str], python: str = sys.executable, timeout: float = 300
        ) -> subprocess.CompletedProcess[str]:
    """Run a script, ``python argv``, from the repository root (the command line itself:
    :func:`helpers.cli.facenet`)."""
    return subprocess.run([python, *argv], capture_output=True, text=True, check=False,
                          timeout=timeout, cwd=ROOT, env=python_env())


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root``: sha256 (symlinks: their target; special files: their kind and
    device number; SQLite files: also the dump).

    Left out: ONNX Runtime's optimized-graph caches (machine-local derived files, see
    :mod:`toolchain.core.integrity`), SQLite ``-shm`` index files and EMPTY ``-wal`` files, which a
    process that may not write a WAL database leaves behind just by reading it (an empty
    write-ahead log holds no data; a non-empty one is compared like any file).
    """
    state: dict[str, str] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if name.endswith((*CACHE_SUFFIXES, "-shm")) or (
                name.endswith("-wal") and path.stat().st_size == 0
            ):
                continue
            if path.is_symlink():
                state[rel] = f"-> {os.readlink(path)}"
                continue
            info = path.lstat()
            if not stat.S_ISREG(info.st_mode):  # a FIFO, socket or device node: never read it
                state[rel] = f"{stat.filemode(info.st_mode)} {info.st_rdev}"
                continue
            state[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            if name.endswith(".db") and path.stat().st_size:
                state[rel + " (dump)"] = sql_dump_digest(path)
    return state


def sql_dump_digest(path: Path) -> str:
    """Digest of the SQL dump of a database, read from a private copy (opening the original,
    even read-only, would leave ``-wal`` / ``-shm`` files next to it)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / path.name
        shutil.copyfile(path, copy)
        for suffix in ("-wal", "-shm"):
            if Path(f"{path}{suffix}").is_file():
                shutil.copyfile(f"{path}{suffix}", f"{copy}{suffix}")
        try:
            conn = sqlite3.connect(copy)
            try:
                return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            return f"not sqlite: {exc}"


LOG_PREFIXES = ("DEBUG ", "INFO ", "WARNING ")
"""Log records (``LEVEL logger: message``) are allowed next to the one error line."""


def error_lines(stderr: str) -> list[str]:
    """The lines of stderr that report an error or a per-file problem."""
    return [
        line for line in stderr.splitlines()
        if line.startswith(("facenet: ", "recover: ", "Error: "))
    ]


def assert_refused(proc: subprocess.CompletedProcess[str], code: int, names: str,
                   phrases: tuple[str, ...], strict: bool = True) -> str:
    """One clear error line naming ``names`` and every phrase; the exit code; no traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == code, f"exit {proc.returncode}, expected {code}: {proc.stderr}"
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, f"expected one error line, got: {proc.stderr!r}"
    if strict:
        noise = [line for line in proc.stderr.splitlines()
                 if line.strip() and line not in lines and not line.startswith(LOG_PREFIXES)]
        assert not noise, f"stderr has more than the error: {proc.stderr!r}"
    line = lines[0]
    assert names in line, f"{names!r} not named in {line!r}"
    for phrase in phrases:
        assert phrase in line, f"{phrase!r} not in {line!r}"
    return line


# --------------------------------------------------------------------------------------------
# Real data the runtime cases need, prepared once per session
# --------------------------------------------------------------------------------------------


def real_file(relative: str, hint: str) -> Path:
    path = artifacts_root() / relative
    if not path.exists():
        pytest.skip(f"{path} missing: {hint}")
    return path


def face_photo(person: str = "ben_afflek", split: str = "val", index: int = 0) -> Image.Image:
    dataset = real_file("source/5-celebrity-faces-dataset", "run `nox -s fetch` first")
    photos = sorted((dataset / split / person).glob("*.jpg"))
    with Image.open(photos[index]) as image:
        return image.convert("RGB")


@dataclass(frozen=True)
class Store:
    """One session copy of the exported ONNX models (with warmed caches) and a base gallery."""

    models: Path
    gallery: Path
    box: tuple[float, float, float, float]
    """The box the enrolled face photo (``face_photo()``) gets, upright."""


def make_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """Copy the ONNX models (so a re-export elsewhere cannot change them mid-run) and enroll."""
    sources = [real_file(f"models/{name}", "run `nox -s export` first") for name in ONNX_MODELS]
    root = tmp_path_factory.mktemp("store")
    artifacts = root / "artifacts"
    models = artifacts / "models"
    models.mkdir(parents=True)
    for source in sources:
        shutil.copyfile(source, models / source.name)
    photo = root / "face.jpg"
    face_photo().save(photo, quality=95)
    gallery = artifacts / "gallery.db"
    proc = facenet("enroll", "--name", ENROLLED, photo, "--artifacts", artifacts)
    assert proc.returncode == 0, proc.stderr
    proc = facenet("recognize", "--json", photo, "--artifacts", artifacts)
    assert proc.returncode == 0, proc.stderr
    faces = json.loads(proc.stdout)["results"][0]["faces"]
    assert [f["name"] for f in faces] == [ENROLLED]
    return Store(models, gallery, tuple(faces[0]["box"].values()))


class Workspace:
    """A per-test ``artifacts/`` tree and ``inputs/`` folder."""

    def __init__(self, root: Path):
        self.root = root
        self.artifacts = root / "artifacts"
        self.inputs = root / "inputs"
        self.artifacts.mkdir()
        self.inputs.mkdir()

    @property
    def models(self) -> Path:
        return self.artifacts / "models"

    @property
    def gallery(self) -> Path:
        return self.artifacts / "gallery.db"

    def link_models(self, store: Store) -> None:
        """Symlink every file of the store's models directory (models and warmed caches)."""
        self.models.mkdir(exist_ok=True)
        for path in store.models.iterdir():
            (self.models / path.name).symlink_to(path)

    def runtime(self, store: Store) -> None:
        """Models plus a private copy of the base gallery."""
        self.link_models(store)
        shutil.copyfile(store.gallery, self.gallery)

    def replace(self, path: Path, data: bytes) -> None:
        """Replace a (possibly symlinked) file by a real one: never write through a link."""
        path.unlink(missing_ok=True)
        path.write_bytes(data)

    def photo(self, name: str, image: Image.Image | None = None, data: bytes | None = None,
              **save: Any) -> Path:
        path = self.inputs / name
        if data is not None:
            path.write_bytes(data)
        else:
            assert image is not None
            image.save(path, **save)
        return path


# --------------------------------------------------------------------------------------------
# Generated bad files
# --------------------------------------------------------------------------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(side: int = 12_000) -> bytes:
    """A real decompression bomb: ``side`` x ``side`` grayscale zeros in ~140 KB."""
    rows = zlib.compress((b"\x00" * (side + 1)) * side, 9)
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", rows)
            + png_chunk(b"IEND", b""))


def jpeg_bytes(image: Image.Image, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, **options)
    return buffer.getvalue()


def wrong_input_onnx() -> bytes:
    """A valid ONNX model taking NCHW ``[N, 3, 160, 160]`` (FaceNet's contract is NHWC)."""
    onnx = pytest.importorskip("onnx")
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["y"], axes=[2, 3], keepdims=0)],
        "nchw",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, 160, 160])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def other_model_gallery(path: Path) -> None:
    from toolchain.gallery import Entry

    vector = np.ones(128, np.float32)
    with open_gallery(path, fingerprint="0" * 64, dim=128, create=True) as gallery:
        gallery.add([Entry("Someone", vector, "x.jpg", "f" * 64, (1.0, 2.0, 3.0, 4.0))])


def drop_dac_override() -> None:
    """In the child before exec: remove the capabilities that let root ignore file modes."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def read_only_runner() -> Callable[[], None] | None:
    """How to run a child for which a 0444 file is really read-only (``None``: plain chmod)."""
    if os.geteuid() != 0:
        return None
    probe = subprocess.run(["true"], preexec_fn=drop_dac_override, check=False,
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"running as root without CAP_SETPCAP: {allowances.READ_ONLY_AS_ROOT}")
    return drop_dac_override



def no_face_image() -> Image.Image:
    """A smooth colour gradient: a photo-sized image with nothing face-like in it."""
    y, x = np.mgrid[0:300, 0:400]
    rgb = np.stack([x * 255 // 400, y * 255 // 300, np.full_like(x, 120)], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8))


CROWD_TILES = 25
CROWD_CELL = 240


def crowd_image() -> Image.Image:
    """25 real face crops (``reference/reference.npz``, the original graph's inputs) on a grid."""
    reference = real_file("reference/reference.npz", "run `nox -s recover` first")
    with np.load(reference, allow_pickle=False) as data:
        crops = data["crops"]
    side = 5 * CROWD_CELL
    grid = Image.new("RGB", (side, side), (128, 128, 128))
    step = len(crops) // CROWD_TILES
    for tile in range(CROWD_TILES):
        x, y = (tile % 5) * CROWD_CELL + 40, (tile // 5) * CROWD_CELL + 40
        grid.paste(Image.fromarray(crops[tile * step]), (x, y))
    return grid


# --------------------------------------------------------------------------------------------
# The refused cases
# --------------------------------------------------------------------------------------------

Command = Callable[[], subprocess.CompletedProcess[str]]
"""A case's command; it runs after the workspace has been snapshotted."""


@dataclass(frozen=True)
class Outcome:
    """What a refused case expects (see :func:`assert_refused`)."""

    code: int
    names: str
    phrases: tuple[str, ...]
    strict: bool = True
    sentinel: Path | None = None


Setup = Callable[[Workspace, "Store | None"], tuple[Command, Outcome]]


@dataclass(frozen=True)
class Case:
    """A bad input: ``setup(ws, store)`` builds it and returns the command and what to expect."""

    needs: str
    """``none``, ``models`` (exported ONNX + real photos) or ``legacy`` (legacy env python)."""
    setup: Setup


CASES: dict[str, Case] = {}


def case(name: str, needs: str = "none") -> Callable[[Setup], Setup]:
    def register(setup: Setup) -> Setup:
        assert name not in CASES, name
        CASES[name] = Case(needs, setup)
        return setup

    return register


def tiny(ws: Workspace, name: str = "model.h5", **kwargs: Any) -> Path:
    path = ws.inputs / name
    write_legacy_h5(path, **kwargs)
    return path


def broken_h5(ws: Workspace, variant: str) -> tuple[Path, str]:
    path = tiny(ws, f"{variant}.h5")
    mutate, phrase = BAD_H5[variant]
    mutate(path)
    return path, phrase


def other_lambda(source: str) -> list[Any]:
    return [lambda_b64(source), None, None]


def garbage_lambda() -> list[Any]:
    return [base64.encodebytes(bytes(range(7, 250, 3))).decode("ascii"), None, None]



# ---- running a case ----

def _store_for(needs: str, request: pytest.FixtureRequest) -> Store | None:
    if needs == "legacy":
        python = os.environ.get("FACENET_LEGACY_PYTHON", "")
        if not python or not Path(python).is_file():
            pytest.skip("FACENET_LEGACY_PYTHON (the legacy Keras 2.15 env) is not set")
    if needs == "models":
        store: Store = request.getfixturevalue("store")
        return store
    return None


def diff(before: dict[str, str], after: dict[str, str]) -> list[str]:
    keys = sorted(set(before) | set(after))
    return [f"{k}: {before.get(k, 'absent')} -> {after.get(k, 'absent')}" for k in keys
            if before.get(k) != after.get(k)]


MARKS = {"none": [], "models": [pytest.mark.real], "weights": [pytest.mark.real],
         "legacy": [pytest.mark.legacy]}
"""The marks of a case by what it needs: the real models (and the gallery store), the recovered
weights, the legacy environment; a case that needs nothing runs in the fast lane."""
