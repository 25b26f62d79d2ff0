"""Decoding in a background thread, handed over through a bounded queue.

Decoding (FFmpeg, which releases the GIL) overlaps face analysis in the caller's thread. The
queue holds at most ``queue_size`` frames:

- from a file, the decoder waits for room: every frame is analyzed or passed on, none is lost;
- from a camera or stream, frames keep arriving whatever the analysis does, so when the queue is
  full the OLDEST waiting frame is dropped for the new one (the picture stays current) and counted
  in :attr:`FrameFeed.dropped`.

A live source that fails or stalls is reopened up to ``reconnect`` times in a row, waiting
:data:`BACKOFF_START` seconds before the first attempt and twice as long before each next one (at
most :data:`BACKOFF_MAX`); frame numbers and times go on from where the source stopped. Only a
frame ends a row of attempts: an open that succeeds but brings no frame (an MP4 whose index is at
its end, from an HTTP server that ignores ``Range``) counts as a failed attempt, and a source that
never brought a frame is :class:`~toolchain.core.errors.SourceUnavailableError`, not an
interruption.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator

from toolchain.core.errors import SourceUnavailableError, StreamInterruptedError
from toolchain.video.sources import DEFAULT_TIMEOUT, Frame, VideoReader, VideoSource

log = logging.getLogger(__name__)

QUEUE_SIZE = 8
"""Frames waiting for analysis at most (about a quarter of a second of a 30 fps camera)."""

BACKOFF_START = 0.5
"""Seconds before the first reconnect attempt."""

BACKOFF_MAX = 8.0
"""Longest wait between two reconnect attempts."""

CLOSE_WAIT = 2.0
"""Seconds :meth:`FrameFeed.close` waits for the decoder thread to finish."""

HALT_CHECK = 0.1
"""Seconds between two looks at :meth:`FrameFeed.halt` while waiting for a frame."""

_END = object()
"""Put in the queue after the last frame."""


class FrameFeed:
    """The frames of one source, decoded ahead in a thread.

    The source is opened in the constructor (so an unusable source raises right there); iterating
    starts the decoder and yields :class:`~toolchain.video.sources.Frame` objects, then
    re-raises, in the caller's thread, the error that ended the source, if any.

    Attributes:
        dropped: Frames of a live source dropped because the analysis was behind.
        reconnects: Times a live source was reopened after it failed or stalled.
    """

    def __init__(self, source: VideoSource, *, timeout: float = DEFAULT_TIMEOUT,
                 queue_size: int = QUEUE_SIZE, reconnect: int = 0,
                 opener: Callable[[VideoSource, float], VideoReader] = VideoReader,
                 backoff: float = BACKOFF_START):
        """Open ``source``.

        Args:
            source: What to decode.
            timeout: Seconds a live source may take to open or stay silent.
            queue_size: Frames decoded ahead at most.
            reconnect: Consecutive attempts to reopen a live source that failed or stalled.
            opener: Opens a source (a test's fake, or :class:`VideoReader`).
            backoff: Seconds before the first reconnect attempt (doubled for each next one).

        Raises:
            InputError, SourceUnavailableError: see :class:`VideoReader`.
        """
        if queue_size < 1 or reconnect < 0:
            raise ValueError("queue_size must be at least 1 and reconnect not negative")
        self.source = source
        self.timeout = timeout
        self.reconnect = reconnect
        self.dropped = 0
        self.reconnects = 0
        self._frames = 0
        self._attempts = 0
        """Reconnect attempts since the last frame."""
        self._opener = opener
        self._backoff = backoff
        self._reader = opener(source, timeout)
        self.fps = self._reader.fps
        self.frame_count = self._reader.frame_count
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self.halted = False
        """:meth:`halt` was called: the iteration ended (or ends) early."""
        self._thread = threading.Thread(target=self._decode, name="facenet-video-decoder",
                                        daemon=True)

    def __iter__(self) -> Iterator[Frame]:
        """The frames in order; the error that ended the source is raised after the last.

        The iteration also ends, between two frames, once :meth:`halt` is called (looked at
        every :data:`HALT_CHECK` seconds while waiting for a frame).
        """
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()
        while not self.halted:
            try:
                item = self._queue.get(timeout=HALT_CHECK)
            except queue.Empty:
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, Frame)
            yield item

    def halt(self) -> None:
        """End the iteration before the next frame; the decoder keeps going until :meth:`close`.

        Only sets a flag (no lock is taken), so a signal handler may call it: the frame being
        handed over or analyzed is finished first, so whatever the consumer does with each frame
        (an annotated video, a report) stays whole.
        """
        self.halted = True

    def close(self) -> None:
        """Stop the decoder and release the source (frames still queued are discarded).

        The decoder stops at its next frame; one blocked on a silent stream is not waited for
        longer than :data:`CLOSE_WAIT` seconds (it is a daemon thread, and it closes the source
        itself when its read times out).
        """
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread.is_alive():
            self._thread.join(timeout=CLOSE_WAIT)
        else:
            self._reader.close()

    def __enter__(self) -> FrameFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _put_frame(self, frame: Frame) -> None:
        if not self.source.live:
            self._put_final(frame)
            return
        while not self._stop.is_set():
            try:
                self._queue.put_nowait(frame)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def _put_final(self, item: object) -> None:
        """Wait for room (a file's frame, the end, an error): never dropped."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _reopen(self, cause: StreamInterruptedError, attempt: int) -> VideoReader:
        """A new reader after ``cause``: attempt number ``attempt`` and on, within
        :attr:`reconnect` attempts in a row (with backoff)."""
        wait = min(self._backoff * 2 ** (attempt - 1), BACKOFF_MAX)
        for number in range(attempt, self.reconnect + 1):
            log.warning("%s; reconnecting in %g s (attempt %d of %d)", cause, wait, number,
                        self.reconnect)
            if self._stop.wait(wait):
                raise cause
            try:
                reader = self._opener(self.source, self.timeout)
            except SourceUnavailableError as exc:
                log.info("reconnect attempt %d failed: %s", number, exc)
                wait = min(2 * wait, BACKOFF_MAX)
                continue
            self.reconnects += 1
            self._attempts = number
            return reader
        raise self._given_up(cause)

    def _given_up(self, cause: StreamInterruptedError) -> Exception:
        """The error that ends the source after the last attempt: a source that never brought
        a frame is unavailable (with the likely reason for an HTTP one), else interrupted."""
        attempts = f" (reconnect attempts: {self.reconnect})" if self.reconnect else ""
        if self._frames:
            return StreamInterruptedError(f"{cause}{attempts}")
        reason = ""
        if self.source.location.lower().startswith(("http:", "https:")):
            reason = ("; an MP4 served over HTTP needs its index first (`ffmpeg -i IN -c copy "
                      "-movflags +faststart OUT`) or a server that honours Range requests")
        return SourceUnavailableError(
            f"{self.source.label}: opened {self.reconnects + 1} time(s) but brought no frame "
            f"({cause}){attempts}{reason}")

    def _decode(self) -> None:
        reader = self._reader
        index, offset = 0, 0.0
        try:
            while not self._stop.is_set():
                try:
                    for frame in reader.frames(index, offset):
                        self._frames += 1
                        self._attempts = 0  # a frame ends a row of attempts
                        self._put_frame(frame)
                        index, offset = frame.index + 1, frame.time
                        if self._stop.is_set():
                            return
                    self._put_final(_END)
                    return
                except StreamInterruptedError as exc:
                    if not self.source.live:
                        raise
                    reader.close()
                    reader = self._reopen(exc, self._attempts + 1)
                    offset += 1.0 / (reader.fps or 25.0)
        except BaseException as exc:  # handed to the caller's thread, which raises it
            self._put_final(exc)
        finally:
            reader.close()
