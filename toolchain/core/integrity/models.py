"""The models: SavedModel export stamps against the weights manifest, ONNX Runtime's
optimized-graph caches against their sidecar, and :func:`verify_file`, the check of a model or
weights file against ``SHA256SUMS`` before it is loaded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath

from toolchain.core.atomic import sha256_file
from toolchain.core.errors import InputError, IntegrityError, MissingArtifactError
from toolchain.core.integrity.digests import remembered_sha256
from toolchain.core.integrity.sums import (
    CACHE_SUFFIXES,
    SUMS_NAME,
    Hashes,
    format_sums,
    is_tracked,
    not_regular,
    read_sums,
    regenerate_hint,
    relative_to_tree,
    walk_files,
)
from toolchain.core.paths import Layout

EXPORT_STAMP = PurePosixPath("assets.extra") / "facenet_export.json"
"""The record a SavedModel carries of the weights manifest it was built from
(``toolchain.convert.exporters.STAMP_FILE``)."""


def check_models(layout: Layout, hashes: Hashes | None = None) -> tuple[int, list[str]]:
    """Every SavedModel under ``models/`` was built from the current weights manifest."""
    hashes = hashes or Hashes()
    good = 0
    problems: list[str] = []
    manifest = hashes(layout.manifest) if not_regular(layout.manifest) is None else None
    stamps = sorted(layout.models_dir.glob(f"*/{EXPORT_STAMP}")) if manifest else []
    for stamp in stamps:
        model = stamp.parent.parent
        try:
            recorded = json.loads(stamp.read_text(encoding="utf-8")).get("manifest_sha256")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
            problems.append(f"{stamp}: unreadable export stamp ({exc}); "
                            f"{regenerate_hint('models/')}")
            continue
        if recorded != manifest:
            problems.append(f"{model}: built from weights manifest sha256 {str(recorded)[:16]}…, "
                            f"{layout.manifest} is {str(manifest)[:16]}… (stale); "
                            f"{regenerate_hint('models/')}")
        else:
            good += 1
    return good, problems


def check_caches(layout: Layout, hashes: Hashes | None = None) -> tuple[int, list[str]]:
    """ONNX Runtime optimized-graph caches (beside the models and the model pack's) whose
    sidecar records their sha256 still match it."""
    hashes = hashes or Hashes()
    good = 0
    problems: list[str] = []
    sidecars = [path for folder in (layout.models_dir, layout.pack_dir)
                for path in sorted(folder.glob(f"*{CACHE_SUFFIXES[1]}"))]
    for sidecar in sidecars:
        cache = sidecar.with_name(sidecar.name.removesuffix(".json"))
        try:
            recorded = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            problems.append(f"{sidecar}: unreadable cache record ({exc})")
            continue
        if not isinstance(recorded, dict):
            continue
        files = ((cache, recorded.get("optimized_sha256")),
                 (cache.with_name(cache.name + ".data"), recorded.get("data_sha256")))
        checked = [(path, digest) for path, digest in files
                   if digest is not None and path.is_file()]
        bad = [path for path, digest in checked if hashes(path) != digest]
        for path in bad:
            problems.append(f"{path}: sha256 does not match {sidecar.name} (corrupt cache; "
                            "delete it, the next session rebuilds it)")
        if checked and not bad:
            good += 1
    return good, problems


def verify_file(path: Path, layout: Layout, *, remembered: bool = False) -> str:
    """Check a model or weights file against ``SHA256SUMS`` before it is loaded.

    ``remembered``: take each file's digest from :func:`~toolchain.core.integrity.digests.
    remembered_sha256` (a loader's check at every start; the digest is still compared with
    ``SHA256SUMS``), instead of reading every byte.

    Not checked: files outside the artifacts tree (a user's own model), files ``SHA256SUMS`` does
    not cover (``source/``, pinned in :mod:`toolchain.core.source`; the gallery; caches), and trees
    without ``SHA256SUMS`` yet (before the main job ends). A directory (a SavedModel) has each
    file under it checked.

    Returns:
        The file's sha256 (for a directory: sha256 of its ``SHA256SUMS`` lines), so a caller that
        fingerprints the file need not read it twice.

    Raises:
        MissingArtifactError: ``path`` does not exist.
        InputError: it (or a file under it) is a FIFO, socket or device, never read.
        IntegrityError: it does not match ``SHA256SUMS`` or is not listed there; the message
            names the nox session that regenerates it.
    """
    path = Path(path)
    if not path.exists():
        raise MissingArtifactError(f"{path} is missing; create it with `nox`")
    rel = relative_to_tree(path, layout.root)
    entries = read_sums(layout) if rel is not None and is_tracked(rel) else None
    files = [(rel or path.name, path)] if not path.is_dir() else [
        (f"{rel}/{sub}" if rel else sub, file) for sub, file in walk_files(path)
    ]
    for _name, file in files:
        if (kind := not_regular(file)) is not None:
            raise InputError(f"refusing to load {file}: {kind}")
    hash_file = remembered_sha256 if remembered else sha256_file
    digests = {name: hash_file(file) for name, file in files}
    if entries is not None:
        problems = []
        for name, digest in digests.items():
            if not is_tracked(name):
                continue
            if name not in entries:
                problems.append(f"{layout.root / name}: not listed in {SUMS_NAME}")
            elif entries[name] != digest:
                problems.append(f"{layout.root / name}: sha256 does not match {SUMS_NAME} "
                                "(changed since it was recorded: tampered, damaged or made "
                                "outside the toolchain)")
        if problems:
            raise IntegrityError(f"refusing to load {path}: " + "; ".join(problems)
                                 + f"; {regenerate_hint(rel or '')}")
    if path.is_file():
        return next(iter(digests.values()))
    return hashlib.sha256(format_sums(digests).encode()).hexdigest()
