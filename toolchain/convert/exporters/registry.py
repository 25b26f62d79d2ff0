"""The export orchestrator: which exporters run, in what order, and what they wrote.

Each format of :data:`toolchain.convert.formats.FORMATS` names its exporter as
``module:function``; the module lives in this package and is imported only when that format is
exported. An exporter writes into a temporary sibling, validates what it wrote and only then
renames it into place, so a failed export never replaces a good file.

A run that wrote a model the runtime loads ends by writing the model pack ``artifacts/pack``
(:func:`write_models_pack`, :mod:`toolchain.runtime.pack_writer`) from every runtime model of
``artifacts/models``, so the pack never lags behind the models it is made of.

Dependencies come from the table's parent chain: a selected format's parent runs first when both
are selected. A parent that is not selected is exported first only when its module defines
``is_current(context) -> bool`` and that says the copy on disk is stale (the SavedModel, which the
ONNX and TFLite converters read); other parents are read from disk as they are.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import toolchain
from toolchain.convert.exporters.context import ExportContext
from toolchain.convert.formats import FORMATS, FormatSpec
from toolchain.convert.parity import disk_size
from toolchain.core.atomic import write_json
from toolchain.core.errors import InputError
from toolchain.core.integrity import record_files
from toolchain.core.paths import Layout

log = logging.getLogger(__name__)

ExportFunc = Callable[[ExportContext, FormatSpec], list[Path]]
"""``export(context, spec) -> written paths`` (atomically written, validated)."""

PACKAGE = "toolchain.convert.exporters"


def _module(spec: FormatSpec) -> Any:
    return importlib.import_module(f"{PACKAGE}.{spec.exporter.partition(':')[0]}")


def exporter(spec: FormatSpec) -> ExportFunc:
    """The export function of ``spec`` (its module is imported here)."""
    func: ExportFunc = getattr(_module(spec), spec.exporter.partition(":")[2])
    return func


def resolve(names: Iterable[str]) -> list[FormatSpec]:
    """The formats for ``--format`` values (``all`` = every ``in_all`` one), parents first.

    Raises:
        InputError: an unknown format.
    """
    wanted: set[str] = set()
    for name in names:
        if name == "all":
            wanted.update(n for n, spec in FORMATS.items() if spec.in_all)
        elif name in FORMATS:
            wanted.add(name)
        else:
            raise InputError(
                f"unknown export format {name!r}; choose from {', '.join([*FORMATS, 'all'])}"
            )
    ordered: list[FormatSpec] = []

    def visit(spec: FormatSpec) -> None:
        if spec in ordered:
            return
        if spec.parent in wanted:
            visit(FORMATS[spec.parent])
        ordered.append(spec)

    for name, spec in FORMATS.items():
        if name in wanted:
            visit(spec)
    return ordered


def stale_parents(context: ExportContext, selected: Sequence[FormatSpec]) -> list[str]:
    """Parents of ``selected`` formats, not selected themselves, whose copy on disk is stale."""
    names = {spec.name for spec in selected}
    stale: list[str] = []
    for spec in selected:
        parent = spec.parent
        if parent is None or parent in names or parent in stale:
            continue
        is_current: Callable[[ExportContext], bool] | None = getattr(
            _module(FORMATS[parent]), "is_current", None
        )
        if is_current is not None and not is_current(context):
            log.info("%s missing or stale: exporting it first", context.path(parent))
            stale.append(parent)
    return stale


@dataclass
class ExportResult:
    """One exporter run.

    Attributes:
        name: exporter name.
        paths: what it wrote.
        seconds: wall time including validation.
        size_bytes: total size on disk of ``paths``.
    """

    name: str
    paths: list[Path]
    seconds: float
    size_bytes: int


PACK_STEP = "pack"
"""The name of the model pack step in results and ``reports/export.json``."""


def write_models_pack(context: ExportContext, written: Sequence[Path]) -> ExportResult | None:
    """Write ``artifacts/pack`` when ``written`` holds a model the runtime loads (a FaceNet model
    of :data:`~toolchain.runtime.backends.EMBEDDER_FILES` or an MTCNN net); ``None`` when none,
    or when the models folder holds no FaceNet model with the three MTCNN nets yet."""
    from toolchain.runtime.pack import ALL_RUNS, ArtifactModels, members
    from toolchain.runtime.pack_writer import write_pack

    models = context.layout.models_dir
    loaded = {member for choice in ALL_RUNS for member in members(choice)}
    if not any(path.parent == models and path.name in loaded for path in written):
        return None
    source = ArtifactModels(context.layout)
    if not source.runs:
        log.info("no FaceNet model with the three MTCNN nets in %s yet: no model pack", models)
        return None
    start = time.perf_counter()
    summary = write_pack(source, context.layout.pack_dir, made_by="facenet model export")
    return ExportResult(PACK_STEP, [summary.path], time.perf_counter() - start,
                        summary.size_bytes)


def run_exporters(context: ExportContext, names: Iterable[str]) -> list[ExportResult]:
    """Run the selected exporters (and stale parents they read) in dependency order, then write
    the model pack when they wrote a model it holds (:func:`write_models_pack`); each one's files
    are recorded in ``SHA256SUMS`` as soon as they are written (when the tree has one)."""
    names = list(names)
    selected = resolve(names)
    plan = resolve([*names, *stale_parents(context, selected)])
    results = []
    for spec in plan:
        log.info("export %s: %s", spec.name, spec.description)
        start = time.perf_counter()
        paths = exporter(spec)(context, spec)
        seconds = time.perf_counter() - start
        context.written[spec.name] = paths
        # Recorded at once: a later step that loads it (the pack, a derived format) checks it
        # against SHA256SUMS, which still holds the previous run's file on a re-export.
        record_files(context.layout, paths)
        size = sum(disk_size(p) for p in paths)
        log.info("export %s: %.1f s, %.1f MB", spec.name, seconds, size / 1e6)
        results.append(ExportResult(spec.name, paths, seconds, size))
    pack = write_models_pack(context, [path for r in results for path in r.paths])
    if pack is not None:
        record_files(context.layout, pack.paths)
        log.info("export %s: %.1f s, %.1f MB", pack.name, pack.seconds, pack.size_bytes / 1e6)
        results.append(pack)
    return results


def write_export_report(layout: Layout, results: Sequence[ExportResult]) -> Path:
    """Merge this run's timings and sizes into ``reports/export.json``."""
    path = layout.reports_dir / "export.json"
    report: dict[str, Any] = {}
    if path.is_file():
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            report = {}
    for r in results:
        report[r.name] = {
            "paths": [str(p) for p in r.paths],
            "seconds": round(r.seconds, 2),
            "size_bytes": r.size_bytes,
            "toolchain_version": toolchain.__version__,
        }
    write_json(path, report)
    return path
