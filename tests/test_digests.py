"""Remembered model digests (:mod:`toolchain.core.integrity.digests`): reused only for the very
file they were recorded for, unchanged; a flipped byte is still refused."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from toolchain.core.errors import IntegrityError
from toolchain.core.integrity import digests, verify_file, write_checksums
from toolchain.core.integrity.digests import remembered_sha256
from toolchain.core.paths import Layout


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private record folder; files count as settled as soon as they are written."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(digests.CACHE_DIR_ENV, str(folder))
    monkeypatch.delenv(digests.SWITCH_ENV, raising=False)
    monkeypatch.setattr(digests, "SETTLE_SECONDS", 0.0)
    return folder / "digests"


def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the files :func:`remembered_sha256` reads in full from now on."""
    read: list[str] = []
    real = digests.sha256_file

    def counting(path: Path, *args: object) -> str:
        read.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(digests, "sha256_file", counting)
    return read


def flip_in_place(path: Path) -> None:
    """Flip one byte without replacing the file, and set its modification time back."""
    info = path.stat()
    with open(path, "r+b") as fh:
        fh.seek(info.st_size // 2)
        byte = fh.read(1)
        fh.seek(info.st_size // 2)
        fh.write(bytes([byte[0] ^ 1]))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def test_a_settled_file_is_read_once(cache: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"model bytes" * 1000)
    read = counted(monkeypatch)
    want = hashlib.sha256(model.read_bytes()).hexdigest()
    assert remembered_sha256(model) == want
    assert remembered_sha256(model) == want
    assert read == ["m.onnx"]
    (record,) = cache.iterdir()
    assert json.loads(record.read_text())["sha256"] == want


def test_a_byte_flipped_in_place_with_its_mtime_restored_is_read_again(
        cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"model bytes" * 1000)
    before = remembered_sha256(model)
    flip_in_place(model)
    assert model.stat().st_mtime_ns == os.stat(model).st_mtime_ns
    read = counted(monkeypatch)
    assert remembered_sha256(model) == hashlib.sha256(model.read_bytes()).hexdigest() != before
    assert read == ["m.onnx"]


def test_a_replaced_file_is_read_again(cache: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"a" * 4096)
    remembered_sha256(model)
    info = model.stat()
    model.unlink()
    model.write_bytes(b"b" * 4096)
    os.utime(model, ns=(info.st_atime_ns, info.st_mtime_ns))
    read = counted(monkeypatch)
    assert remembered_sha256(model) == hashlib.sha256(b"b" * 4096).hexdigest()
    assert read == ["m.onnx"]


def test_recent_files_are_never_recorded(cache: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(digests, "SETTLE_SECONDS", 3600.0)
    model = tmp_path / "m.onnx"
    model.write_bytes(b"fresh")
    read = counted(monkeypatch)
    remembered_sha256(model)
    remembered_sha256(model)
    assert read == ["m.onnx", "m.onnx"]
    assert not cache.exists()


def test_records_can_be_turned_off(cache: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(digests.SWITCH_ENV, "0")
    model = tmp_path / "m.onnx"
    model.write_bytes(b"model")
    read = counted(monkeypatch)
    remembered_sha256(model)
    remembered_sha256(model)
    assert read == ["m.onnx", "m.onnx"] and not cache.exists()


def test_an_unwritable_record_folder_only_costs_a_hash(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv(digests.CACHE_DIR_ENV, str(blocker))
    monkeypatch.setattr(digests, "SETTLE_SECONDS", 0.0)
    model = tmp_path / "m.onnx"
    model.write_bytes(b"model")
    assert remembered_sha256(model) == hashlib.sha256(b"model").hexdigest()


def test_loading_still_refuses_a_flipped_byte_after_a_remembered_check(
        cache: Path, tmp_path: Path) -> None:
    """The check before a load (``SHA256SUMS`` here, a pack's manifest alike) passes once and
    records the digest; the same file with a byte flipped in place (mtime restored) is refused."""
    layout = Layout(tmp_path / "artifacts")
    layout.models_dir.mkdir(parents=True)
    model = layout.models_dir / "facenet.onnx"
    model.write_bytes(bytes(range(256)) * 64)
    write_checksums(layout)
    digest = verify_file(model, layout, remembered=True)
    assert any(cache.iterdir())
    assert verify_file(model, layout, remembered=True) == digest
    flip_in_place(model)
    with pytest.raises(IntegrityError, match="sha256 does not match SHA256SUMS"):
        verify_file(model, layout, remembered=True)
