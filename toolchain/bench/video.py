"""Video rows: ``facenet recognize`` tracking the shared clip, next to the clip's own frame rate.

The clip (``video/short_hamilton_clip.mp4`` of :data:`toolchain.bench.config.SHARED_EXAMPLES`,
when it exists) is tracked with every frame analyzed and with one frame in three (tracking
carries the boxes in between), against the six shared people enrolled; frames/s counts every
decoded frame, from the first to the last. The clip's frame rate is the baseline row: a ratio of
1 is real time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from toolchain.bench.rows import VIDEO_CLIP_RATE, Row, Section, video_row
from toolchain.bench.specs import VideoSpec

if TYPE_CHECKING:
    from toolchain.bench.scheduler import Scheduler

CLIP = Path("video") / "short_hamilton_clip.mp4"
"""The clip, under the shared examples folder."""

EVERY = (1, 3)
"""Analyze every frame, and one in three."""

QUICK_FRAMES = 30
"""Frames per repetition in the quick setting."""


def measure_video(scheduler: Scheduler, clip: Path, people: list[tuple[str, Path]]) -> None:
    """Append the video rows to ``scheduler.rows``."""
    config = scheduler.config
    gallery = scheduler.work / "video_gallery.db"
    scheduler.enroll(gallery, [[name, str(p)] for name, p in people])
    clip_fps = None
    for every in EVERY:
        run = scheduler.worker(VideoSpec(str(clip), scheduler.art, str(gallery), every,
                                         config.e2e_repeats,
                                         QUICK_FRAMES if config.quick else None))
        clip_fps = run.result["clip_fps"]
        scheduler.rows.append(Row(
            Section.VIDEO, video_row(every), "frames/s", run.result["samples"],
            baseline=VIDEO_CLIP_RATE, peak_rss_mb=run.peak_rss_mb,
            detail={key: run.result[key] for key in ("frames", "analyzed", "named")},
        ))
    if clip_fps:
        scheduler.rows.append(Row(Section.VIDEO, VIDEO_CLIP_RATE, "frames/s", [clip_fps],
                                  detail={"clip": str(clip)}))
