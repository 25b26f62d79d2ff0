"""Recognize and track the faces of a video source: :func:`track`.

Example::

    from toolchain import Recognizer
    from toolchain.video import track

    with Recognizer.from_artifacts("artifacts", gallery="people.db") as rec:
        run = track(rec, "clip.mp4", every=3)
        for frame in run:
            print(frame.index, [(f.track_id, f.label) for f in frame.faces])
        for t in run.summary().tracks:
            print(t.track_id, t.label, t.first_time, t.last_time, t.median_distance)

Frames are decoded ahead in a thread (:mod:`~toolchain.video.feed`); a frame picked for
analysis (``every`` / ``fps``) goes through the recognizer's detector, and its faces through
FaceNet as one batch, then the :class:`~toolchain.video.tracker.Tracker`; a frame in
between gets the boxes of the tracks of the last analyzed frame, carried at constant velocity.
"""

from __future__ import annotations

import time as clock
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from toolchain.core.errors import InputError, ToolchainError
from toolchain.runtime.faces import Face
from toolchain.video.feed import QUEUE_SIZE, FrameFeed
from toolchain.video.results import Ending, FrameResult, VideoSummary
from toolchain.video.sources import (
    DEFAULT_TIMEOUT,
    Frame,
    VideoSource,
    source_from_argument,
)
from toolchain.video.tracker import MAX_AGE, Tracker

if TYPE_CHECKING:
    from toolchain.runtime.recognizer import Recognizer

MIN_TRACK_FRAMES = 3
"""Detections a track needs to be reported (fewer: a passing false detection)."""

MIN_NAME_FACE = 40.0
"""Smallest face (short side, px) that votes for a track's name: the enrollment minimum of
:data:`toolchain.runtime.recognizer.MIN_ENROLL_FACE`, for the same reason (FaceNet sees every face
at 160x160; a 20-30 px face upscaled 5-8 times says little about the person)."""


class VideoTracking:
    """One run over a video source: iterate it for :class:`FrameResult` objects, ask
    :meth:`summary` for the timeline (any time: a partial one while running or after an error).

    Use it as a context manager (or call :meth:`close`) to stop the decoder early; call
    :meth:`stop` (from a signal handler or another thread too) to end the iteration after the
    frame being analyzed, with the run counted as interrupted.
    """

    def __init__(self, recognizer: Recognizer, source: VideoSource, *, every: int = 1,
                 fps: float | None = None, min_track_frames: int = MIN_TRACK_FRAMES,
                 min_name_face: float = MIN_NAME_FACE, reconnect: int = 0,
                 timeout: float = DEFAULT_TIMEOUT, queue_size: int = QUEUE_SIZE):
        """Open the source and the gallery (see :func:`track` for the arguments)."""
        if every < 1:
            raise InputError(f"--every must be at least 1, not {every}")
        if fps is not None and not fps > 0:
            raise InputError(f"--fps must be a positive number of frames per second, not {fps}")
        if min_track_frames < 1:
            raise InputError(f"--min-track-frames must be at least 1, not {min_track_frames}")
        self.recognizer = recognizer
        self.source = source
        self.every = every
        self.fps = fps
        self.min_track_frames = min_track_frames
        gallery = recognizer.gallery()
        self.threshold, self.threshold_source = recognizer.threshold()
        self.people = [p.name for p in gallery.people()]
        self.tracker = Tracker(self.people, self.threshold, top_k=recognizer.top_k,
                               min_name_face=min_name_face, max_age=MAX_AGE)
        self.feed = FrameFeed(source, timeout=timeout, reconnect=reconnect,
                              queue_size=queue_size)
        self.frames = 0
        self.analyzed = 0
        self.size = (0, 0)
        self.ending = Ending.RUNNING
        self.error: ToolchainError | None = None
        self._started: float | None = None
        self._stopped: float | None = None

    def _distances(self, faces: Sequence[Face]) -> np.ndarray:
        """``(F, P)`` distances of the faces to every enrolled person, in :attr:`people` order."""
        matrix = np.full((len(faces), len(self.people)), np.inf, np.float32)
        if not faces or not self.people:
            return matrix
        column = {name: i for i, name in enumerate(self.people)}
        ranked = self.recognizer.gallery().match(
            np.stack([f.embedding for f in faces]), k=len(self.people),
            mode=self.recognizer.match_mode)
        for row, candidates in enumerate(ranked):
            for candidate in candidates:
                matrix[row, column[candidate.name]] = candidate.distance
        return matrix

    def _picks(self) -> Iterator[tuple[Frame, bool]]:
        """Every frame, and whether it is analyzed (``every`` frames or ``fps`` per second)."""
        next_index, next_time = 0, 0.0
        for frame in self.feed:
            if self.fps is not None:
                pick = frame.time + 1e-6 >= next_time
                if pick:
                    next_time += 1.0 / self.fps
                    if next_time <= frame.time:
                        next_time = frame.time + 1.0 / self.fps
            else:
                pick = frame.index >= next_index
                if pick:
                    next_index = frame.index + self.every
            yield frame, pick

    def __iter__(self) -> Iterator[FrameResult]:
        """Frames in order with their tracked faces.

        Raises:
            InputError: a file is damaged mid-way (the frames before it were yielded).
            StreamInterruptedError: a live source stalled or dropped for good.
        """
        self._started = clock.perf_counter()
        try:
            for frame, pick in self._picks():
                if pick:
                    faces = self.recognizer.faces(frame.pixels)
                    tracked = self.tracker.update(frame.index, frame.time, faces,
                                                  self._distances(faces))
                    self.analyzed += 1
                else:
                    tracked = self.tracker.carry(frame.index)
                self.frames = frame.index + 1
                self.size = frame.pixels.shape[1], frame.pixels.shape[0]
                yield FrameResult(frame.index, frame.time, pick, tuple(tracked), frame.pixels)
        except ToolchainError as exc:
            self.ending, self.error = Ending.FAILED, exc
            raise
        else:
            self.ending = Ending.INTERRUPTED if self.feed.halted else Ending.END
        finally:
            if self.ending is Ending.RUNNING:
                self.ending = Ending.INTERRUPTED
            self._stopped = clock.perf_counter()
            self.feed.close()

    def summary(self) -> VideoSummary:
        """The timeline so far: tracks of at least ``min_track_frames`` detections."""
        started = self._started
        stopped = self._stopped if self._stopped is not None else clock.perf_counter()
        return VideoSummary(
            source=self.source.label, kind=str(self.source.kind), fps=self.feed.fps,
            size=self.size, frames=self.frames, analyzed=self.analyzed,
            dropped=self.feed.dropped, reconnects=self.feed.reconnects,
            elapsed=0.0 if started is None else stopped - started,
            threshold=self.threshold, threshold_source=self.threshold_source,
            tracks=tuple(self.tracker.summaries(self.min_track_frames)), ending=self.ending,
            error=None if self.error is None else str(self.error),
        )

    def stop(self) -> None:
        """End the iteration after the frame being analyzed (it is still yielded); the run counts
        as interrupted. Only sets a flag: safe from a signal handler (Ctrl-C, SIGTERM) or another
        thread (:meth:`FrameFeed.halt`)."""
        self.feed.halt()

    def close(self) -> None:
        """Stop decoding (a run not iterated to its end counts as interrupted)."""
        if self.ending is Ending.RUNNING:
            self.ending = Ending.INTERRUPTED
        self.feed.close()

    def __enter__(self) -> VideoTracking:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track(recognizer: Recognizer, source: VideoSource | Path | str, *, every: int = 1,
          fps: float | None = None, min_track_frames: int = MIN_TRACK_FRAMES,
          min_name_face: float = MIN_NAME_FACE, reconnect: int = 0,
          timeout: float = DEFAULT_TIMEOUT, queue_size: int = QUEUE_SIZE) -> VideoTracking:
    """Recognize and track the faces of a video file, camera or stream.

    Args:
        recognizer: Detector, embedder and gallery (which must exist).
        source: A :class:`VideoSource` (a camera: ``camera_source(0)``), a file path or a
            stream URL.
        every: Analyze one frame in ``every`` (tracking carries the boxes in between).
        fps: Analyze this many frames per second of video instead of ``every``.
        min_track_frames: Detections a track needs to be in the summary.
        min_name_face: Smallest face (short side, px) that votes for a track's name.
        reconnect: Consecutive attempts to reopen a live source that stalled or dropped.
        timeout: Seconds a live source may take to open, or stay silent once open.
        queue_size: Frames decoded ahead at most (a live source drops the oldest beyond).

    Returns:
        The run, to iterate; its :meth:`~VideoTracking.summary` is the timeline.

    Raises:
        InputError: an unusable file, a missing gallery, an option out of range.
        SourceUnavailableError: a camera or stream that cannot be opened.
    """
    if not isinstance(source, VideoSource):
        source = source_from_argument(str(source))
    return VideoTracking(recognizer, source, every=every, fps=fps,
                         min_track_frames=min_track_frames, min_name_face=min_name_face,
                         reconnect=reconnect, timeout=timeout, queue_size=queue_size)
