"""Faces in video files, cameras and live streams: decoding, tracking, naming by vote.

- ``sources``: :class:`VideoSource` (file, V4L2 camera, stream URL), :class:`VideoReader` (PyAV
  decoding to RGB frames, every failure a typed error).
- ``feed``: :class:`FrameFeed`, decoding ahead in a thread through a bounded queue (a live
  source drops frames analysis cannot keep up with; reconnects with backoff).
- ``tracker``: the SORT-style :class:`Tracker` (box overlap and embedding distance) and
  :func:`name_track` (the person with the smallest median distance, within the threshold).
- ``tracking``: :func:`track`, the run over a source (:class:`VideoTracking`).
- ``results``: :class:`FrameResult`, :class:`TrackedFace`, :class:`TrackSummary`,
  :class:`VideoSummary`, :class:`Ending`.
- ``writer``: :func:`annotated_video`, the H.264 video with boxes and names.

Names load on first use: importing this package imports neither PyAV nor numpy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from toolchain.core.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "SourceKind": ".sources",
    "VideoSource": ".sources",
    "VideoReader": ".sources",
    "Frame": ".sources",
    "camera_source": ".sources",
    "source_from_argument": ".sources",
    "is_video_argument": ".sources",
    "FrameFeed": ".feed",
    "Tracker": ".tracker",
    "name_track": ".tracker",
    "track": ".tracking",
    "VideoTracking": ".tracking",
    "FrameResult": ".results",
    "TrackedFace": ".results",
    "TrackSummary": ".results",
    "VideoSummary": ".results",
    "Ending": ".results",
    "annotated_video": ".writer",
}
"""Each public name and the submodule that defines it."""

__all__ = [
    "Ending",
    "Frame",
    "FrameFeed",
    "FrameResult",
    "SourceKind",
    "TrackSummary",
    "TrackedFace",
    "Tracker",
    "VideoReader",
    "VideoSource",
    "VideoSummary",
    "VideoTracking",
    "annotated_video",
    "camera_source",
    "is_video_argument",
    "name_track",
    "source_from_argument",
    "track",
]

if TYPE_CHECKING:
    from toolchain.video.feed import FrameFeed
    from toolchain.video.results import (
        Ending,
        FrameResult,
        TrackedFace,
        TrackSummary,
        VideoSummary,
    )
    from toolchain.video.sources import (
        Frame,
        SourceKind,
        VideoReader,
        VideoSource,
        camera_source,
        is_video_argument,
        source_from_argument,
    )
    from toolchain.video.tracker import Tracker, name_track
    from toolchain.video.tracking import VideoTracking, track
    from toolchain.video.writer import annotated_video

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
