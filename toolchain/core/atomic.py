"""Atomic writes: everything goes to a temporary sibling first and is renamed into place.

The rule for what may be replaced (:func:`destination`), applied by every writer here:

- A destination that does not exist is created; an existing regular file (for
  :func:`atomic_dir`: an existing directory) is replaced whole, keeping its permission bits.
  A hard-linked file gets a new inode: its other names keep the old content.
- Anything else that exists is refused with :class:`~toolchain.core.errors.InputError` (exit 3, one
  line naming the path and what it is) before anything is written: a device node, a FIFO, a
  socket, or a directory where a file is wanted (a regular file where a directory is wanted).
  Renaming over ``/dev/full`` would replace the device node with a regular file and report
  success; writing into a FIFO would block on a reader.
- A symbolic link is followed: the temporary file is made next to the link's fully resolved
  target and renamed over the target, so the link stays a link and now points at the new
  content (a user's ``export.json -> ~/shared/export.json`` keeps working). A dangling link, a
  link loop, or a link to anything but a regular file (a directory for :func:`atomic_dir`) is
  refused like the file itself.

The destination is checked when the write starts (nothing is written for a refused one) and
again just before the rename, so a special file that appears in between is not replaced either.

Pure standard library, so the legacy environment can use it too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from toolchain.core.errors import InputError

_KINDS: tuple[tuple[Callable[[int], bool], str], ...] = (
    (stat.S_ISREG, "regular file"),
    (stat.S_ISDIR, "directory"),
    (stat.S_ISLNK, "symbolic link"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISSOCK, "socket"),
)


def file_kind(mode: int) -> str:
    """What an ``st_mode`` describes, in words (``"character device"``, ``"socket"``, ...)."""
    return next((name for test, name in _KINDS if test(mode)), "special file")


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _require_replaceable(path: Path, directory: bool) -> os.stat_result | None:
    """``path``'s own ``lstat`` (``None``: absent) if it is the wanted kind; refuse otherwise."""
    info = _lstat(path)
    expected = "directory" if directory else "regular file"
    if info is not None and file_kind(info.st_mode) != expected:
        raise InputError(f"{path} is a {file_kind(info.st_mode)}, not a {expected}: "
                         "refusing to write over it")
    return info


def destination(final: Path, *, directory: bool = False) -> Path:
    """The path an atomic write of ``final`` renames over (see the module docstring).

    Args:
        final: The path the caller was asked to write.
        directory: The write produces a directory (:func:`atomic_dir`) rather than a file.

    Returns:
        ``final`` itself, or the resolved target when ``final`` is a symbolic link.

    Raises:
        InputError: ``final`` (or what its link points at) exists and is not a regular file
            (a directory), or is a dangling or looping link.
    """
    final = Path(final)
    info = _lstat(final)
    if info is None or not stat.S_ISLNK(info.st_mode):
        _require_replaceable(final, directory)
        return final
    target = Path(os.path.realpath(final))
    expected = "directory" if directory else "regular file"
    try:
        resolved = os.stat(final)
    except FileNotFoundError:
        raise InputError(f"{final} is a dangling symbolic link (to {os.readlink(final)}): "
                         "refusing to write through it; remove it or name another file"
                         ) from None
    except OSError as exc:
        raise InputError(f"{final} is a symbolic link that cannot be followed "
                         f"({exc.strerror or exc}): refusing to write through it") from exc
    if file_kind(resolved.st_mode) != expected:
        raise InputError(f"{final} is a symbolic link to a {file_kind(resolved.st_mode)} "
                         f"({target}), not to a {expected}: refusing to write through it")
    return target


def _default_mode(directory: bool) -> int:
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def _mode_for(existing: os.stat_result | None, directory: bool) -> int:
    return stat.S_IMODE(existing.st_mode) if existing else _default_mode(directory)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(Path(dirpath) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


@contextlib.contextmanager
def atomic_file(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; on success fsync it and rename it over ``final``.

    On any exception the temporary file is removed and ``final`` is left untouched. ``final``
    follows the rule of :func:`destination` (a symlink is written through; a special file is
    refused before anything is written).

    Raises:
        InputError: ``final`` is not something a file may replace.
    """
    final = destination(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        existing = _require_replaceable(final, directory=False)
        tmp.chmod(_mode_for(existing, directory=False))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temporary directory next to ``final``; on success it replaces ``final``.

    The previous ``final`` (if any) is kept until the new one is in place, so a failure at any
    point leaves either the old or the new directory, never a mix. ``final`` follows the rule of
    :func:`destination` with ``directory=True``.

    Raises:
        InputError: ``final`` is not something a directory may replace.
    """
    final = destination(final, directory=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    try:
        yield tmp
        _fsync_tree(tmp)
        existing = _require_replaceable(final, directory=True)
        tmp.chmod(_mode_for(existing, directory=True))
        if existing is not None:
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def write_bytes(final: Path, data: bytes) -> None:
    """Write ``data`` to ``final`` atomically."""
    with atomic_file(final) as tmp:
        tmp.write_bytes(data)


def write_text(final: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``final`` atomically."""
    write_bytes(final, text.encode("utf-8"))


def write_json(final: Path, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON to ``final`` atomically."""
    write_text(final, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Return the hex sha256 of a regular file (links followed), read in chunks.

    Opened without blocking and checked before anything is read: a FIFO would wait for a writer
    forever and a device like ``/dev/zero`` never ends.

    Raises:
        InputError: ``path`` is a FIFO, socket, device or directory.
    """
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise InputError(f"{path} is a {file_kind(mode)}, not a regular file: not reading it")
    with open(fd, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
