"""The real clip on the real models, as a file and as live streams from a loopback server.

The gallery is the six people of ``../shared/data/face_recognition_examples/people``; the clip is
``video/short_hamilton_clip.mp4`` of the same folder (its README lists who is on screen when).
Streams are served by an HTTP server on 127.0.0.1 that these tests start
(:mod:`video_loopback`): MPEG-TS and MJPEG (``multipart/x-mixed-replace``), at the clip's own pace
or as fast as the socket takes them, and servers that drop the connection or stall half-way. No
machine here has a camera: the camera path is checked through its error (``corpus_video.py``).

What a live run analyzes depends on how fast the analysis is next to the stream, so the stream
tests run ``facenet watch`` with a test-only hook (:data:`video_loopback.WATCH_HOOK`): it keeps
every frame (the counts are then exact on any machine), or holds the analysis until the decoder
is done (drops certain), or sends Ctrl-C at a given frame. Nothing here is timed.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
from helpers.cli import ROOT, facenet, facenet_argv, python_env
from helpers.real import shared_data
from helpers.video_loopback import (
    CLIP_FRAMES,
    LoopbackServer,
    Route,
    clip,
    enrolled_artifacts,
    watch_hook,
)

from toolchain.runtime.recognizer import Recognizer
from toolchain.video import Ending, TrackSummary, track

pytestmark = [pytest.mark.real, pytest.mark.slow]

CAST: list[tuple[int, int, frozenset[str]]] = [
    (0, 17, frozenset({"lin_manuel_miranda"})),
    (18, 87, frozenset({"alex_lacamoire"})),
    (88, 218, frozenset({"lin_manuel_miranda"})),
    (219, 274, frozenset({"obama"})),
]
"""Frames and the ENROLLED people on screen in them (the data README; strangers omitted)."""

CUT_FRAMES = 157
"""Frames this FFmpeg decodes, without frame threads (``run_json(one_cpu=True)``), of the MPEG-TS
clip cut at 60% of its bytes (the rest never comes)."""

CUT_SLACK = 8
"""Frames by which the README's scene boundaries may be off (the audience shot starts at 213)."""


def allowed_names(first: int, last: int) -> frozenset[str]:
    """Enrolled people on screen at some point of frames ``first..last`` (with the slack)."""
    return frozenset().union(*(names for start, end, names in CAST
                               if first <= end + CUT_SLACK and last >= start - CUT_SLACK))


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The models and a gallery of the six shared people (:func:`enrolled_artifacts`)."""
    return enrolled_artifacts(tmp_path_factory.mktemp("video") / "artifacts")


def check_cast(tracks: list[TrackSummary] | list[dict[str, Any]]) -> None:
    """Lin-Manuel Miranda is named over frames 88-210 in at most three tracks; no track carries
    the name of someone who is not on screen in its frames."""
    rows = [t if isinstance(t, dict) else {
        "label": t.label, "first_frame": t.first_frame, "last_frame": t.last_frame,
        "track": t.track_id} for t in tracks]
    for row in rows:
        if row["label"] != "unknown":
            allowed = allowed_names(row["first_frame"], row["last_frame"])
            assert row["label"] in allowed, (row, sorted(allowed))
    lin = [r for r in rows if r["label"] == "lin_manuel_miranda" and r["last_frame"] >= 88 and
           r["first_frame"] <= 218]
    assert 1 <= len(lin) <= 3, rows
    assert min(r["first_frame"] for r in lin) <= 100 and max(r["last_frame"] for r in lin) >= 200
    middle = [r for r in rows if r["first_frame"] >= 88 + CUT_SLACK
              and r["last_frame"] <= 213 - CUT_SLACK]
    assert all(r["label"] in ("lin_manuel_miranda", "unknown") for r in middle), middle


def test_clip_every_frame_names_lin_manuel_miranda_once(artifacts: Path) -> None:
    with Recognizer.from_artifacts(artifacts) as rec:
        run = track(rec, clip(), every=1)
        results = list(run)
    summary = run.summary()
    assert len(results) == CLIP_FRAMES and summary.frames == CLIP_FRAMES
    assert summary.analyzed == CLIP_FRAMES and summary.ending is Ending.END
    assert summary.fps == pytest.approx(29.97) and summary.size == (640, 360)
    check_cast(list(summary.tracks))
    lin = next(t for t in summary.tracks if t.name == "lin_manuel_miranda" and t.frames > 50)
    assert lin.median_distance is not None and lin.median_distance <= summary.threshold
    assert lin.votes >= 0.8 * lin.voters
    audience = [t for t in summary.tracks if t.first_frame >= 213 - CUT_SLACK]
    assert len(audience) >= 3 and {t.label for t in audience} <= {"obama", "unknown"}
    named_in_frames = {f.label for r in results[100:200] for f in r.faces}
    assert named_in_frames <= {"lin_manuel_miranda", "unknown"}


@pytest.fixture(scope="module")
def every_third(artifacts: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> tuple[dict[str, Any], Path]:
    """``facenet watch CLIP --every 3 --json --annotate FILE`` with the default options: the
    JSON report and the folder of the annotated video."""
    folder = tmp_path_factory.mktemp("every_third")
    proc = facenet("watch", clip(), "--every", "3", "--json", "--annotate",
                   folder / "annotated.mp4", "--artifacts", artifacts)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return report, folder


def test_cli_clip_every_third_frame_json_and_annotated_video(
        every_third: tuple[dict[str, Any], Path]) -> None:
    report, folder = every_third
    out = folder / "annotated.mp4"
    assert (report["kind"], report["frames"], report["analyzed"]) == ("file", 275, 92)
    assert report["ending"] == "end" and report["error"] is None and report["dropped"] == 0
    assert report["frames_per_second"] > 0
    check_cast(report["tracks"])
    first = report["tracks"][0]
    assert set(first) >= {"track", "name", "first_time", "last_time", "frames",
                          "median_distance", "best_distance", "best_box"}
    with av.open(str(out)) as written:
        assert written.streams.video[0].codec_context.name == "h264"
        assert sum(1 for _ in written.decode(video=0)) == CLIP_FRAMES
    assert [p.name for p in folder.iterdir()] == ["annotated.mp4"]


def test_min_track_frames_and_min_name_face_change_the_timeline_as_documented(
        artifacts: Path, every_third: tuple[dict[str, Any], Path]) -> None:
    """The same run with ``--min-track-frames 1 --min-name-face 0`` beside the defaults (3 and
    40 px): tracking is the same, so the defaults' tracks are exactly this run's tracks of at
    least 3 frames (the 1-frame passing detections are reported only here); and the small faces
    of the stage shot (frames 0-18, Lin-Manuel Miranda far away), which do not vote by default,
    all vote here, so a track may get a name from them."""
    default = {t["track"]: t for t in every_third[0]["tracks"]}
    proc = facenet("watch", clip(), "--every", "3", "--json", "--min-track-frames", "1",
                   "--min-name-face", "0", "--artifacts", artifacts)
    assert proc.returncode == 0, proc.stderr
    loose = {t["track"]: t for t in json.loads(proc.stdout)["tracks"]}
    assert {i for i, t in loose.items() if t["frames"] >= 3} == set(default)
    assert min(t["frames"] for t in default.values()) >= 3
    assert any(t["frames"] == 1 for t in loose.values())
    for i, t in default.items():
        assert (loose[i]["first_frame"], loose[i]["last_frame"], loose[i]["frames"]) == (
            t["first_frame"], t["last_frame"], t["frames"])
        assert loose[i]["voters"] >= t["voters"]
    stage = [i for i, t in default.items() if t["last_frame"] <= 18 + CUT_SLACK]
    assert stage and all(default[i]["voters"] < default[i]["frames"] for i in stage)
    assert all(loose[i]["voters"] == loose[i]["frames"] for i in stage)
    assert any(default[i]["name"] is None and loose[i]["name"] is not None for i in stage)


def test_ctrl_c_on_a_video_file_exits_130_with_the_timeline_so_far(
        artifacts: Path, tmp_path: Path) -> None:
    """SIGINT once the progress display (stderr on a terminal) reports analyzed frames: the run
    stops between two frames, the JSON timeline of the frames seen is printed, the annotated
    video holds exactly those frames, and the exit code is 130 (a file, not a stream)."""
    import os
    import pty
    import threading

    out = tmp_path / "part.mp4"
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        facenet_argv("watch", clip(), "--json", "--annotate", out, "--artifacts", artifacts),
        stdout=subprocess.PIPE, stderr=follower, text=True, cwd=ROOT,
        env=python_env({"TERM": "xterm", "COLUMNS": "120"}))
    os.close(follower)
    chunks: list[bytes] = []
    progressing = threading.Event()

    def drain() -> None:  # read the terminal to its end, so the child never blocks on it
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
            if b"analyzed" in b"".join(chunks):  # the first progress line: frames tracked
                progressing.set()
        progressing.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        assert progressing.wait(timeout=300)
        assert proc.poll() is None, b"".join(chunks).decode(errors="replace")
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=120)
        reader.join(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    assert proc.returncode == 130
    seen = b"".join(chunks)
    stderr = seen.decode(errors="replace")
    assert "Traceback" not in stderr, stderr
    report = json.loads(stdout)
    assert report["ending"] == "interrupted" and report["error"] is None
    assert 0 < report["frames"] < CLIP_FRAMES and report["analyzed"] == report["frames"]
    assert re.search(rf"interrupted after {report['frames']} frames", stderr), stderr
    with av.open(str(out)) as written:
        assert sum(1 for _ in written.decode(video=0)) == report["frames"]
    assert [p.name for p in tmp_path.iterdir()] == ["part.mp4"]


NO_TENSORFLOW = """
import atexit, sys
HEAVY = ("tensorflow", "keras", "tf2onnx", "cv2", "matplotlib")
atexit.register(lambda: print("HEAVY", sorted(m for m in sys.modules
                                             if m.split(".")[0] in HEAVY), file=sys.stderr))
sys.argv = ["facenet", *sys.argv[1:]]
from toolchain.cli.main import main
main()
"""
"""``python -c`` program: the command line, then which heavy modules it imported."""


def test_video_runs_in_the_runtime_environment_without_tensorflow(
        artifacts: Path, runtime_python: Path) -> None:
    proc = subprocess.run(
        [str(runtime_python), "-c", NO_TENSORFLOW, "watch", str(clip()), "--every", "10",
         "--json", "--artifacts", str(artifacts)],
        capture_output=True, text=True, timeout=600, check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stderr.splitlines(), proc.stderr
    assert "lin_manuel_miranda" in [t["name"] for t in json.loads(proc.stdout)["tracks"]]


# ---- live streams from a loopback HTTP server ----


@pytest.fixture(scope="module")
def mpegts() -> bytes:
    """The clip's H.264 stream remuxed (not re-encoded) into MPEG-TS, a live-stream container."""
    buffer = io.BytesIO()
    with av.open(str(clip())) as source, av.open(buffer, "w", format="mpegts") as out:
        stream = source.streams.video[0]
        target = out.add_stream_from_template(stream)
        for packet in source.demux(stream):
            if packet.dts is not None:
                packet.stream = target
                out.mux(packet)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def faststart_mp4(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The clip remuxed into an MP4 with its index first (what a progressive download needs;
    the muxer moves the index in a second pass over a named file)."""
    path = tmp_path_factory.mktemp("faststart") / "clip.mp4"
    with av.open(str(clip())) as source, av.open(str(path), "w",
                                                  options={"movflags": "faststart"}) as out:
        stream = source.streams.video[0]
        target = out.add_stream_from_template(stream)
        for packet in source.demux(stream):
            if packet.dts is not None:
                packet.stream = target
                out.mux(packet)
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")
    return data


def mjpeg(first: int, last: int) -> bytes:
    """Frames ``first..last`` of the clip as a ``multipart/x-mixed-replace`` JPEG stream."""
    parts = []
    with av.open(str(clip())) as source:
        for index, frame in enumerate(source.decode(video=0)):
            if first <= index <= last:
                jpeg = io.BytesIO()
                frame.to_image().save(jpeg, format="JPEG", quality=90)
                data = jpeg.getvalue()
                parts.append(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                             + str(len(data)).encode() + b"\r\n\r\n" + data + b"\r\n")
    return b"".join(parts)


TS = "video/mp2t"


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    """A loopback server for the test; ``server.add(path, route)`` gives a route's URL."""
    with LoopbackServer({}) as started:
        yield started


def run_json(*args: str | Path, env: dict[str, str] | None = None, one_cpu: bool = False
             ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``facenet watch ARGS --json``; with ``one_cpu`` the process may use one CPU only, so
    FFmpeg decodes without frame threads: at a stream's error no frame is still in flight in a
    decoder thread (lost), and the frames counted do not depend on the machine's cores."""
    proc = facenet("watch", *args, "--json", env=env, preexec=_one_cpu if one_cpu else None)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc, json.loads(proc.stdout) if proc.stdout.strip() else {}


def _one_cpu() -> None:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def keep_every_frame(tmp_path: Path) -> dict[str, str]:
    """The environment of a ``facenet watch`` that drops no frame of a live stream
    (:data:`~video_loopback.WATCH_HOOK`): what it analyzes does not depend on the machine's
    speed."""
    return watch_hook(tmp_path / "hook", FACENET_TEST_KEEP_EVERY_FRAME="1")


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("facenet: ")]


def test_mpegts_stream_at_the_clips_pace(artifacts: Path, server: LoopbackServer,
                                         mpegts: bytes, tmp_path: Path) -> None:
    url = server.add("/live.ts", Route(mpegts, TS, pace=9.2))
    proc, report = run_json(url, "--fps", "5", "--artifacts", artifacts,
                            env=keep_every_frame(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert report["kind"] == "stream" and report["ending"] == "end"
    assert (report["frames"], report["analyzed"], report["dropped"]) == (CLIP_FRAMES, 46, 0)
    check_cast(report["tracks"])


@pytest.mark.parametrize("container", ["ts", "mp4"])
def test_frames_arriving_too_fast_are_dropped_and_counted(
        artifacts: Path, server: LoopbackServer, mpegts: bytes,
        faststart_mp4: bytes, container: str, tmp_path: Path) -> None:
    body, kind = (mpegts, TS) if container == "ts" else (faststart_mp4, "video/mp4")
    url = server.add(f"/fast.{container}", Route(body, kind))
    proc, report = run_json(url, "--artifacts", artifacts, env=watch_hook(
        tmp_path / "hook", FACENET_TEST_ANALYZE_AFTER_DECODING="1"))
    assert proc.returncode == 0, proc.stderr
    # Frame 0, then the 8 newest in the queue once the decoder is done; the rest dropped.
    assert (report["frames"], report["analyzed"], report["dropped"]) == (CLIP_FRAMES, 9, 266)


def test_a_url_in_capitals_is_read(artifacts: Path, server: LoopbackServer,
                                   faststart_mp4: bytes) -> None:
    """URL schemes are case-insensitive; FFmpeg's protocol names are not (``HTTP://`` was
    "Protocol not found", exit 9)."""
    url = server.add("/CAPS.mp4", Route(faststart_mp4, "video/mp4"))
    proc, report = run_json(url.replace("http://", "HTTP://"), "--fps", "2", "--artifacts",
                            artifacts)
    assert proc.returncode == 0, proc.stderr
    assert report["frames"] == CLIP_FRAMES and report["source"].startswith("http://")


def test_mjpeg_stream(artifacts: Path, server: LoopbackServer, tmp_path: Path) -> None:
    url = server.add("/cam.mjpg", Route(mjpeg(110, 170),
                                        "multipart/x-mixed-replace; boundary=frame", pace=4.0))
    proc, report = run_json(url, "--fps", "3", "--artifacts", artifacts,
                            env=keep_every_frame(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert (report["frames"], report["analyzed"], report["dropped"]) == (61, 8, 0)
    names = [t["label"] for t in report["tracks"]]
    assert "lin_manuel_miranda" in names and set(names) <= {"lin_manuel_miranda", "unknown"}


def test_a_stream_that_drops_ends_with_a_partial_timeline(
        artifacts: Path, server: LoopbackServer, mpegts: bytes,
        tmp_path: Path) -> None:
    url = server.add("/drop.ts", Route(mpegts, TS, pace=4.6, cut=0.6))
    out = tmp_path / "partial.mp4"
    proc, report = run_json(url, "--fps", "5", "--annotate", out, "--artifacts", artifacts,
                            env=keep_every_frame(tmp_path), one_cpu=True)
    assert proc.returncode == 10, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and "/drop.ts: dropped after" in lines[0], proc.stderr
    assert report["ending"] == "failed" and report["error"] in lines[0]
    assert (report["frames"], report["analyzed"], report["dropped"]) == (CUT_FRAMES, 27, 0)
    assert f"dropped after {CUT_FRAMES} frames" in lines[0]
    assert "lin_manuel_miranda" in [t["name"] for t in report["tracks"]]
    with av.open(str(out)) as written:
        assert sum(1 for _ in written.decode(video=0)) == report["frames"] - report["dropped"]


def test_a_stream_that_stalls_ends_after_the_timeout(
        artifacts: Path, server: LoopbackServer, mpegts: bytes, tmp_path: Path) -> None:
    url = server.add("/stall.ts", Route(mpegts, TS, pace=4.6, cut=0.6, then="stall"))
    proc, report = run_json(url, "--fps", "5", "--timeout", "2", "--artifacts", artifacts,
                            env=keep_every_frame(tmp_path), one_cpu=True)
    assert proc.returncode == 10, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and "stalled, nothing received for 2 s" in lines[0], proc.stderr
    assert report["ending"] == "failed" and f"after {CUT_FRAMES} frames" in lines[0]
    assert (report["frames"], report["analyzed"], report["dropped"]) == (CUT_FRAMES, 27, 0)


def test_reconnect_picks_a_dropped_stream_up_again(
        artifacts: Path, server: LoopbackServer, mpegts: bytes, tmp_path: Path) -> None:
    url = server.add("/flaky.ts", Route(mpegts, TS, pace=4.6, cut=0.5, cut_first_only=True))
    proc, report = run_json(url, "--fps", "4", "--reconnect", "2", "--artifacts", artifacts,
                            env=keep_every_frame(tmp_path), one_cpu=True)
    assert proc.returncode == 0, proc.stderr
    assert report["reconnects"] == 1 and report["ending"] == "end"
    assert (report["frames"], report["analyzed"], report["dropped"]) == (410, 55, 0)
    assert "reconnecting" in proc.stderr


def test_ctrl_c_on_a_stream_prints_the_timeline_so_far(
        artifacts: Path, server: LoopbackServer, mpegts: bytes,
        tmp_path: Path) -> None:
    """Ctrl-C as the 60th frame is handed over (the process signals itself: an event of the
    run, not a race with the stream's pace); the stream stalls half-way, so only the signal can
    end the run. The timeline and the annotated video hold exactly the 60 frames."""
    url = server.add("/long.ts", Route(mpegts, TS, cut=0.5, then="stall"))
    out = tmp_path / "live.mp4"
    env = watch_hook(tmp_path / "hook", FACENET_TEST_KEEP_EVERY_FRAME="1",
                     FACENET_TEST_SIGINT_AT_FRAME="60")
    proc, report = run_json(url, "--fps", "4", "--annotate", out, "--timeout", "120",
                            "--artifacts", artifacts, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "interrupted after" in proc.stderr
    assert report["ending"] == "interrupted"
    assert (report["frames"], report["analyzed"], report["dropped"]) == (60, 8, 0)
    labels = {t["label"] for t in report["tracks"]}
    assert labels <= allowed_names(0, 59) | {"unknown"}, report["tracks"]
    assert "lin_manuel_miranda" in labels, report["tracks"]
    with av.open(str(out)) as written:
        assert sum(1 for _ in written.decode(video=0)) == 60


def test_docs_video_example_runs(artifacts: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "video_example.py"), str(artifacts),
         str(tmp_path / "example.db"), str(shared_data())],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    pattern = re.compile(r"track (\d+): (\S+), frames (\d+)-(\d+) ")
    rows = [{"track": int(m[1]), "label": m[2], "first_frame": int(m[3]),
             "last_frame": int(m[4])}
            for m in map(pattern.match, proc.stdout.splitlines()) if m]
    assert rows, proc.stdout
    check_cast(rows)
