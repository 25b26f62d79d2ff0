"""``facenet bench load`` (``toolchain.bench.loadtest``): the summary's arithmetic, and a tiny real
session (2 clients, 8 requests, a burst of 6 against 3 places, 4 enrollments killed) so the
session cannot rot.

The real session starts ``facenet serve`` and ``facenet recognize`` in the runtime environment
(``FACENET_RUNTIME_PYTHON``) on the real models and the shared photos; it only checks that every
phase ran and what must hold whatever the machine's speed (no timings are asserted).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers.pool_gate import PoolGate
from helpers.service_server import examples, models_artifacts, server_python

from toolchain.bench.loadtest import LoadConfig, run_session, write_report
from toolchain.bench.loadtest.phases import summarize
from toolchain.bench.loadtest.report import REPORT_JSON, REPORT_MD
from toolchain.bench.loadtest.server import Outcome
from toolchain.service.config import Limits


def test_summary_counts_503_apart_from_errors_and_percentiles_answered_requests() -> None:
    outcomes = [Outcome("recognize", 200, 1.0), Outcome("recognize", 200, 3.0),
                Outcome("enroll", 201, 2.0), Outcome("recognize", 503, 0.01, "busy"),
                Outcome("recognize", 504, 30.0, "timeout"),
                Outcome("enroll", 0, 5.0, "ConnectionResetError")]
    phase = summarize(outcomes, clients=3, seconds=2.0)
    assert (phase.requests, phase.enrollments, phase.ok, phase.busy_503) == (6, 2, 3, 1)
    assert phase.errors == {"timeout": 1, "ConnectionResetError": 1}
    assert phase.requests_per_s == 3.0
    assert phase.p50_s == pytest.approx(2.0)
    assert phase.by_kind["enroll"]["count"] == 1.0
    assert phase.by_kind["recognize"]["count"] == 4.0


def test_summary_of_no_answer_has_no_percentiles() -> None:
    phase = summarize([Outcome("recognize", 0, 1.0, "ConnectionRefusedError")], 1, 1.0)
    assert phase.p50_s is phase.p99_s is None
    assert phase.errors == {"ConnectionRefusedError": 1}


@pytest.mark.real
@pytest.mark.slow
def test_tiny_session_on_the_real_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    """The burst's server (capacity 2 + 1, the only pool of that size in the session) is gated
    (``helpers.pool_gate``): its workers are held until all 6 requests have reached the pool, so
    exactly 3 are admitted and 3 refused whatever the machine's speed."""
    artifacts = models_artifacts()
    config = LoadConfig(clients=2, requests=8, enroll_every=4, kill_enrollments=4, burst=6,
                        burst_queue=1, cli_photos=3, python=Path(server_python()),
                        examples=examples())
    capacity = config.workers + config.burst_queue
    default = Limits()
    assert capacity not in (config.workers + config.queue,
                            config.workers + config.kill_enrollments,
                            default.workers + default.queue)
    with PoolGate(capacity=capacity, arrivals=config.burst) as gate:
        hooked = gate.install(tmp_path / "hook", os.environ.get("PYTHONPATH", ""))
        for name, value in hooked.items():
            monkeypatch.setenv(name, value)
        report = run_session(artifacts, config)
    assert (gate.count("admitted"), gate.count("busy")) == (3, 3), gate.reports

    load = report.load
    assert (load.clients, load.requests, load.enrollments) == (2, 8, 2)
    assert load.ok == 8 and load.busy_503 == 0 and load.errors == {}
    assert set(load.by_kind) == {"enroll", "recognize"}
    assert load.p50_s is not None and load.p50_s <= (load.p99_s or 0)
    burst = report.burst
    assert (burst.sent, burst.answered_200, burst.busy_503, burst.other) == (6, 3, 3, {})
    assert "missing" not in burst.retry_after and burst.healthy_after
    assert report.cli.photos == 3 and report.cli.photos_per_s > 0

    kill = report.kill
    assert kill.sent == 4 and sum(kill.statuses.values()) == 4
    assert kill.acknowledged >= 1 and kill.present_whole >= kill.acknowledged
    assert kill.partial == [] and kill.lost_acknowledged == [] and kill.before_unchanged
    assert kill.integrity_problems == []
    assert report.kill_intact

    written = write_report(report, tmp_path / "reports")
    assert [p.name for p in written] == [REPORT_JSON, REPORT_MD]
    stored = json.loads(written[0].read_text())
    assert stored["kill_intact"] is True and stored["load"]["requests"] == 8
    assert "requests/s" in written[1].read_text()
