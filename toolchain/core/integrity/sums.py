"""``artifacts/SHA256SUMS``: which files it lists, its ``sha256sum`` format, reading, checking and
updating it.

A path is listed when it is a generated file inside the tree (:func:`is_tracked`); an entry that is
absolute or has a ``..``, ``.`` or empty component is refused, never hashed, and only regular files
are read. Writers serialize on a lock of the artifacts directory (:func:`sums_lock`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from toolchain.core.atomic import file_kind, sha256_file, write_text
from toolchain.core.errors import IntegrityError
from toolchain.core.paths import Layout

SUMS_NAME = "SHA256SUMS"
"""The checksum file at the root of the artifacts tree."""

CHECKSUMS_HINT = "run `facenet model checksums` (or `nox -s checksums`) to create it"

GUARDED_DIRS = ("weights", "reference", "models", "pack")
"""Top-level directories of files the toolchain loads: ``facenet model checksums`` refuses to
record a new sha256 for a file of these that its existing ``SHA256SUMS`` entry says was changed."""

_MADE_BY = (
    ("weights/", "nox -s recover"),
    ("reference/", "nox -s recover"),
    ("models/", "nox -s export"),
    ("pack/", "nox -s export"),
    ("reports/export.json", "nox -s export"),
    ("reports/parity.", "nox -s parity"),
    ("reports/evaluate", "nox -s demo"),
    ("reports/annotated/", "nox -s demo"),
    ("reports/video/", "nox -s demo"),
    ("reports/bench.", "nox -s bench"),
    ("reports/int8_variants", "nox -s bench"),
)
"""Which nox session writes a generated file (``artifacts/README.md``), by path prefix."""

UNTRACKED_ROOT_FILES = frozenset({SUMS_NAME, "README.md", ".gitignore"})
"""Files at the artifacts root that are not generated (committed) or are the sums themselves."""

PINNED_DIRS = frozenset({"source"})
"""Top-level directories whose files are pinned in :mod:`toolchain.core.source` instead."""

GALLERY_SUFFIXES = tuple(f".db{suffix}" for suffix in ("", "-wal", "-shm", "-journal"))
"""Galleries and SQLite's sidecar files: user data, never listed in ``SHA256SUMS``."""

CACHE_SUFFIXES = (".optimized", ".optimized.json", ".optimized.data")
"""ONNX Runtime optimized-graph caches (machine-specific, rebuilt on demand)."""

_SUMS_LINE = re.compile(r"^(\\?)([0-9a-f]{64}) [ *](.+)$")


class Hashes:
    """sha256 of files, each read once per run."""

    def __init__(self) -> None:
        self._done: dict[Path, str] = {}

    def __call__(self, path: Path) -> str:
        key = path.resolve()
        if key not in self._done:
            self._done[key] = sha256_file(path)
        return self._done[key]


def sums_path(layout: Layout) -> Path:
    """``<artifacts>/SHA256SUMS``."""
    return layout.root / SUMS_NAME


def relative_to_tree(path: Path, root: Path) -> str | None:
    """``path`` relative to ``root`` as a POSIX string, or ``None`` when it is outside."""
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).as_posix()
    except ValueError:
        return None


def regenerate_hint(rel: str) -> str:
    """How to regenerate the generated file at relative POSIX path ``rel``."""
    session = next((session for prefix, session in _MADE_BY if rel.startswith(prefix)), None)
    if session is None:
        return "regenerate it with the nox session that makes it (see artifacts/README.md)"
    return f"regenerate it with `{session}`"


def outside_tree(rel: str) -> bool:
    """Whether a ``SHA256SUMS`` path is not a plain relative path inside the tree: absolute, or
    with a ``..``, ``.`` or empty component."""
    return rel.startswith("/") or any(part in ("", ".", "..") for part in rel.split("/"))


def is_tracked(rel: str) -> bool:
    """Whether the file at relative POSIX path ``rel`` belongs in ``SHA256SUMS``."""
    if outside_tree(rel):
        return False
    parts = PurePosixPath(rel).parts
    if any(part.startswith(".") for part in parts):
        return False
    if len(parts) == 1 and parts[0] in UNTRACKED_ROOT_FILES:
        return False
    return not (parts[0] in PINNED_DIRS or parts[-1].endswith((*CACHE_SUFFIXES,
                                                               *GALLERY_SUFFIXES)))


def not_regular(path: Path) -> str | None:
    """What ``path`` is when it is not a regular file (links followed), else ``None``."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    return None if stat.S_ISREG(mode) else f"a {file_kind(mode)}, not a regular file"


def walk_files(root: Path) -> Iterator[tuple[str, Path]]:
    """Every file under ``root`` (links followed) as (relative POSIX path, path), sorted."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            yield path.relative_to(root).as_posix(), path


def tracked_files(layout: Layout) -> list[str]:
    """Relative paths of every generated file that ``SHA256SUMS`` lists, sorted."""
    if not layout.root.is_dir():
        return []
    return sorted(rel for rel, _ in walk_files(layout.root) if is_tracked(rel))


def leftovers(layout: Layout) -> list[str]:
    """Relative paths of the hidden temp files an interrupted atomic write left behind."""
    return sorted(
        rel
        for rel, _ in walk_files(layout.root)
        if PurePosixPath(rel).name.startswith(".")
        and (PurePosixPath(rel).name.endswith(".tmp") or ".old-" in PurePosixPath(rel).name)
    )


def _escape(rel: str) -> tuple[str, str]:
    if "\\" in rel or "\n" in rel:
        return "\\", rel.replace("\\", "\\\\").replace("\n", "\\n")
    return "", rel


def _unescape(rel: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), rel)


def format_sums(entries: dict[str, str]) -> str:
    """``sha256sum`` text of ``entries`` (relative path -> hex digest), sorted by path."""
    lines = []
    for rel in sorted(entries):
        prefix, name = _escape(rel)
        lines.append(f"{prefix}{entries[rel]}  {name}\n")
    return "".join(lines)


def parse_sums(text: str, source: Path) -> tuple[dict[str, str], list[str]]:
    """Parse ``sha256sum`` text.

    Returns:
        The entries (relative path -> hex digest) and one problem line per malformed or repeated
        line.
    """
    entries: dict[str, str] = {}
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _SUMS_LINE.match(line)
        if match is None:
            problems.append(f"{source}: line {number} is not `<sha256>  <path>`")
            continue
        escaped, digest, name = match.groups()
        rel = _unescape(name) if escaped else name
        if rel in entries:
            problems.append(f"{source}: line {number} lists {rel} a second time")
            continue
        entries[rel] = digest
    return entries, problems


def read_sums(layout: Layout) -> dict[str, str] | None:
    """The entries of ``SHA256SUMS``, or ``None`` when there is no such file.

    Raises:
        IntegrityError: the file is unreadable or has malformed lines.
    """
    path = sums_path(layout)
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{path}: unreadable ({exc})") from exc
    entries, problems = parse_sums(text, path)
    if problems:
        raise IntegrityError("; ".join(problems))
    return entries


def check_sums(layout: Layout, hashes: Hashes | None = None) -> tuple[int, list[str]]:
    """Every file of ``SHA256SUMS`` matches, and every generated file is listed."""
    hashes = hashes or Hashes()
    path = sums_path(layout)
    if not path.is_file():
        return 0, [f"{path}: missing; {CHECKSUMS_HINT}"]
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return 0, [f"{path}: unreadable ({exc})"]
    entries, problems = parse_sums(text, path)
    good = 0
    for rel, digest in sorted(entries.items()):
        target = layout.root / rel
        if outside_tree(rel):
            problems.append(f"{path}: lists {rel}, a path outside the artifacts tree (only "
                            "relative paths inside it are checked)")
        elif not is_tracked(rel):
            problems.append(f"{path}: lists {rel}, which is not a generated artifact")
        elif (kind := not_regular(target)) is not None:
            problems.append(f"{target}: {kind} (listed in {SUMS_NAME})")
        elif hashes(target) != digest:
            problems.append(f"{target}: sha256 does not match {SUMS_NAME}; "
                            f"{regenerate_hint(rel)}")
        else:
            good += 1
    problems.extend(
        f"{layout.root / rel}: not listed in {SUMS_NAME}"
        for rel in tracked_files(layout)
        if rel not in entries
    )
    return good, problems


@contextlib.contextmanager
def sums_lock(layout: Layout) -> Iterator[None]:
    """Serialize writers of ``SHA256SUMS`` with a lock on the artifacts directory itself."""
    fd = os.open(layout.root, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def record_files(layout: Layout, paths: Iterable[Path]) -> int:
    """Update the ``SHA256SUMS`` entries of files a step just (re)wrote; directories recurse.

    Does nothing when there is no ``SHA256SUMS`` yet (the main job writes it at the end).

    Returns:
        The number of entries written.

    Raises:
        IntegrityError: a path is outside the artifacts tree or is not a generated artifact.
    """
    if not sums_path(layout).is_file():
        return 0
    updates: dict[str, str] = {}
    removed: set[str] = set()
    for path in paths:
        rel = relative_to_tree(path, layout.root)
        if rel is None or rel == "." or not is_tracked(rel):
            raise IntegrityError(f"{path}: not a generated artifact under {layout.root}")
        if Path(path).is_dir():
            removed.add(rel)
            for sub, file in walk_files(Path(path)):
                full = f"{rel}/{sub}"
                if is_tracked(full):
                    updates[full] = sha256_file(file)
        elif Path(path).is_file():
            updates[rel] = sha256_file(Path(path))
        else:
            removed.add(rel)
    with sums_lock(layout):
        entries = read_sums(layout) or {}
        for rel in list(entries):
            if any(rel == gone or rel.startswith(f"{gone}/") for gone in removed):
                del entries[rel]
        entries.update(updates)
        write_text(sums_path(layout), format_sums(entries))
    return len(updates)
