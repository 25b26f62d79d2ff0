"""``facenet watch`` stopped or fed the way a hostile (or merely unlucky) world does it: a
SIGTERM mid-run, an HTTP server without byte ranges, a URL in capitals.

Real models on the shared clip (:mod:`video_loopback`); streams come from an HTTP server on
127.0.0.1 that the tests start.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers.cli import ROOT, facenet_argv, python_env
from helpers.video_loopback import CLIP_FRAMES, LoopbackServer, Route, clip, enrolled_artifacts

av = pytest.importorskip("av")

pytestmark = [pytest.mark.real, pytest.mark.slow]



@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return enrolled_artifacts(tmp_path_factory.mktemp("video-hostile") / "artifacts")


def wait_for(condition: object, what: str, timeout: float = 300) -> None:
    """Poll ``condition()`` until it holds (a bounded wait on an event, not a sleep in its
    place)."""
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout:g} s"
        time.sleep(0.05)


def annotating_run(artifacts: Path, out: Path) -> subprocess.Popen[str]:
    """``facenet watch CLIP --json --annotate OUT``, returned once it has written an annotated
    frame (its temporary video exists) or ended."""
    proc = subprocess.Popen(
        facenet_argv("watch", clip(), "--json", "--annotate", out, "--artifacts", artifacts),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=python_env())
    try:
        wait_for(lambda: any(out.parent.glob(f".{out.name}.*.tmp")) or proc.poll() is not None,
                 "annotated frame")
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return proc


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_file_run_stopped_by_a_signal_prints_the_timeline_and_finishes_its_video(
        artifacts: Path, tmp_path: Path, stop: signal.Signals) -> None:
    """SIGTERM (how services and ``timeout`` stop a process) is Ctrl-C: the timeline so far on
    stdout, exit 130, the annotated video finished with the frames seen, no temporary file left.
    Before: exit 143, nothing on stdout, no video and a ``.live.mp4.*.tmp`` left behind."""
    out = tmp_path / "live.mp4"
    proc = annotating_run(artifacts, out)
    try:
        proc.send_signal(stop)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "Traceback" not in stderr, stderr
    assert proc.returncode == 130, (proc.returncode, stderr)
    assert "interrupted after" in stderr, stderr
    report = json.loads(stdout)
    assert report["ending"] == "interrupted" and 0 < report["frames"] < CLIP_FRAMES, report
    with av.open(str(out)) as written:
        assert sum(1 for _ in written.decode(video=0)) == report["frames"]
    assert [p.name for p in tmp_path.iterdir()] == ["live.mp4"]


def test_a_second_signal_stops_at_once_and_leaves_no_temporary_file(
        artifacts: Path, tmp_path: Path) -> None:
    """An impatient second SIGTERM does not wait for the frame boundary: the run stops at once
    (exit 130) and the annotated video is either finished or absent, never half-written."""
    out = tmp_path / "live.mp4"
    proc = annotating_run(artifacts, out)
    try:
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "Traceback" not in stderr, stderr
    assert proc.returncode == 130, (proc.returncode, stderr)
    assert [p.name for p in tmp_path.iterdir()] in ([], ["live.mp4"])
    if out.exists():
        with av.open(str(out)) as written:
            assert sum(1 for _ in written.decode(video=0)) > 0


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("facenet: ")]


@pytest.mark.parametrize("reconnect", [0, 3])
def test_an_mp4_with_its_index_at_the_end_from_a_server_without_ranges(
        artifacts: Path, reconnect: int) -> None:
    """FFmpeg reads such a file to its end to find the index, then must seek back to the
    frames, which a server ignoring ``Range`` (``python -m http.server``) cannot do: every open
    succeeds and brings no frame. Each such open counts as a reconnect attempt; then exit 9 with
    the reason. Before: the attempt counter went back to 1 at each successful open, so the run
    retried for ever (``attempt 1 of 3``, 238 GETs in 120 s)."""
    with LoopbackServer({}) as server:
        url = server.add("/clip.mp4", Route(clip().read_bytes(), "video/mp4"))
        proc = subprocess.run(
            facenet_argv("watch", url, "--reconnect", str(reconnect),
             "--timeout", "5", "--json", "--artifacts", str(artifacts)),
            capture_output=True, text=True, timeout=180, cwd=ROOT, env=python_env(), check=False)
        opens = server.requests["/clip.mp4"]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 9, (proc.returncode, proc.stderr)
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and "/clip.mp4" in lines[0], proc.stderr
    assert "no frame" in lines[0] and "faststart" in lines[0] and "Range" in lines[0], lines
    assert proc.stderr.count("reconnecting in") == reconnect, proc.stderr
    assert reconnect + 1 <= opens <= 2 * (reconnect + 1), opens
    report = json.loads(proc.stdout)
    assert report["frames"] == 0 and report["ending"] == "failed"
