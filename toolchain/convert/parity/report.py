"""Rendering of a parity run: the console table, ``parity.json``, ``parity.md``, ``parity.png``."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.convert.formats import FACENET_FORMATS, tolerance
from toolchain.convert.parity.checks import ORIGINAL, Check, ParityReport, cosines
from toolchain.convert.parity.reference import Reference
from toolchain.core.atomic import atomic_file, write_json, write_text

REPORT_NAMES = ("parity.json", "parity.md", "parity.png")


def check_line(check: Check) -> str:
    """``[ok]`` / ``[x]`` line of one check for the console table."""
    mark = "[ok]" if check.ok else "[x] "
    return f"{mark} {check.fmt:<12} vs {check.against:<11} {check.check:<15} {check.detail}"


def table(report: ParityReport) -> str:
    """The console table: one ``[ok]`` / ``[x]`` line per format and check."""
    return "\n".join(check_line(c) for c in report.checks)


def report_json(report: ParityReport, reference: Reference) -> dict[str, Any]:
    formats = {}
    for fmt, r in report.results.items():
        formats[fmt] = {
            "path": str(r.path),
            "size_bytes": r.size_bytes,
            "inference_seconds": round(r.seconds, 3),
            "tolerance": asdict(tolerance(fmt)),
            "checks": [asdict(c) for c in report.checks if c.fmt == fmt],
        }
    return {
        "ok": not report.failed,
        "reference_rows": report.reference_rows,
        "no_face": list(reference.no_face),
        "tolerances": {k: asdict(tolerance(k)) for k in FACENET_FORMATS},
        "chain": {k: s.parent for k, s in FACENET_FORMATS.items() if s.parent is not None},
        "model_defaults": report.model_defaults,
        "original": [asdict(c) for c in report.checks if c.fmt == ORIGINAL],
        "formats": formats,
        "failed": [check_line(c) for c in report.failed],
    }


def report_md(report: ParityReport) -> str:
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
            tol = tolerance(c.fmt)
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
    defaults = report.model_defaults
    lines += [
        "",
        (f"Default decision (`facenet.onnx` metadata): same person when the distance is at most "
         f"**{defaults['default_threshold']}** on `{defaults.get('default_crop', 'box')}` crops; "
         f"{defaults.get('threshold_policy', '')}. Data: {defaults.get('threshold_data', '')}."
         if "default_threshold" in defaults else
         "Default decision: not checked (`facenet.onnx` was not part of this run)."),
        "",
        "## Every check",
        "",
        "```",
        table(report),
        "```",
        "",
        "![parity](parity.png)",
        "",
    ]
    return "\n".join(lines)


def plot(report: ParityReport, reference: Reference, out: Path) -> None:
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
        limit = 1.0 - tolerance(fmt).min_cos
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
        tol = tolerance(fmt).max_abs
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



def write_reports(report: ParityReport, reference: Reference, reports_dir: Path) -> list[Path]:
    """Write ``parity.json``, ``parity.md`` and ``parity.png`` atomically."""
    paths = [reports_dir / name for name in REPORT_NAMES]
    write_json(paths[0], report_json(report, reference))
    write_text(paths[1], report_md(report))
    plot(report, reference, paths[2])
    return paths
