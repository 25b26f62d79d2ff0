"""Writing a model pack (:mod:`toolchain.runtime.pack`): the end of ``facenet model export`` writes
``artifacts/pack``, and :func:`write_pack` a pack anywhere, of every model or of a few.

A pack is written from a :class:`~toolchain.runtime.pack.ModelSource`: the artifacts' models
folder (each file checked against ``SHA256SUMS`` first, so a tampered model is never packed) or
another pack (checked against its manifest: a slimmer pack made from a full one). Each FaceNet
model going in is loaded once on its runtime (without the graph optimizations: only its metadata
and shapes are wanted) and the facts the manifest states are read from it; every model of a pack
must state the same (weights fingerprint, default threshold, crop): a model left behind by an
older export is left out (when the runs are not named) or refused (when they are).

Files are hard links to the source's where the filesystem allows (no second copy of 90 MB on
disk), copies otherwise; a re-export writes new files, never into these. The pack is made in a
temporary sibling folder, checked there against the manifest just written (every file hashed
again: a link that now points at other bytes, or a bad copy, is caught), and only then renamed
into place (:func:`toolchain.core.atomic.atomic_dir`): an interrupted write leaves the old pack.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from toolchain.core.atomic import atomic_dir, write_json
from toolchain.core.errors import InputError, IntegrityError, MissingArtifactError
from toolchain.core.version import __version__
from toolchain.runtime.backends import PRECISIONS, RUNTIMES, ModelChoice
from toolchain.runtime.embedder import Embedder
from toolchain.runtime.ort_options import OrtSettings
from toolchain.runtime.pack import (
    ALL_RUNS,
    PACK_FORMAT,
    PACK_MANIFEST,
    ModelSource,
    describe,
    model_facts,
    parse_manifest,
)

log = logging.getLogger(__name__)

PACK_FAMILY = PACK_FORMAT.rsplit("/", 1)[0] + "/"
"""The prefix of every version's manifest format: a folder whose manifest has it may be replaced."""

PROBE_SETTINGS = OrtSettings(graph_optimization="disabled", cache_optimized=False)
"""How a model going into a pack is loaded to read its facts: no optimization (only metadata and
shapes are read), no optimized-graph cache left beside it."""


@dataclass(frozen=True)
class PackSummary:
    """A pack just written.

    Attributes:
        path: Its folder.
        runs: The (runtime, precision) pairs it runs.
        files: Its model files (the manifest aside).
        size_bytes: Their total size.
        linked: How many are hard links to the source's files (the others are copies).
        left_out: One line per pair of the source left out, and why.
    """

    path: Path
    runs: tuple[ModelChoice, ...]
    files: int
    size_bytes: int
    linked: int
    left_out: tuple[str, ...] = ()


def select_runs(runtimes: Sequence[str] = (), precisions: Sequence[str] = ()
                ) -> list[ModelChoice] | None:
    """The pairs named by repeatable ``--runtime`` / ``--precision`` options: every named runtime
    at every named precision (one kind unnamed: all of it); nothing named: ``None``, every pair
    the source holds.

    Raises:
        InputError: an unknown runtime or precision.
    """
    if not runtimes and not precisions:
        return None
    try:
        return [ModelChoice(runtime, precision)  # type: ignore[arg-type]
                for runtime in dict.fromkeys(runtimes or RUNTIMES)
                for precision in dict.fromkeys(precisions or PRECISIONS)]
    except ValueError as exc:
        raise InputError(str(exc)) from exc


def _check_target(out: Path) -> None:
    """Refuse to replace a folder that is not empty and not a model pack: the pack replaces its
    target whole (``--out ~`` must never remove a home folder).

    Raises:
        InputError: ``out`` holds something else than a pack.
    """
    if not out.is_dir() or not any(out.iterdir()):
        return
    try:
        found = json.loads((out / PACK_MANIFEST).read_text(encoding="utf-8")).get("format")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        found = None
    if not (isinstance(found, str) and found.startswith(PACK_FAMILY)):
        raise InputError(f"{out} is a folder that is not a model pack: refusing to replace it "
                         "(name a new or empty folder, or an existing pack)")


def _place(source: Path, target: Path, link: bool) -> bool:
    """Hard-link ``source`` at ``target`` (links followed) if ``link`` and the filesystem allows,
    else copy it; whether it was linked."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(source, target)
            return True
        except OSError as exc:  # another filesystem, or one without hard links
            log.debug("cannot hard-link %s (%s): copying it", source, exc)
    shutil.copyfile(source, target)
    return False


def _facts(source: ModelSource, wanted: list[ModelChoice]
           ) -> tuple[dict[ModelChoice, dict[str, Any]], dict[ModelChoice, dict[str, str]]]:
    """Each pair's model facts and file digests (every file checked by ``source`` first)."""
    facts: dict[ModelChoice, dict[str, Any]] = {}
    digests: dict[ModelChoice, dict[str, str]] = {}
    for choice in wanted:
        digests[choice] = source.verify(choice)
        embedder = Embedder(source.root / choice.embedder_file, runtime=choice.runtime,
                            export_hint=choice.export_hint, settings=PROBE_SETTINGS,
                            sha256=digests[choice].get(choice.embedder_file))
        source.check_model(embedder)
        facts[choice] = model_facts(embedder)
    return facts, digests


def write_pack(source: ModelSource, out: Path, runs: Sequence[ModelChoice] | None = None, *,
               link: bool = True, made_by: str = "toolchain.runtime.pack_writer.write_pack"
               ) -> PackSummary:
    """Write a model pack of ``source``'s models at ``out`` (atomically; an existing pack there is
    replaced whole).

    Args:
        source: Where the models come from (:class:`~toolchain.runtime.pack.ArtifactModels` of an
            artifacts tree, or an opened :class:`~toolchain.runtime.pack.ModelPack`).
        out: The pack's folder.
        runs: The (runtime, precision) pairs to hold (:func:`select_runs`); ``None``: every pair
            the source holds whose model agrees with the first one's facts.
        link: Hard-link the files where possible (else copy them).
        made_by: What wrote it, recorded in the manifest (e.g. ``facenet model export``).

    Raises:
        MissingArtifactError: the source holds no pair, or not one of ``runs`` (the message names
            the command that exports it).
        IntegrityError: a source file fails its check, or the models of ``runs`` disagree.
        InputError: ``out`` is a folder that holds something else than a pack.
        EnvironmentToolError: a runtime of ``runs`` is not installed.
    """
    out = Path(out)
    _check_target(out)
    held = source.runs
    wanted = list(dict.fromkeys(runs)) if runs is not None else list(held)
    absent = [choice for choice in wanted if choice not in held]
    if absent:
        raise MissingArtifactError(
            f"{source.root} holds no {describe(absent)} model (it holds {describe(held)}); "
            + "; ".join(f"`{choice.export_hint}` exports {choice.runtime} {choice.precision}"
                        for choice in absent))
    if not wanted:
        raise MissingArtifactError(f"{source.root} holds no FaceNet model with the three MTCNN "
                                   "nets; export them with `nox -s export`")
    facts, digests = _facts(source, wanted)
    first = facts[wanted[0]]
    differ = {choice: sorted(k for k in first if facts[choice].get(k) != first[k])
              for choice in wanted}
    left_out = tuple(f"{c.runtime} {c.precision}: {c.embedder_file} states another "
                     f"{', '.join(keys)} than {wanted[0].embedder_file} (an older export; "
                     f"`{c.export_hint}` makes it again)" for c, keys in differ.items() if keys)
    if left_out and runs is not None:
        raise IntegrityError(f"the models of {source.root} are not one export: "
                             + "; ".join(left_out))
    for line in left_out:
        log.warning("left out of the pack: %s", line)
    kept = tuple(choice for choice in ALL_RUNS if choice in wanted and not differ[choice])
    files = {rel: digest for choice in kept for rel, digest in digests[choice].items()}
    manifest: dict[str, Any] = {
        "format": PACK_FORMAT,
        "toolchain_version": __version__,
        "made": {"at": datetime.now(UTC).isoformat(timespec="seconds"), "by": made_by,
                 "from": os.path.abspath(source.root)},
        "model": first,
        "runs": [{"runtime": c.runtime, "precision": c.precision, "embedder": c.embedder_file}
                 for c in kept],
        "files": {rel: {"sha256": files[rel], "size": (source.root / rel).stat().st_size}
                  for rel in sorted(files)},
    }
    linked = 0
    with atomic_dir(out) as tmp:
        for rel in sorted(files):
            linked += _place(source.root / rel, tmp / rel, link)
        write_json(tmp / PACK_MANIFEST, manifest)
        written = parse_manifest(tmp, manifest)
        for choice in kept:
            written.verify(choice)
    size = sum(record["size"] for record in manifest["files"].values())
    log.info("wrote the model pack %s: %s, %d files, %.1f MB (%d hard links)", out,
             describe(kept), len(files), size / 1e6, linked)
    return PackSummary(out, kept, len(files), size, linked, left_out)
