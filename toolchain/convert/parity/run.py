"""``facenet model parity``: every exported FaceNet format on all reference crops, checked.

Each format runs in its own runtime (:mod:`toolchain.convert.runners`) on ALL reference crops,
prewhitened by :func:`toolchain.core.preprocess.prewhiten`; :func:`run_parity` compares every
format with the original and along the export chain, checks the 5-celebrity identification,
writes ``reports/parity.{json,md,png}`` and only then raises
:class:`~toolchain.core.errors.ParityError` listing every failed check.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from toolchain.convert.parity.checks import (
    ORIGINAL,
    FormatResult,
    ParityReport,
    chain_checks,
    evaluate_format,
    format_checks,
    identification_check,
)
from toolchain.convert.parity.reference import load_reference
from toolchain.convert.parity.report import table, write_reports
from toolchain.core.errors import MissingArtifactError, ParityError
from toolchain.core.paths import Layout
from toolchain.core.preprocess import prewhiten

log = logging.getLogger(__name__)


MODEL_DEFAULT_KEYS = ("default_threshold", "default_crop", "threshold_policy", "threshold_data")
"""The ONNX metadata keys of the decision defaults the parity report repeats."""


def model_defaults(path: Path | None) -> dict[str, str]:
    """The default threshold and crop ``facenet.onnx`` carries (empty when it is not checked or
    cannot be read: its parity checks report that)."""
    if path is None or not path.is_file():
        return {}
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (OSError, DecodeError) as exc:
        log.warning("cannot read the metadata of %s: %s", path, exc)
        return {}
    props = {p.key: p.value for p in model.metadata_props}
    return {key: props[key] for key in MODEL_DEFAULT_KEYS if key in props}


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
        model_defaults=model_defaults(formats.get("onnx")),
    )
    for path in write_reports(report, reference, layout.reports_dir):
        log.info("wrote %s", path)
    emit(table(report))
    if report.failed:
        raise ParityError(
            f"{len(report.failed)} parity check(s) failed: "
            + "; ".join(f"{c.fmt} vs {c.against} {c.check}: {c.detail}" for c in report.failed)
            + f" (see {layout.reports_dir / 'parity.md'})"
        )
    return report
