"""What the real-video tests share: the shared clip, a private copy of the models with the six
shared people enrolled, and an HTTP server on 127.0.0.1 serving bodies as live streams.

The server (:class:`LoopbackServer`) answers each path with a :class:`Route`: its body at a pace
or as fast as the socket takes it, cut and closed or stalled half-way. It speaks HTTP/1.0 and
ignores ``Range`` (as ``python -m http.server`` does): every request gets the whole body from its
first byte.
"""

from __future__ import annotations

import http.server
import os
import shutil
import socketserver
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from helpers.cli import python_env
from helpers.real import artifacts_root, shared_data
from toolchain.runtime.recognizer import Recognizer

MODELS = ("facenet.onnx", "mtcnn_pnet.onnx", "mtcnn_rnet.onnx", "mtcnn_onet.onnx")
CLIP_FRAMES = 275


def clip() -> Path:
    return shared_data("video") / "short_hamilton_clip.mp4"


def enrolled_artifacts(root: Path) -> Path:
    """``root``: a private copy of the exported models (a re-export elsewhere cannot change them
    mid-run) with a gallery of the six shared people."""
    (root / "models").mkdir(parents=True)
    for name in MODELS:
        source = artifacts_root() / "models" / name
        if not source.is_file():
            pytest.skip(f"{source} missing: run `nox -s export` first")
        shutil.copyfile(source, root / "models" / name)
    people = shared_data("people")
    items = [(folder.name, photo) for folder in sorted(people.iterdir()) if folder.is_dir()
             for photo in sorted(folder.iterdir())]
    with Recognizer.from_artifacts(root) as rec:
        outcomes = rec.enroll_many(items)
    assert sum(o.ok for o in outcomes) >= 10, [o.message for o in outcomes if not o.ok]
    return root


@dataclass(frozen=True)
class Route:
    """What the server sends for one path."""

    body: bytes
    content_type: str
    pace: float | None = None
    """Seconds over which the body is sent (``None``: as fast as the socket takes it)."""
    cut: float | None = None
    """Share of the body after which the server stops sending."""
    then: str = "close"
    """After the cut: ``close`` the connection, or ``stall`` (keep it open, send nothing, until
    the server stops)."""
    cut_first_only: bool = False
    """Only the first request is cut (a stream that comes back)."""


class LoopbackServer:
    """An HTTP/1.0 server on 127.0.0.1 in a thread, serving :class:`Route` objects."""

    def __init__(self, routes: dict[str, Route]):
        self.routes = routes
        self.requests: dict[str, int] = {}
        self.release = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_GET(self) -> None:
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                count = server.requests[self.path] = server.requests.get(self.path, 0) + 1
                self.send_response(200)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                cut = route.cut if not (route.cut_first_only and count > 1) else None
                end = len(route.body) if cut is None else int(len(route.body) * cut)
                step = max(1, len(route.body) // 100)
                try:
                    for start in range(0, end, step):
                        self.wfile.write(route.body[start:min(end, start + step)])
                        if route.pace is not None:
                            time.sleep(route.pace / 100)
                    self.wfile.flush()
                    if cut is not None and route.then == "stall":
                        server.release.wait()
                except (BrokenPipeError, ConnectionResetError):
                    return

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def add(self, path: str, route: Route) -> str:
        """Serve ``route`` at ``path``; its URL."""
        self.routes[path] = route
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


WATCH_HOOK = """
import os

_keep = os.environ.get("FACENET_TEST_KEEP_EVERY_FRAME")
_late = os.environ.get("FACENET_TEST_ANALYZE_AFTER_DECODING")
_sigint = int(os.environ.get("FACENET_TEST_SIGINT_AT_FRAME") or 0)
if _keep or _late:
    import threading

    from toolchain.video import feed as _feed

    if _keep:
        _init = _feed.FrameFeed.__init__

        def _keeping_init(self, *args, **kwargs):
            kwargs["queue_size"] = 1_000_000
            _init(self, *args, **kwargs)

        _feed.FrameFeed.__init__ = _keeping_init
    if _late:
        _iter, _put_final = _feed.FrameFeed.__iter__, _feed.FrameFeed._put_final

        def _after_decoding(self):
            self._test_decoded = threading.Event()
            frames = _iter(self)
            first = next(frames, None)
            self._test_decoded.wait()
            if first is not None:
                yield first
                yield from frames

        def _final(self, item):
            decoded = getattr(self, "_test_decoded", None)
            if decoded is not None:
                decoded.set()
            _put_final(self, item)

        _feed.FrameFeed.__iter__ = _after_decoding
        _feed.FrameFeed._put_final = _final
if _sigint:
    import signal

    import toolchain.video as _video

    _tracking = _video.VideoTracking
    _results = _tracking.__iter__

    def _interrupting(self):
        for count, result in enumerate(_results(self), 1):
            if count == _sigint:
                os.kill(os.getpid(), signal.SIGINT)
            yield result

    _tracking.__iter__ = _interrupting
"""
"""A ``sitecustomize`` for a test's ``facenet watch`` process (loaded through ``PYTHONPATH``,
as ``tests/test_batch_ray.py`` injects its kills; the product has no hook), so that what a live
stream's run analyzes does not depend on the machine's speed:

- ``FACENET_TEST_KEEP_EVERY_FRAME``: the feed's queue never fills, so no frame is dropped and the
  frames analyzed are those of a file (the analysis may fall behind the stream);
- ``FACENET_TEST_ANALYZE_AFTER_DECODING``: the analysis takes the first frame, then waits until
  the decoder has reached the stream's end (or its error): every frame that arrives meanwhile
  beyond the queue is dropped, as on a machine infinitely slower than the stream;
- ``FACENET_TEST_SIGINT_AT_FRAME=N``: the process sends itself SIGINT (Ctrl-C) as the Nth frame's
  result is handed over."""


def watch_hook(folder: Path, **variables: str) -> dict[str, str]:
    """Write :data:`WATCH_HOOK` into ``folder``; the environment of a ``facenet watch`` that loads
    it with ``variables`` (e.g. ``FACENET_TEST_KEEP_EVERY_FRAME="1"``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(WATCH_HOOK)
    inherited = python_env()["PYTHONPATH"]
    return {"PYTHONPATH": os.pathsep.join([str(folder), inherited]), **variables}
