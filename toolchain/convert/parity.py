"""Parity of every exported format with the ORIGINAL graph's reference embeddings.

Each format runs in its own runtime (Keras 3 through ``tf.function``, the SavedModel's
``serving_default`` signature, ONNX Runtime on ``CPUExecutionProvider``, LiteRT with all cores) on
ALL reference crops, prewhitened by :func:`toolchain.core.preprocess.prewhiten`.
:func:`compare` checks shape, dtype and values separately; :func:`run_parity` compares every
format with the original and along the export chain (keras -> savedmodel -> onnx, savedmodel
-> tflite*), checks the 5-celebrity identification, writes ``reports/parity.{json,md,png}``
and only then raises :class:`~toolchain.core.errors.ParityError` listing every failed check.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.core.atomic import atomic_file, write_json, write_text
from toolchain.core.errors import IntegrityError, MissingArtifactError, ParityError
from toolchain.core.metrics import Identification, Threshold, choose_threshold, nearest_neighbours
from toolchain.core.paths import Layout
from toolchain.core.preprocess import l2_normalize, prewhiten

log = logging.getLogger(__name__)

REFERENCE_INDEX_FORMAT = "facenet-toolchain/reference-index/1"
"""The ``format`` of ``reference/index.json`` written by ``nox -s recover``."""

EMBEDDING_DTYPE = np.dtype("float32")


@dataclass(frozen=True)
class Tolerance:
    """Acceptance limits on L2-normalized embeddings.

    Attributes:
        max_abs: largest allowed ``|a - b|`` over all elements, or ``None`` for no limit.
        min_cos: smallest allowed cosine similarity of any row pair.
    """

    max_abs: float | None
    min_cos: float


FP32 = Tolerance(max_abs=1e-5, min_cos=0.999999)
TOLERANCES: dict[str, Tolerance] = {
    "keras": FP32,
    "savedmodel": FP32,
    "onnx": FP32,
    "tflite": FP32,
    "tflite-fp16": Tolerance(max_abs=None, min_cos=0.9999),
    "tflite-int8": Tolerance(max_abs=None, min_cos=0.995),
    "onnx-int8": Tolerance(max_abs=None, min_cos=0.995),
}
"""THE tolerance table: every format against the original graph and against its chain parent."""

L2_OUTPUT_MAX_ABS = 1e-5
"""Largest allowed ``|embedding_l2 - l2_normalize(embedding)|`` inside one format's outputs."""

CHAIN: dict[str, str] = {
    "savedmodel": "keras",
    "onnx": "savedmodel",
    "tflite": "savedmodel",
    "tflite-fp16": "savedmodel",
    "tflite-int8": "savedmodel",
    "onnx-int8": "onnx",
}
"""Each format's parent in the export chain (it was converted from that one)."""

ORIGINAL = "original"
"""Name of the original Keras 2 graph's reference embeddings in reports."""


@dataclass
class Check:
    """One verdict: a format's output checked against something.

    Attributes:
        fmt: the format checked (``keras``, ``onnx``, ... or ``original``).
        against: what it is compared with (``original``, a chain parent, or ``self``).
        check: ``shape``, ``dtype``, ``values``, ``l2-output`` or ``identification``.
        ok: whether it passed.
        detail: human-readable measurement and limit.
        max_abs: max ``|diff|`` of L2-normalized embeddings (``values`` checks).
        min_cos: minimum cosine similarity (``values`` checks).
        mean_cos: mean cosine similarity (``values`` checks).
    """

    fmt: str
    against: str
    check: str
    ok: bool
    detail: str
    max_abs: float | None = None
    min_cos: float | None = None
    mean_cos: float | None = None

    def line(self) -> str:
        """``[ok]`` / ``[x]`` line for the console table."""
        mark = "[ok]" if self.ok else "[x] "
        return f"{mark} {self.fmt:<12} vs {self.against:<11} {self.check:<15} {self.detail}"


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity, computed in float64 (identical rows give exactly 1)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    norms = np.linalg.norm(a64, axis=-1) * np.linalg.norm(b64, axis=-1)
    return np.sum(a64 * b64, axis=-1) / np.maximum(norms, 1e-300)


def compare(
    fmt: str, against: str, got: np.ndarray, expected: np.ndarray, tolerance: Tolerance
) -> list[Check]:
    """Compare raw embeddings ``got`` with ``expected``: shape, dtype and values, separately.

    Values are compared after L2 normalization (the only way embeddings are used): the maximum
    absolute element difference and the per-row cosine similarity. NaN or inf fails.

    Returns:
        Three checks (``shape``, ``dtype``, ``values``); ``values`` fails if the shapes differ.
    """
    checks = [
        Check(
            fmt,
            against,
            "shape",
            got.shape == expected.shape,
            f"{tuple(got.shape)} (expected {tuple(expected.shape)})",
        ),
        Check(
            fmt,
            against,
            "dtype",
            got.dtype == EMBEDDING_DTYPE,
            f"{got.dtype} (expected {EMBEDDING_DTYPE})",
        ),
    ]
    if got.shape != expected.shape or got.size == 0:
        checks.append(Check(fmt, against, "values", False, "not compared: shapes differ"))
        return checks
    a = l2_normalize(got.astype(np.float32))
    b = l2_normalize(expected.astype(np.float32))
    if not np.all(np.isfinite(a)):
        checks.append(Check(fmt, against, "values", False, "NaN or inf in the output"))
        return checks
    max_abs = float(np.max(np.abs(a - b)))
    cos = cosines(got, expected)
    min_cos, mean_cos = float(cos.min()), float(cos.mean())
    ok = min_cos >= tolerance.min_cos and (
        tolerance.max_abs is None or max_abs <= tolerance.max_abs
    )
    limit = f"cos >= {tolerance.min_cos}"
    if tolerance.max_abs is not None:
        limit = f"|d| <= {tolerance.max_abs:g}, {limit}"
    detail = f"max|d| {max_abs:.2e}  min cos {min_cos:.10f}  mean cos {mean_cos:.10f}  ({limit})"
    checks.append(Check(fmt, against, "values", ok, detail, max_abs, min_cos, mean_cos))
    return checks


def check_l2_output(fmt: str, raw: np.ndarray, l2: np.ndarray) -> Check:
    """Check a format's ``embedding_l2`` output is ``l2_normalize(embedding)``."""
    if raw.shape != l2.shape:
        return Check(fmt, "self", "l2-output", False, f"shape {l2.shape} != {raw.shape}")
    diff = float(np.max(np.abs(l2_normalize(raw) - l2))) if raw.size else float("nan")
    ok = bool(np.isfinite(diff) and diff <= L2_OUTPUT_MAX_ABS)
    return Check(fmt, "self", "l2-output", ok, f"max|d| {diff:.2e} (<= {L2_OUTPUT_MAX_ABS:g})")


@dataclass(frozen=True)
class Reference:
    """The original graph's ground truth: crops, raw embeddings and who is who.

    Attributes:
        crops: ``(N, 160, 160, 3)`` uint8 face crops.
        embeddings: ``(N, 128)`` float32 raw embeddings of the original graph.
        splits: ``train`` or ``val`` per row.
        persons: person per row.
        paths: photo path per row.
        no_face: photos without a detected face (no row).
    """

    crops: np.ndarray
    embeddings: np.ndarray
    splits: tuple[str, ...]
    persons: tuple[str, ...]
    paths: tuple[str, ...]
    no_face: tuple[str, ...] = ()


def load_reference(layout: Layout) -> Reference:
    """Read ``reference/reference.npz`` and ``reference/index.json``.

    Raises:
        MissingArtifactError: they do not exist (``nox -s recover`` makes them).
        IntegrityError: they are unreadable or disagree with each other.
    """
    npz_path = layout.reference_dir / "reference.npz"
    index_path = layout.reference_dir / "index.json"
    missing = [str(p) for p in (npz_path, index_path) if not p.is_file()]
    if missing:
        raise MissingArtifactError(
            f"reference {', '.join(missing)} missing; run `nox -s recover` to create it"
        )
    try:
        with np.load(npz_path, allow_pickle=False) as npz:
            crops, embeddings = np.asarray(npz["crops"]), np.asarray(npz["embeddings"])
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError) as exc:
        raise IntegrityError(f"reference in {layout.reference_dir} is unreadable: {exc}") from exc
    if index.get("format") != REFERENCE_INDEX_FORMAT:
        raise IntegrityError(f"{index_path}: format {index.get('format')!r} is not supported")
    rows = sorted((p for p in index["photos"] if p["status"] == "ok"), key=lambda p: p["row"])
    if [p["row"] for p in rows] != list(range(len(crops))) or len(embeddings) != len(crops):
        raise IntegrityError(
            f"{index_path}: rows do not match reference.npz "
            f"({len(rows)} ok photos, {len(crops)} crops, {len(embeddings)} embeddings)"
        )
    return Reference(
        crops=crops,
        embeddings=embeddings,
        splits=tuple(p["split"] for p in rows),
        persons=tuple(p["person"] for p in rows),
        paths=tuple(p["path"] for p in rows),
        no_face=tuple(p["path"] for p in index["photos"] if p["status"] != "ok"),
    )


def identify(embeddings: np.ndarray, reference: Reference) -> Identification:
    """Gallery = every train crop's embedding; each val crop takes its nearest neighbour's name.

    Distances are euclidean on L2-normalized embeddings (:mod:`toolchain.core.metrics`).
    """
    e = l2_normalize(embeddings)
    splits = np.array(reference.splits)
    persons = np.array(reference.persons)
    gallery, queries = np.flatnonzero(splits == "train"), np.flatnonzero(splits == "val")
    truth = tuple(persons[queries].tolist())
    if not len(gallery):
        return Identification(truth, truth, (None,) * len(truth))
    index, distance = nearest_neighbours(e[queries], e[gallery])
    return Identification(truth, tuple(persons[gallery][index].tolist()),
                          tuple(distance.tolist()))


def identification_check(fmt: str, embeddings: np.ndarray, reference: Reference) -> Check:
    """Identification must be perfect (every val crop named right)."""
    got = identify(embeddings, reference)
    ok = got.total > 0 and got.correct_closed == got.total
    detail = f"{got.correct_closed}/{got.total} val crops identified"
    if got.mistakes:
        val_paths = [path for path, split in zip(reference.paths, reference.splits, strict=True)
                     if split == "val"]
        detail += " (" + "; ".join(
            f"{val_paths[k]}: {got.truth[k]} -> {got.predicted[k]}" for k in got.mistakes) + ")"
    return Check(fmt, "labels", "identification", ok, detail)


Runner = Callable[[Path, np.ndarray], dict[str, np.ndarray]]


def _batches(x: np.ndarray, size: int) -> Iterable[np.ndarray]:
    for start in range(0, len(x), size):
        yield x[start : start + size]


def _stack(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def run_keras(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """``facenet.keras`` loaded with ``safe_mode=True``, run through a ``tf.function``."""
    import keras
    import tensorflow as tf

    import toolchain.convert.architecture  # noqa: F401  (registers ScaleSum / L2Normalize)

    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    fn = tf.function(
        lambda batch: model(batch, training=False),
        input_signature=[tf.TensorSpec([None, *x.shape[1:]], tf.float32)],
        autograph=False,
    )
    parts = []
    for batch in _batches(x, 32):
        raw, l2 = fn(tf.constant(batch))
        parts.append({"embedding": raw.numpy(), "embedding_l2": l2.numpy()})
    return _stack(parts)


def run_savedmodel(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """The SavedModel's ``serving_default`` signature, loaded with ``tf.saved_model.load``."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    parts = [
        {k: v.numpy() for k, v in signature(input=tf.constant(batch)).items()}
        for batch in _batches(x, 32)
    ]
    return _stack(parts)


def run_onnx(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """ONNX Runtime with the explicit ``CPUExecutionProvider``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    input_name = session.get_inputs()[0].name
    parts = []
    for batch in _batches(x, 32):
        outs = session.run(names, {input_name: batch})
        parts.append(dict(zip(names, outs, strict=True)))
    return _stack(parts)


def run_tflite(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """LiteRT's interpreter on all cores, through the ``serving_default`` signature."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=os.cpu_count())
    runner = interpreter.get_signature_runner("serving_default")
    parts = [
        {k: np.asarray(v) for k, v in runner(input=batch).items()} for batch in _batches(x, 16)
    ]
    return _stack(parts)


RUNNERS: dict[str, Runner] = {
    "keras": run_keras,
    "savedmodel": run_savedmodel,
    "onnx": run_onnx,
    "tflite": run_tflite,
    "tflite-fp16": run_tflite,
    "tflite-int8": run_tflite,
    "onnx-int8": run_onnx,
}
"""The runtime each format is checked in."""


@dataclass
class FormatResult:
    """One format's outputs on all reference crops.

    Attributes:
        fmt: format name.
        path: the model file or directory.
        size_bytes: its size on disk.
        seconds: inference time on all crops (including load).
        outputs: ``embedding`` and ``embedding_l2`` arrays.
    """

    fmt: str
    path: Path
    size_bytes: int
    seconds: float
    outputs: dict[str, np.ndarray]


def disk_size(path: Path) -> int:
    """Bytes of a file, or of every file under a directory."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def evaluate_format(fmt: str, path: Path, x: np.ndarray) -> FormatResult:
    """Run format ``fmt`` stored at ``path`` on prewhitened crops ``x``."""
    start = time.perf_counter()
    outputs = RUNNERS[fmt](path, x)
    seconds = time.perf_counter() - start
    log.info("%s: %d crops in %.1f s", fmt, len(x), seconds)
    return FormatResult(fmt, path, disk_size(path), seconds, outputs)


def format_checks(result: FormatResult, reference: Reference) -> list[Check]:
    """Every check of one format against the original graph and itself."""
    fmt = result.fmt
    raw = result.outputs.get("embedding")
    if raw is None:
        return [Check(fmt, ORIGINAL, "shape", False, f"no 'embedding' output in {result.path}")]
    checks = compare(fmt, ORIGINAL, raw, reference.embeddings, TOLERANCES[fmt])
    l2 = result.outputs.get("embedding_l2")
    if l2 is None:
        checks.append(Check(fmt, "self", "l2-output", False, "no 'embedding_l2' output"))
    else:
        checks.append(check_l2_output(fmt, raw, l2))
    if raw.shape == reference.embeddings.shape:
        checks.append(identification_check(fmt, raw, reference))
    return checks


def chain_checks(results: dict[str, FormatResult]) -> list[Check]:
    """Each format against its export-chain parent (the tolerance of the child format)."""
    checks: list[Check] = []
    for fmt, parent in CHAIN.items():
        if fmt in results and parent in results:
            got = results[fmt].outputs["embedding"]
            want = results[parent].outputs["embedding"]
            checks.extend(
                c for c in compare(fmt, parent, got, want, TOLERANCES[fmt]) if c.check == "values"
            )
    return checks


@dataclass
class ParityReport:
    """Everything the parity run measured.

    Attributes:
        checks: every check, in report order.
        results: per-format outputs, sizes and timings.
        reference_rows: number of reference crops.
        threshold: the data-chosen default threshold (on the original embeddings).
    """

    checks: list[Check]
    results: dict[str, FormatResult]
    reference_rows: int
    threshold: Threshold

    @property
    def failed(self) -> list[Check]:
        """Checks that did not pass."""
        return [c for c in self.checks if not c.ok]

    def table(self) -> str:
        """The console table: one ``[ok]`` / ``[x]`` line per format and check."""
        return "\n".join(c.line() for c in self.checks)


def _report_json(report: ParityReport, reference: Reference) -> dict[str, Any]:
    formats = {}
    for fmt, r in report.results.items():
        formats[fmt] = {
            "path": str(r.path),
            "size_bytes": r.size_bytes,
            "inference_seconds": round(r.seconds, 3),
            "tolerance": asdict(TOLERANCES[fmt]),
            "checks": [asdict(c) for c in report.checks if c.fmt == fmt],
        }
    return {
        "ok": not report.failed,
        "reference_rows": report.reference_rows,
        "no_face": list(reference.no_face),
        "tolerances": {k: asdict(v) for k, v in TOLERANCES.items()},
        "chain": CHAIN,
        "threshold": asdict(report.threshold),
        "original": [asdict(c) for c in report.checks if c.fmt == ORIGINAL],
        "formats": formats,
        "failed": [c.line() for c in report.failed],
    }


def _report_md(report: ParityReport) -> str:
    lines = [
        "# Parity report",
        "",
        f"{report.reference_rows} reference crops (5-celebrity train + val), each format run in "
        "its own runtime and compared with the ORIGINAL Keras 2 graph on L2-normalized "
        "embeddings, then with its export-chain parent.",
        "",
        f"**Result: {'PASS' if not report.failed else 'FAIL'}**",
        "",
        "| format | vs | max abs diff | min cosine | 1 - min cosine | mean cosine | limit | ok |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in report.checks:
        if c.check == "values" and c.max_abs is not None and c.min_cos is not None:
            tol = TOLERANCES[c.fmt]
            limit = f"cos >= {tol.min_cos}" + (
                f", abs <= {tol.max_abs:g}" if tol.max_abs is not None else ""
            )
            lines.append(
                f"| {c.fmt} | {c.against} | {c.max_abs:.2e} | {c.min_cos:.10f} | "
                f"{1 - c.min_cos:.1e} | {c.mean_cos:.10f} | {limit} | {'yes' if c.ok else 'NO'} |"
            )
    lines += [
        "",
        "| format | identification | l2 output | size | inference |",
        "|---|---|---|---|---|",
    ]
    by_fmt: dict[str, dict[str, Check]] = {}
    for c in report.checks:
        by_fmt.setdefault(c.fmt, {})[c.check] = c
    for fmt, checks in by_fmt.items():
        r = report.results.get(fmt)
        ident = checks.get("identification")
        l2c = checks.get("l2-output")
        size = f"{r.size_bytes / 1e6:.1f} MB" if r else "-"
        secs = f"{r.seconds:.1f} s" if r else "-"
        cells = [fmt, ident.detail if ident else "-", l2c.detail if l2c else "-", size, secs]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    t = report.threshold
    lines += [
        "",
        f"Default threshold: **{t.value}** (euclidean, L2-normalized); balanced accuracy "
        f"{t.balanced_accuracy:.4f} over {t.same_pairs} same / {t.different_pairs} different "
        f"pairs; max same {t.max_same:.4f}, min different {t.min_different:.4f}. "
        f"Chosen as {t.method}.",
        "",
        "## Every check",
        "",
        "```",
        report.table(),
        "```",
        "",
        "![parity](parity.png)",
        "",
    ]
    return "\n".join(lines)


def _plot(report: ParityReport, reference: Reference, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fmts = list(report.results)
    fig, (ax_cos, ax_abs) = plt.subplots(1, 2, figsize=(13, 0.7 * len(fmts) + 2.4))
    floor = 1e-12
    idents = {c.fmt: c.detail.split(" ")[0] for c in report.checks if c.check == "identification"}
    for y, fmt in enumerate(fmts):
        dev = 1.0 - cosines(report.results[fmt].outputs["embedding"], reference.embeddings)
        jitter = np.random.default_rng(y).uniform(-0.2, 0.2, size=len(dev))
        ax_cos.scatter(np.maximum(dev, floor), y + jitter, s=9, alpha=0.6)
        limit = 1.0 - TOLERANCES[fmt].min_cos
        ax_cos.plot([limit, limit], [y - 0.4, y + 0.4], color="red", lw=2)
    ax_cos.set_xscale("log")
    ax_cos.set_yticks(range(len(fmts)), fmts)
    ax_cos.invert_yaxis()
    ax_cos.set_xlabel(
        f"1 - cosine to the original (log, values < {floor:g} drawn at {floor:g}; "
        "red bar = limit; lower is better)"
    )
    ax_cos.set_title(
        f"Per-crop deviation from the original graph ({reference.crops.shape[0]} crops)"
    )
    ax_cos.grid(axis="x", which="major", alpha=0.3)
    ax_cos.set_axisbelow(True)

    values = {c.fmt: c for c in report.checks if c.check == "values" and c.against == ORIGINAL}
    max_abs = [max(values[f].max_abs or floor, floor) if f in values else floor for f in fmts]
    colors = ["tab:green" if f in values and values[f].ok else "tab:red" for f in fmts]
    ax_abs.barh(range(len(fmts)), max_abs, color=colors)
    for y, fmt in enumerate(fmts):
        tol = TOLERANCES[fmt].max_abs
        if tol is not None:
            ax_abs.plot([tol, tol], [y - 0.4, y + 0.4], color="red", lw=2)
        ident = idents.get(fmt, "-")
        ax_abs.text(max_abs[y], y, f" {max_abs[y]:.1e}", va="bottom")
        ax_abs.text(
            0.97,
            y,
            f"identified {ident}",
            va="center",
            ha="right",
            transform=ax_abs.get_yaxis_transform(),
        )
    ax_abs.set_xscale("log")
    ax_abs.set_yticks(range(len(fmts)), fmts)
    ax_abs.invert_yaxis()
    ax_abs.set_xlim(1e-8, 1e3)
    ax_abs.set_xlabel("max |diff| of L2-normalized embeddings (log; red bar = limit)")
    ax_abs.set_title("Worst element difference vs the original (green = pass)")
    ax_abs.grid(axis="x", which="major", alpha=0.3)
    ax_abs.set_axisbelow(True)
    verdict = "PASS" if not report.failed else f"FAIL ({len(report.failed)} checks)"
    fig.suptitle(f"FaceNet export parity: {verdict}", fontweight="bold")
    fig.tight_layout()
    with atomic_file(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


REPORT_NAMES = ("parity.json", "parity.md", "parity.png")


def write_reports(report: ParityReport, reference: Reference, reports_dir: Path) -> list[Path]:
    """Write ``parity.json``, ``parity.md`` and ``parity.png`` atomically."""
    paths = [reports_dir / name for name in REPORT_NAMES]
    write_json(paths[0], _report_json(report, reference))
    write_text(paths[1], _report_md(report))
    _plot(report, reference, paths[2])
    return paths


def run_parity(
    layout: Layout,
    formats: dict[str, Path],
    emit: Callable[[str], None] = log.info,
    on_result: Callable[[str], None] | None = None,
) -> ParityReport:
    """Run every format on all reference crops, check everything, write the reports.

    Args:
        layout: the artifacts tree (reference in, reports out).
        formats: format name -> model path, in chain order.
        emit: receives the ``[ok]`` / ``[x]`` table, before any error is raised.
        on_result: called with each format name once it has run (progress display).

    Returns:
        The report, when every check passed.

    Raises:
        MissingArtifactError: the reference or a model is missing.
        ParityError: any check failed (after the reports are written); lists every failure.
    """
    missing = [f"{fmt} ({path})" for fmt, path in formats.items() if not path.exists()]
    if missing:
        raise MissingArtifactError(
            f"exported model(s) missing: {', '.join(missing)}; run `nox -s export` to create them"
        )
    reference = load_reference(layout)
    x = prewhiten(reference.crops)
    checks = [identification_check(ORIGINAL, reference.embeddings, reference)]
    results: dict[str, FormatResult] = {}
    for fmt, path in formats.items():
        results[fmt] = evaluate_format(fmt, path, x)
        checks.extend(format_checks(results[fmt], reference))
        if on_result is not None:
            on_result(fmt)
    checks.extend(chain_checks(results))
    report = ParityReport(
        checks=checks,
        results=results,
        reference_rows=len(x),
        threshold=choose_threshold(reference.embeddings, reference.persons),
    )
    for path in write_reports(report, reference, layout.reports_dir):
        log.info("wrote %s", path)
    emit(report.table())
    if report.failed:
        raise ParityError(
            f"{len(report.failed)} parity check(s) failed: "
            + "; ".join(f"{c.fmt} vs {c.against} {c.check}: {c.detail}" for c in report.failed)
            + f" (see {layout.reports_dir / 'parity.md'})"
        )
    return report
