"""``facenet bench load`` (``toolchain.bench.loadtest``): the summary's arithmetic, and a tiny real
session (2 clients, 8 requests, a burst of 6 against 3 places, 4 enrollments killed) so the
session run through the command with every sizing option, so neither can rot.

The real session starts ``facenet serve`` and ``facenet recognize`` in the runtime environment
(``FACENET_RUNTIME_PYTHON``) on the real models and the shared photos; it only checks that every
phase ran and what must hold whatever the machine's speed (no timings are asserted).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers.cli import ROOT, facenet
from helpers.pool_gate import PoolGate
from helpers.service_server import examples, models_artifacts, server_python

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
def test_tiny_session_through_the_command(tmp_path: Path) -> None:
    """``facenet bench load`` with every sizing option, in the runtime environment, on the real
    models (linked into a tmp artifacts tree, where the reports go). The burst's server
    (``--workers 1 --burst-queue 1``: capacity 2, the only pool of that size in the session) is
    gated (``helpers.pool_gate``): its workers are held until all 6 requests have reached the
    pool, so exactly 2 are admitted and 4 refused whatever the machine's speed."""
    real = models_artifacts() / "models"
    artifacts = tmp_path / "artifacts"
    (artifacts / "models").mkdir(parents=True)
    for name in ("facenet.onnx", "mtcnn_pnet.onnx", "mtcnn_rnet.onnx", "mtcnn_onet.onnx"):
        (artifacts / "models" / name).symlink_to(real / name)
    workers, queue, kill, burst_queue = 1, 5, 4, 1
    capacity = workers + burst_queue
    default = Limits()
    assert capacity not in (workers + queue, workers + kill, default.workers + default.queue)
    with PoolGate(capacity=capacity, arrivals=6) as gate:
        pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        hooked = gate.install(tmp_path / "hook", pythonpath)
        done = facenet("bench", "load", "--artifacts", artifacts, "--clients", 2, "--requests", 8,
                       "--enroll-every", 4, "--workers", workers, "--queue", queue,
                       "--kill-enrollments", kill, "--burst", 6, "--burst-queue", burst_queue,
                       "--cli-photos", 3, "--examples", examples(), python=server_python(),
                       env=hooked)
    assert (gate.count("admitted"), gate.count("busy")) == (2, 4), gate.reports
    assert done.returncode == 0, done.stderr[-2000:]
    reports = artifacts / "reports"
    assert sorted(p.name for p in reports.iterdir()) == sorted([REPORT_JSON, REPORT_MD])
    report = json.loads((reports / REPORT_JSON).read_text())
    config = report["config"]
    assert {k: config[k] for k in ("clients", "requests", "enroll_every", "workers", "queue",
                                   "kill_enrollments", "burst", "burst_queue", "cli_photos")} == {
        "clients": 2, "requests": 8, "enroll_every": 4, "workers": 1, "queue": 5,
        "kill_enrollments": 4, "burst": 6, "burst_queue": 1, "cli_photos": 3}
    assert config["examples"] == str(examples())

    load = report["load"]
    assert (load["clients"], load["requests"], load["enrollments"]) == (2, 8, 2)
    assert load["ok"] == 8 and load["busy_503"] == 0 and load["errors"] == {}
    assert set(load["by_kind"]) == {"enroll", "recognize"}
    assert load["by_kind"]["enroll"]["count"] == 2 and load["by_kind"]["recognize"]["count"] == 6
    assert load["p50_s"] is not None and load["p50_s"] <= load["p99_s"]
    burst = report["burst"]
    assert (burst["workers"], burst["queue"], burst["sent"]) == (1, 1, 6)
    assert (burst["answered_200"], burst["busy_503"], burst["other"]) == (2, 4, {})
    assert "missing" not in burst["retry_after"]
    assert burst["healthy_after"]
    assert report["cli"]["photos"] == 3 and report["cli"]["photos_per_s"] > 0

    kill = report["kill"]
    assert kill["sent"] == 4 and sum(kill["statuses"].values()) == 4
    assert kill["acknowledged"] >= 1 and kill["present_whole"] >= kill["acknowledged"]
    assert kill["partial"] == [] and kill["lost_acknowledged"] == [] and kill["before_unchanged"]
    assert kill["integrity_problems"] == [] and report["kill_intact"] is True
    assert "`--workers 1 --queue 5`" in done.stdout
    assert "2 concurrent clients, 8 requests" in done.stdout
    assert (reports / REPORT_MD).read_text().splitlines()[0] == done.stdout.splitlines()[0]


def test_bad_sizing_is_a_usage_error(tmp_path: Path) -> None:
    done = facenet("bench", "load", "--artifacts", tmp_path, "--burst", 1)
    assert done.returncode == 2 and "--burst" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "reports").exists()
