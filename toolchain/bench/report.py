"""A bench run rendered: ``bench.json``, ``bench.md``, ``bench.png`` and the console table."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np

from toolchain.bench.rows import GFLOP_PER_FACE, BenchReport, Row, Section, sgemm_rate
from toolchain.bench.targets import COLD_START_GOAL_S
from toolchain.core.atomic import atomic_file, write_json, write_text
from toolchain.core.paths import Layout

REPORT_NAMES = ("bench.json", "bench.md", "bench.png")
"""The files a run writes under ``artifacts/reports``, in :func:`write_reports` order."""

SECTION_TITLES: dict[Section, str] = {
    Section.SGEMM: "Machine sgemm rate (the fastest row's median is the rate)",
    Section.EMBEDDING: "Embedding throughput (baseline: TF SavedModel at the same batch)",
    Section.PAIRED: "ONNX Runtime and OpenVINO, fp32 and int8, in one process, runs "
                    "alternated (load-robust ratio; baseline: ONNX Runtime fp32)",
    Section.ORT_OPTIONS: "ONNX Runtime session options (fp32; baseline: the default settings)",
    Section.DETECTION: "Face detection (baseline: the mtcnn package)",
    Section.END_TO_END: "End to end over the dataset photos (baseline: seed-style pipeline)",
    Section.COLD_START: "Cold start, fresh process (baseline: the TF pipeline)",
    Section.REAL_SIZE: "Real-size photos, shared photos/ (0.1-3.4 MP; baseline: the "
                       "face_recognition CLI's per-photo code) and a 24 MP photo",
    Section.VIDEO: "Video, the shared clip (640x360, 275 frames) and the clip scaled to "
                   "1920x1080 (baseline: its own frame rate, real time)",
}


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}g}"


def markdown(report: BenchReport) -> str:
    """``bench.md``: targets, then one table per section."""
    meta = report.meta
    lines = [
        "# facenet bench runtimes",
        "",
        f"{meta['started']}, {meta['duration_s']} s; CPU {meta['cpu']} ({meta['cores']} cores, "
        f"{', '.join(meta['isa'])}); load average before {meta['loadavg_before']}, after "
        f"{meta['loadavg_after']}; repeats {meta['repeats']} (end to end "
        f"{meta['e2e_repeats']}, cold start {meta['cold_runs']})"
        + ("; QUICK setting, numbers not meaningful" if meta["quick"] else "") + ".",
        "",
        "Medians over the timed repetitions (after a warm-up), min and max; ratio = speed "
        "relative to the section's baseline measured in this run (> 1: faster).",
        "",
        "## Targets",
        "",
        "| target | measured | goal | met | detail |",
        "|---|---|---|---|---|",
    ]
    for t in report.targets:
        lines.append(f"| {t.name} | {_fmt(t.value)} | {t.goal} | {'yes' if t.met else 'NO'} | "
                     f"{t.detail} |")
    for section, title in SECTION_TITLES.items():
        rows = [r for r in report.rows if r.section == section]
        if not rows:
            continue
        lines += ["", f"## {title}", "",
                  "| measurement | unit | median | min | max | ratio | GFLOP/s | of sgemm "
                  "| peak RSS MB |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(
                f"| {r.name} | {r.unit} | {_fmt(r.median, 4)} | {_fmt(r.low, 4)} | "
                f"{_fmt(r.high, 4)} | {_fmt(r.ratio)} | {_fmt(r.gflops, 4)} | "
                f"{'' if r.sgemm_fraction is None else f'{r.sgemm_fraction:.0%}'} | "
                f"{_fmt(r.peak_rss_mb, 4)} |"
            )
    return "\n".join(lines) + "\n"


RSS_SECTIONS = (Section.EMBEDDING, Section.DETECTION, Section.END_TO_END, Section.COLD_START,
                Section.REAL_SIZE)
"""Sections whose peak RSS the chart shows (embedding rows once, at batch 16)."""


def chart(report: BenchReport, path: Path) -> None:
    """``bench.png``: one panel per section, medians with min-max whiskers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5))
    rate = sgemm_rate(report.rows)
    panels: list[tuple[str, Callable[[Row], bool], str]] = [
        ("Embedding, batch 1 (faces/s)", lambda r: r.section == Section.EMBEDDING
         and r.name.endswith(" b1"), "faces/s"),
        ("Embedding, batch 16 (faces/s)", lambda r: r.section == Section.EMBEDDING
         and r.name.endswith(" b16"), "faces/s"),
        ("Face detection (ms/image, lower is better)", lambda r: r.section == Section.DETECTION,
         "ms/image"),
        ("End to end (images/s)", lambda r: r.section in (Section.END_TO_END, Section.REAL_SIZE)
         and r.unit == "images/s", "images/s"),
        ("Cold start (s, lower is better)", lambda r: r.section == Section.COLD_START, "s"),
        ("Peak RSS of each measured process (MB)", lambda r: r.peak_rss_mb is not None
         and r.section in RSS_SECTIONS and not r.name.endswith(" b1"), "MB"),
    ]
    for ax, (title, pick, unit) in zip(axes.flat, panels, strict=True):
        rows = [r for r in report.rows if pick(r)]
        labels = [textwrap.fill(r.name.removesuffix(" b16").removesuffix(" b1"), 26)
                  for r in rows]
        if unit == "MB":
            values = [r.peak_rss_mb or 0.0 for r in rows]
            ax.barh(labels, values, color="#7a7a7a")
        else:
            values = [r.median for r in rows]
            err = np.array([[r.median - r.low for r in rows], [r.high - r.median for r in rows]])
            colors = ["#2a7ab9" if r.baseline and r.name != r.baseline else "#b0b0b0"
                      for r in rows]
            ax.barh(labels, values, xerr=err, color=colors, capsize=3)
            for y, r in enumerate(rows):
                note = f" {r.median:.3g}" + (f"  x{r.ratio:.2f}" if r.ratio else "")
                ax.text(r.high, y, note, va="center", fontsize=8)
        if title.startswith("Embedding, batch 16") and rate:
            ax.axvline(rate / GFLOP_PER_FACE, color="#c03030", linestyle="--",
                       label=f"sgemm rate {rate:.0f} GFLOP/s")
            ax.legend(loc="lower right", fontsize=8)
        if title.startswith("Cold start"):
            ax.axvline(COLD_START_GOAL_S, color="#c03030", linestyle="--",
                       label=f"target {COLD_START_GOAL_S} s")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=8)
        ax.margins(x=0.25)
    quick = " (QUICK setting)" if report.meta["quick"] else ""
    fig.suptitle(f"facenet bench runtimes{quick}: {report.meta['cpu']}, "
                 f"{report.meta['cores']} cores, "
                 f"load {report.meta['loadavg_before'][0]:.1f} -> "
                 f"{report.meta['loadavg_after'][0]:.1f}", fontsize=11)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def write_reports(layout: Layout, report: BenchReport) -> list[Path]:
    """Write ``bench.json``, ``bench.md`` and ``bench.png`` (each atomically)."""
    out = [layout.reports_dir / name for name in REPORT_NAMES]
    write_json(out[0], report.as_json())
    write_text(out[1], markdown(report))
    chart(report, out[2])
    return out


def console_table(report: BenchReport) -> str:
    """The targets and headline rows as plain text for the command's output."""
    lines = [f"{'measurement':<64} {'median':>10} {'unit':<9} {'ratio':>7}"]
    for r in report.rows:
        if r.section == Section.ORT_OPTIONS:
            continue
        lines.append(f"{r.section + ': ' + r.name:<64.64} {r.median:>10.4g} {r.unit:<9} "
                     f"{'' if r.ratio is None else f'x{r.ratio:.2f}':>7}")
    lines.append("")
    for t in report.targets:
        lines.append(f"[{'met' if t.met else 'NOT met'}] {t.name}: {_fmt(t.value)} "
                     f"(goal {t.goal}) {t.detail}")
    return "\n".join(lines)
