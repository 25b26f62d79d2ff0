"""Bad-input corpus, video area: ``facenet watch`` on video files, cameras and stream URLs
that cannot be used.

Registered on import (``test_bad_inputs`` imports every ``corpus_*.py``); each case is checked by
``test_bad_inputs.test_refused``: the exit code (3 a video file that cannot be used, 9 a camera or
stream that cannot be opened, 2 usage, 6 PyAV not installed), ONE error line naming the source and
the problem, and nothing in the workspace changed (no annotated video half-written, the gallery
untouched). Clips are generated here with PyAV; streams go to 127.0.0.1 only.
"""

from __future__ import annotations

import http.server
import socket
import subprocess
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from helpers.cli import facenet
from helpers.corpus import Command, Outcome, Store, Workspace, case
from helpers.corpus_cli import with_fifo, without


def clip(path: Path, frames: int = 10, fmt: str | None = None) -> Path:
    """A small H.264 clip (moov at the end of an MP4, as FFmpeg writes it)."""
    import av

    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            image = np.full((48, 64, 3), 10 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def huge_frames(path: Path, side: int = 9_500, frames: int = 2) -> Path:
    """An MJPEG ``.mkv`` of flat gray ``side`` x ``side`` frames (9,500^2 = 90.25 M pixels, over
    the photos' limit of 89.48 M): about 1.4 MB a frame on disk, 271 MB each once decoded to
    RGB."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mjpeg", rate=5)
        stream.width, stream.height, stream.pix_fmt = side, side, "yuvj420p"
        frame = av.VideoFrame(side, side, "yuvj420p")
        for plane in frame.planes:
            plane.update(b"\x80" * plane.buffer_size)
        for index in range(frames):
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def audio_only(path: Path) -> Path:
    """An MP4 holding one AAC audio stream and no video."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100)
        block = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                           layout="mono")
        block.sample_rate = 44100
        for packet in [*stream.encode(block), *stream.encode()]:
            container.mux(packet)
    return path


def watch(ws: Workspace, *args: str | Path) -> Command:
    return partial(facenet, "watch", *args, "--artifacts", ws.artifacts)


def video_case(name: str, phrase: str, make: Callable[[Workspace], Path]) -> None:
    @case(f"video-{name}", needs="models")
    def _setup(ws: Workspace, store: Store | None) -> tuple[Command, Outcome]:
        assert store is not None
        ws.runtime(store)
        path = make(ws)
        return watch(ws, path), Outcome(3, path.name, (phrase,))


def _truncated(ws: Workspace) -> Path:
    whole = clip(ws.inputs / "whole.mp4").read_bytes()
    (ws.inputs / "whole.mp4").unlink()
    return ws.photo("cut.mp4", data=whole[: len(whole) // 2])


def _unknown_codec(ws: Workspace) -> Path:
    data = clip(ws.inputs / "h264.mkv").read_bytes()
    (ws.inputs / "h264.mkv").unlink()
    assert data.count(b"V_MPEG4/ISO/AVC") == 1
    return ws.photo("odd codec.mkv", data=data.replace(b"V_MPEG4/ISO/AVC", b"V_MPEG4/ISO/XYZ"))


VIDEO_FILES: dict[str, tuple[str, Callable[[Workspace], Path]]] = {
    "zero-length": ("empty file (0 bytes)", lambda ws: ws.photo("empty.mp4", data=b"")),
    "not-a-video": ("not a readable video",
                    lambda ws: ws.photo("notes.mp4", data=b"these are notes, not frames\n" * 40)),
    "corrupt-header": ("not a readable video",
                       lambda ws: ws.photo("noise.mkv", data=np.random.default_rng(3).bytes(
                           20_000))),
    "truncated-before-index": ("not a readable video", _truncated),
    "audio-only": ("no video stream (audio streams only)",
                   lambda ws: audio_only(ws.inputs / "song.mp4")),
    "unsupported-codec": ("codec is not one this FFmpeg build can decode", _unknown_codec),
    "frames-over-the-pixel-limit": ("9500x9500 = 90,250,000 pixels exceeds the",
                                    lambda ws: huge_frames(ws.inputs / "huge.mkv")),
}
"""Video files that cannot be used: what the error line says."""

for _name, (_phrase, _make) in VIDEO_FILES.items():
    video_case(_name, _phrase, _make)


@case("video-fifo-named-mp4", needs="models")
def _fifo(ws: Workspace, store: Store | None) -> tuple[Command, Outcome]:
    assert store is not None
    ws.runtime(store)
    path = ws.inputs / "live.mp4"
    return (partial(with_fifo, path, watch(ws, path)),
            Outcome(3, "live.mp4", ("is a FIFO, not a regular file",)))


@case("video-annotate-to-a-fifo", needs="models")
def _annotate_fifo(ws: Workspace, store: Store | None) -> tuple[Command, Outcome]:
    """Before: the check for an earlier run's video opened the FIFO and waited for a writer
    forever."""
    assert store is not None
    ws.runtime(store)
    video = clip(ws.inputs / "clip.mp4")
    out = ws.inputs / "out.mp4"
    command = partial(facenet, "watch", video, "--annotate", out, "--artifacts", ws.artifacts,
                      timeout=120)
    return partial(with_fifo, out, command), Outcome(3, "out.mp4", ("is a FIFO",))


@case("video-camera-missing", needs="models")
def _camera(ws: Workspace, store: Store | None) -> tuple[Command, Outcome]:
    assert store is not None
    ws.runtime(store)
    index = next(i for i in range(90, 200) if not Path(f"/dev/video{i}").exists())
    return (watch(ws, "--camera", str(index)),
            Outcome(9, f"camera {index} (/dev/video{index})", ("does not exist",)))


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@case("video-url-refused", needs="models")
def _refused(ws: Workspace, store: Store | None) -> tuple[Command, Outcome]:
    assert store is not None
    ws.runtime(store)
    url = f"rtsp://viewer:hunter2@127.0.0.1:{closed_port()}/cam"
    outcome = Outcome(9, f"rtsp://viewer:***@127.0.0.1:{url.rsplit(':', 1)[1]}",
                      ("cannot open", "onnection refused"))
    return watch(ws, url, "--timeout", "3"), outcome


def with_not_found(args: Callable[[str], Command]) -> subprocess.CompletedProcess[str]:
    """Run the command against a loopback HTTP server that answers 404 to everything."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        def log_message(self, *_args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        return args(f"http://127.0.0.1:{server.server_address[1]}/gone.ts")()
    finally:
        server.shutdown()
        server.server_close()


@case("video-url-not-found", needs="models")
def _not_found(ws: Workspace, store: Store | None) -> tuple[Command, Outcome]:
    assert store is not None
    ws.runtime(store)
    return (partial(with_not_found, lambda url: watch(ws, url, "--timeout", "5")),
            Outcome(9, "/gone.ts", ("cannot open", "404")))


@case("video-annotate-over-a-foreign-file", needs="models")
def _foreign(ws: Workspace, store: Store | None) -> tuple[Command, Outcome]:
    assert store is not None
    ws.runtime(store)
    video = clip(ws.inputs / "clip.mp4")
    mine = ws.photo("holiday.mp4", data=b"my own video, not an annotation")
    return (watch(ws, video, "--annotate", mine),
            Outcome(3, "holiday.mp4", ("not replacing it",)))


@case("video-annotate-over-the-input", needs="models")
def _over_input(ws: Workspace, store: Store | None) -> tuple[Command, Outcome]:
    assert store is not None
    ws.runtime(store)
    video = clip(ws.inputs / "clip.mp4")
    return (watch(ws, video, "--annotate", video),
            Outcome(3, "clip.mp4", ("is the video being read",)))


@case("video-annotate-to-another-container", needs="models")
def _annotate_avi(ws: Workspace, store: Store | None) -> tuple[Command, Outcome]:
    """Before: ``out.avi`` (a suffix the writer does not write) was taken for a folder, created,
    and the video written into it."""
    assert store is not None
    ws.runtime(store)
    video = clip(ws.inputs / "clip.mp4")
    return (watch(ws, video, "--annotate", ws.inputs / "out.avi"),
            Outcome(3, "out.avi", ("an annotated video is written as", "not .avi")))


@case("usage-video-and-photo-mixed")
def _mixed(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    video = ws.photo("clip.mp4", data=b"never opened")
    photo = ws.photo("face.jpg", data=b"never opened")
    return (watch(ws, video, photo),
            Outcome(2, "face.jpg", ("unexpected extra argument",)))


@case("usage-video-given-to-recognize")
def _video_to_recognize(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    video = ws.photo("clip.mp4", data=b"never opened")
    return (partial(facenet, "recognize", video, "--artifacts", ws.artifacts),
            Outcome(2, "clip.mp4", ("is a video: use `facenet watch",)))


@case("usage-camera-with-a-path")
def _camera_and_path(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    video = ws.photo("clip.mp4", data=b"never opened")
    return watch(ws, video, "--camera", "0"), Outcome(2, "--camera", ("takes no SOURCE",))


@case("usage-every-and-fps")
def _every_and_fps(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    video = ws.photo("clip.mp4", data=b"never opened")
    return (watch(ws, video, "--every", "2", "--fps", "5"),
            Outcome(2, "--every/--fps", ("exclusive",)))


@case("usage-every-zero")
def _every_zero(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    video = ws.photo("clip.mp4", data=b"never opened")
    return (watch(ws, video, "--every", "0"),
            Outcome(2, "--every", ("greater than or equal to 1",)))


@case("missing-extra-video", needs="models")
def _no_pyav(ws: Workspace, store: Store | None) -> tuple[Command, Outcome]:
    assert store is not None
    ws.runtime(store)
    video = ws.photo("clip.mp4", data=b"never opened")
    return (partial(without, {"av"}, "watch", video, "--artifacts", ws.artifacts),
            Outcome(6, "'av'", ('pip install "facenet-toolchain[video]"',)))
