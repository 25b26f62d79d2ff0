"""Atomic writes leave either the old or the new content, never a mix or a temp file; they
replace only regular files (directories for ``atomic_dir``) and write through symlinks."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers.allowances import MKNOD_NEEDS_ROOT, mknod_needs_root
from helpers.cli import facenet

from toolchain.core.atomic import atomic_dir, atomic_file, sha256_file, write_bytes, write_json
from toolchain.core.errors import InputError
from toolchain.gallery import open_gallery

ROOT = Path(__file__).resolve().parents[1]


def test_atomic_file_replaces_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with atomic_file(target) as tmp:
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_atomic_file_keeps_old_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_atomic_dir_swaps_whole_tree(tmp_path: Path) -> None:
    target = tmp_path / "tree"
    target.mkdir()
    (target / "stale.txt").write_text("stale")
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("a")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    with pytest.raises(ValueError), atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("b")
        raise ValueError("boom")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree"]


def test_write_json_is_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_json(a, {"z": 1, "a": [1, 2]})
    write_json(b, {"a": [1, 2], "z": 1})
    assert sha256_file(a) == sha256_file(b)


# ---- what may be replaced: special files are refused, links are written through ----

def make_special(path: Path, kind: str) -> Callable[[], bool]:
    """Create a ``kind`` node at ``path``; return a check that it is still that node."""
    if kind == "character device":
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 7))  # what /dev/full is
        return lambda: stat.S_ISCHR(path.lstat().st_mode) and path.lstat().st_rdev == \
            os.makedev(1, 7)
    if kind == "FIFO":
        os.mkfifo(path)
        return lambda: stat.S_ISFIFO(path.lstat().st_mode)
    if kind == "socket":
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(path))
        return lambda: stat.S_ISSOCK(path.lstat().st_mode)
    if kind == "regular file":
        path.write_text("a file")
        return lambda: path.read_text() == "a file"
    path.mkdir()
    (path / "keep.txt").write_text("kept")
    return lambda: (path / "keep.txt").read_text() == "kept"


SPECIAL = ("character device", "FIFO", "socket", "directory")


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@mknod_needs_root
@pytest.mark.skipif(os.geteuid() != 0, reason=MKNOD_NEEDS_ROOT)
@pytest.mark.parametrize("kind", SPECIAL)
def test_atomic_file_refuses_a_special_destination(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "out"
    intact = make_special(target, kind)
    with pytest.raises(InputError, match=rf"^{re.escape(str(target))} is a {kind}, not a "
                                         r"regular file: refusing to write over it$"):
        write_json(target, {"never": "written"})
    assert intact() and names(tmp_path) == ["out"]


@mknod_needs_root
@pytest.mark.skipif(os.geteuid() != 0, reason=MKNOD_NEEDS_ROOT)
@pytest.mark.parametrize("kind", ("character device", "socket", "regular file"))
def test_atomic_dir_refuses_a_non_directory_destination(tmp_path: Path, kind: str) -> None:
    """(A FIFO is left out: the replaced code hung opening one in its cleanup.)"""
    target = tmp_path / "tree"
    intact = make_special(target, kind)
    with pytest.raises(InputError, match=rf"is a {kind}, not a directory"), \
            atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("a")
    assert intact() and names(tmp_path) == ["tree"]


def test_special_file_appearing_during_the_write_is_not_replaced(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    with pytest.raises(InputError, match="is a FIFO"), atomic_file(target) as tmp:
        tmp.write_bytes(b"new")
        os.mkfifo(target)
    assert stat.S_ISFIFO(target.lstat().st_mode) and names(tmp_path) == ["out.json"]


def test_atomic_file_writes_through_a_symlink_to_its_target(tmp_path: Path) -> None:
    """The link stays a link, the target gets the new bytes and keeps its mode; the temporary
    file is made next to the target (another directory), so the rename stays atomic."""
    real_dir, link_dir = tmp_path / "real", tmp_path / "links"
    real_dir.mkdir()
    link_dir.mkdir()
    target = real_dir / "export.json"
    target.write_text("old")
    target.chmod(0o640)
    link = link_dir / "export.json"
    link.symlink_to(Path("..") / "real" / "export.json")
    chain = link_dir / "chain.json"
    chain.symlink_to("export.json")

    write_json(chain, {"new": 1})

    assert link.is_symlink() and chain.is_symlink()
    assert os.readlink(link) == str(Path("..") / "real" / "export.json")
    assert json.loads(target.read_text()) == {"new": 1}
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert names(real_dir) == ["export.json"] and names(link_dir) == ["chain.json", "export.json"]


@pytest.mark.parametrize("variant", ("dangling", "loop", "to-fifo", "to-directory"))
def test_atomic_file_refuses_links_it_cannot_write_through(tmp_path: Path, variant: str) -> None:
    link = tmp_path / "out.json"
    phrase = {
        "dangling": "is a dangling symbolic link (to missing.json)",
        "loop": "is a symbolic link that cannot be followed",
        "to-fifo": f"is a symbolic link to a FIFO ({tmp_path / 'pipe'}), not to a regular file",
        "to-directory": "is a symbolic link to a directory",
    }[variant]
    if variant == "to-fifo":
        os.mkfifo(tmp_path / "pipe")
        link.symlink_to("pipe")
    elif variant == "to-directory":
        (tmp_path / "pipe").mkdir()
        link.symlink_to("pipe")
    else:
        link.symlink_to({"dangling": "missing.json", "loop": "out.json"}[variant])
    before = names(tmp_path)
    with pytest.raises(InputError, match=re.escape(f"{link} {phrase}")):
        write_bytes(link, b"never written")
    assert names(tmp_path) == before and link.is_symlink()


def test_atomic_dir_replaces_the_target_of_a_symlinked_directory(tmp_path: Path) -> None:
    real = tmp_path / "real_tree"
    real.mkdir()
    (real / "stale.txt").write_text("stale")
    link = tmp_path / "tree"
    link.symlink_to("real_tree")
    with atomic_dir(link) as tmp:
        (tmp / "a.txt").write_text("a")
    assert link.is_symlink() and names(real) == ["a.txt"]
    assert names(tmp_path) == ["real_tree", "tree"]


def test_gallery_export_writes_through_a_symlink(tmp_path: Path) -> None:
    """On the command line: ``gallery export LINK`` updates the file the link points at."""
    from toolchain.gallery import Entry

    gallery = tmp_path / "g.db"
    with open_gallery(gallery, fingerprint="e" * 64, create=True) as opened:
        opened.add([Entry("Ada", np.full(128, 128 ** -0.5, np.float32), "a.jpg", "a" * 64,
                          (0, 0, 9, 9))])
    target = tmp_path / "shared.json"
    target.write_text("old")
    link = tmp_path / "export.json"
    link.symlink_to(target)
    proc = facenet("gallery", "export", link, "--gallery", gallery)
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and json.loads(target.read_text())["people"][0]["name"] == "Ada"


@mknod_needs_root
@pytest.mark.skipif(os.geteuid() != 0, reason=MKNOD_NEEDS_ROOT)
@pytest.mark.parametrize("kind", ("character device", "FIFO", "directory"))
def test_sha256_file_reads_only_regular_files(tmp_path: Path, kind: str) -> None:
    """Before: a FIFO blocked on open and a device like ``/dev/full`` was read for ever."""
    node = tmp_path / "model.onnx"
    make_special(node, kind)
    link = tmp_path / "link.onnx"
    link.symlink_to(node)
    for path in (node, link):
        with pytest.raises(InputError, match=f"is a {kind}, not a regular file"):
            sha256_file(path)
