"""The inputs of the conversion: the fetched source files against the hashes pinned in
:mod:`toolchain.core.source`, and the recovered ``weights/<layer>.npz`` against the weights
manifest's ``npz_sha256``."""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any

from toolchain.core.integrity.sums import Hashes
from toolchain.core.paths import Layout


def _manifest_layers(layout: Layout) -> tuple[list[dict[str, Any]] | None, list[str]]:
    manifest = layout.manifest
    if not manifest.is_file():
        return None, [f"{manifest}: missing (run `nox -s recover`)"]
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, [f"{manifest}: not a readable JSON manifest ({exc})"]
    layers = doc.get("layers") if isinstance(doc, dict) else None
    if not isinstance(layers, list) or not all(isinstance(e, dict) for e in layers):
        return None, [f"{manifest}: has no 'layers' list of objects"]
    return layers, []


def check_weights(layout: Layout, hashes: Hashes | None = None) -> tuple[int, list[str]]:
    """Every npz listed in the manifest exists with its ``npz_sha256``; no unlisted npz.

    Returns:
        The number of npz files that match and one problem line per mismatch.
    """
    hashes = hashes or Hashes()
    layers, problems = _manifest_layers(layout)
    if layers is None:
        return 0, problems
    good = 0
    listed: set[str] = set()
    for entry in layers:
        name = entry.get("npz")
        if name is None:
            continue
        layer = entry.get("name", "?")
        if not isinstance(name, str) or PurePosixPath(name).name != name or name.startswith("."):
            problems.append(f"{layout.manifest}: layer {layer} names an npz outside weights/")
            continue
        listed.add(name)
        path = layout.weights_dir / name
        if not path.is_file():
            problems.append(f"{path}: missing (layer {layer})")
        elif hashes(path) != entry.get("npz_sha256"):
            problems.append(f"{path}: sha256 does not match manifest.json (layer {layer})")
        else:
            good += 1
    for path in sorted(layout.weights_dir.glob("*.npz")):
        if path.name not in listed:
            problems.append(f"{path}: not listed in manifest.json")
    return good, problems


def check_source(layout: Layout, hashes: Hashes | None = None) -> tuple[int, list[str]]:
    """The fetched files against the hashes pinned in :mod:`toolchain.core.source`."""
    from toolchain.core import source

    hashes = hashes or Hashes()
    hint = "(run `nox -s fetch`)"
    good = 0
    problems: list[str] = []
    sdist = layout.source_dir / "downloads" / source.SDIST_NAME
    pinned = ((sdist, source.SDIST_SHA256, None), (layout.legacy_h5, source.H5_SHA256,
                                                    source.H5_SIZE))
    for path, digest, size in pinned:
        if not path.is_file():
            problems.append(f"{path}: missing {hint}")
        elif size is not None and path.stat().st_size != size:
            problems.append(f"{path}: {path.stat().st_size} bytes, pinned {size}")
        elif hashes(path) != digest:
            problems.append(f"{path}: sha256 does not match the pinned {digest}")
        else:
            good += 1
    if not layout.dataset_dir.is_dir():
        problems.append(f"{layout.dataset_dir}: missing {hint}")
    else:
        count, digest = source.dataset_digest(layout.dataset_dir)
        if (count, digest) != (source.DATASET_FILES, source.DATASET_DIGEST):
            problems.append(
                f"{layout.dataset_dir}: {count} photos with digest {digest[:16]}…, pinned "
                f"{source.DATASET_FILES} photos with digest {source.DATASET_DIGEST[:16]}…"
            )
        else:
            good += count
    return good, problems
