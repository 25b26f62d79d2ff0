"""What tracking a video yields: per-frame results, and the summary of every track.

:class:`FrameResult` is one frame with its tracked faces (detected, or carried between analyzed
frames); :class:`TrackSummary` is one person's appearance (a track) with the name its frames voted
for; :class:`VideoSummary` is the whole run: the tracks in order of appearance (the timeline),
counts of frames decoded, analyzed and dropped, and how the source ended.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from toolchain.core.boxes import Box, box_dict, rounded
from toolchain.gallery import Candidate
from toolchain.runtime.faces import ThresholdSource


@dataclass(frozen=True)
class TrackedFace:
    """A face of one frame and the track it belongs to."""

    track_id: int
    box: Box
    name: str | None
    """The track's name so far (its frames' vote up to this frame), ``None``: unknown."""
    distance: float | None
    """The track's median distance so far to its nearest enrolled person."""
    observed: bool
    """Detected in this frame; ``False``: carried (predicted) between analyzed frames."""

    @property
    def label(self) -> str:
        """``name``, or ``"unknown"``."""
        return self.name if self.name is not None else "unknown"


@dataclass(frozen=True)
class FrameResult:
    """One decoded frame and its tracked faces."""

    index: int
    """Frame number in the source, from 0."""
    time: float
    """Seconds since the first frame."""
    analyzed: bool
    """Faces were detected in this frame (else carried from the last analyzed one)."""
    faces: tuple[TrackedFace, ...]
    pixels: np.ndarray = field(repr=False)
    """``(H, W, 3)`` uint8 RGB."""


@dataclass(frozen=True)
class TrackSummary:
    """One track: a face followed across frames, named by the vote of its frames.

    The name is the enrolled person whose MEDIAN distance over the track's frames is the smallest,
    if that median is within the threshold: at least half of the frames must come within the
    threshold of that person, so one bad frame cannot flip a name and one frame that came close
    cannot name a stranger. Faces smaller than the naming minimum are tracked but do not vote.
    """

    track_id: int
    name: str | None
    """The person, or ``None`` (unknown)."""
    nearest: str | None
    """The person with the smallest median distance, named or not (``None``: no vote)."""
    first_frame: int
    last_frame: int
    first_time: float
    last_time: float
    frames: int
    """Analyzed frames the face was detected in."""
    votes: int
    """Frames whose nearest person, within the threshold, was ``nearest``."""
    voters: int
    """Frames large enough to vote (see ``min_name_face``)."""
    median_distance: float | None
    """Median over the voting frames of the distance to ``nearest``."""
    best_distance: float | None
    """The smallest distance to ``nearest`` of any frame."""
    best_frame: int
    """The frame of ``best_distance`` (the largest face when no frame voted)."""
    best_time: float
    best_box: Box
    candidates: tuple[Candidate, ...]
    """The top-k people by median distance, closest first."""

    @property
    def label(self) -> str:
        """``name``, or ``"unknown"``."""
        return self.name if self.name is not None else "unknown"

    def to_dict(self) -> dict[str, Any]:
        """The track as every JSON document of the toolchain writes it (one serializer)."""
        return {
            "track": self.track_id, "name": self.name, "label": self.label,
            "nearest": self.nearest, "first_time": round(self.first_time, 3),
            "last_time": round(self.last_time, 3), "first_frame": self.first_frame,
            "last_frame": self.last_frame, "frames": self.frames, "votes": self.votes,
            "voters": self.voters, "median_distance": rounded(self.median_distance),
            "best_distance": rounded(self.best_distance), "best_frame": self.best_frame,
            "best_time": round(self.best_time, 3), "best_box": box_dict(self.best_box),
            "candidates": [{"name": c.name, "median_distance": rounded(c.distance)}
                           for c in self.candidates],
        }


class Ending(enum.StrEnum):
    """How a run ended (compares equal to, and prints as, its value)."""

    RUNNING = "running"
    """Not yet: a summary taken while frames are still coming."""
    END = "end"
    """The source ended: a file's last frame, or a stream that closed normally."""
    INTERRUPTED = "interrupted"
    """The caller stopped early (Ctrl-C)."""
    FAILED = "failed"
    """A damaged file, or a live source that stalled or dropped (``error`` says which)."""


@dataclass(frozen=True)
class VideoSummary:
    """The timeline of a run and how it went."""

    source: str
    """The source's label (a URL's password never shows)."""
    kind: str
    """``file``, ``camera`` or ``stream``."""
    fps: float | None
    """Frames per second the source declares."""
    size: tuple[int, int]
    """``(width, height)`` of the upright frames (``(0, 0)`` before the first)."""
    frames: int
    """Frames decoded (counting dropped ones)."""
    analyzed: int
    """Frames faces were detected in."""
    dropped: int
    """Frames of a live source dropped because analysis was behind."""
    reconnects: int
    elapsed: float
    """Wall-clock seconds from the first frame on."""
    threshold: float
    threshold_source: ThresholdSource
    tracks: tuple[TrackSummary, ...]
    """Tracks of at least ``min_track_frames`` frames, in order of first appearance."""
    ending: Ending
    error: str | None = None
    """Why the source ended early (``ending`` is ``failed``)."""

    @property
    def frames_per_second(self) -> float:
        """Frames handled per wall-clock second."""
        return self.frames / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def analyzed_per_second(self) -> float:
        """Frames analyzed per wall-clock second."""
        return self.analyzed / self.elapsed if self.elapsed > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The run and its timeline as every JSON document of the toolchain writes them."""
        return {
            "source": self.source, "kind": self.kind, "fps": self.fps,
            "width": self.size[0], "height": self.size[1], "frames": self.frames,
            "analyzed": self.analyzed, "dropped": self.dropped, "reconnects": self.reconnects,
            "elapsed_seconds": round(self.elapsed, 3),
            "frames_per_second": round(self.frames_per_second, 2),
            "ending": str(self.ending), "error": self.error, "threshold": self.threshold,
            "threshold_source": self.threshold_source.value,
            "tracks": [t.to_dict() for t in self.tracks],
        }
