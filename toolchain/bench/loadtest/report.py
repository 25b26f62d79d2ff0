"""The load session's report (:class:`LoadReport`), its Markdown and the files written."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from toolchain.bench.loadtest.kill import KillPhase
from toolchain.bench.loadtest.phases import BurstPhase, CliPhase, LoadPhase
from toolchain.core import atomic

REPORT_JSON = "loadtest.json"
REPORT_MD = "loadtest.md"


@dataclass
class LoadReport:
    """One load session: the machine, the settings and each phase."""

    cpu: str
    cores: int
    loadavg_before: list[float]
    loadavg_after: list[float]
    config: dict[str, object]
    load: LoadPhase
    burst: BurstPhase
    cli: CliPhase
    kill: KillPhase
    kill_intact: bool = field(init=False)

    def __post_init__(self) -> None:
        self.kill_intact = self.kill.intact


def _s(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds:.2f}"


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.0f} ms"


def markdown(report: LoadReport) -> str:
    """The report as Markdown (what the README quotes)."""
    load, burst, cli, kill = report.load, report.burst, report.cli, report.kill
    config = report.config
    other = ", ".join(f"{k}: {v}" for k, v in sorted(burst.other.items())) or "none"
    errors = ", ".join(f"{k}: {v}" for k, v in sorted(load.errors.items())) or "none"
    kinds = "\n".join(
        f"| {kind} | {int(v['count'] or 0)} | {_s(v['p50_s'])} | {_s(v['p95_s'])} |"
        for kind, v in load.by_kind.items())
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(kill.statuses.items()))
    lines = [
        "# facenet serve under load",
        "",
        f"{report.cpu}, {report.cores} cores, load average {report.loadavg_before[0]:.2f} "
        f"before, {report.loadavg_after[0]:.2f} after. Server on 127.0.0.1: "
        f"`--workers {config['workers']} --queue {config['queue']}`.",
        "",
        "## Load",
        "",
        f"{load.clients} concurrent clients, {load.requests} requests ({load.enrollments} "
        f"enrollments, the rest recognitions of the shared photos) in {load.seconds:.1f} s: "
        f"**{load.requests_per_s:.2f} requests/s**, p50 {_s(load.p50_s)} s, "
        f"p95 {_s(load.p95_s)} s, p99 {_s(load.p99_s)} s. {load.ok} answered 2xx, "
        f"{load.busy_503} got 503 (queue full); errors: {errors}.",
        "",
        "| request | answered | p50 s | p95 s |",
        "| --- | --- | --- | --- |",
        kinds,
        "",
        "## Burst beyond the queue",
        "",
        f"{burst.sent} recognitions released together against `--workers {burst.workers} "
        f"--queue {burst.queue}`: {burst.answered_200} answered 200, {burst.busy_503} got 503 "
        f"(Retry-After: {', '.join(burst.retry_after) or 'n/a'}; the slowest 503 in "
        f"{_ms(burst.slowest_503_s)}), other statuses: {other}; healthz and readyz afterwards: "
        f"{'200' if burst.healthy_after else 'NOT 200'}.",
        "",
        "## CLI batch on the same photos",
        "",
        f"`facenet recognize` on {cli.photos} photos: {cli.seconds:.1f} s, "
        f"**{cli.photos_per_s:.2f} photos/s** with the process start "
        f"({cli.one_photo_seconds:.1f} s for one photo), "
        f"{_s(cli.photos_per_s_after_start)} photos/s after it.",
        "",
        "## SIGKILL during enrollments",
        "",
        f"{kill.sent} simultaneous enrollments of two new photos each, the server SIGKILLed "
        f"once a third were acknowledged: {kill.acknowledged} acknowledged, "
        f"{kill.unanswered} unanswered (statuses {statuses}). Afterwards "
        f"{kill.present_whole} present whole, {len(kill.partial)} partial, "
        f"{len(kill.lost_acknowledged)} acknowledged but lost; the people enrolled before "
        f"{'unchanged' if kill.before_unchanged else 'CHANGED'}; integrity check: "
        f"{'; '.join(kill.integrity_problems) or 'no problem'}. "
        f"Gallery intact: **{'yes' if report.kill_intact else 'NO'}**.",
    ]
    return "\n".join(lines) + "\n"


def write_report(report: LoadReport, reports_dir: Path) -> list[Path]:
    """Write ``loadtest.json`` and ``loadtest.md`` atomically; return their paths."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    paths = [reports_dir / REPORT_JSON, reports_dir / REPORT_MD]
    atomic.write_json(paths[0], asdict(report))
    atomic.write_text(paths[1], markdown(report))
    return paths
