"""Video rows: ``facenet recognize`` tracking the shared clip, next to the clip's own frame rate.

The clip (``video/short_hamilton_clip.mp4`` of :data:`toolchain.bench.config.SHARED_EXAMPLES`,
when it exists) is tracked with every frame analyzed and with one frame in three (tracking
carries the boxes in between), against the six shared people enrolled; frames/s counts every
decoded frame, from the first to the last. The clip's frame rate is the baseline row: a ratio of
1 is real time.

The same clip scaled up to 1920x1080 (:data:`~toolchain.bench.rows.UPSCALED_SIZE`, H.264 at the
clip's frame rate) is tracked at one frame in three as well: the same faces in 9x the pixels,
so the row says what the resolution costs, and its detail says whether the tracks (name, first
and last frame) are the same as at the clip's own size.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolchain.bench.rows import UPSCALED_SIZE, VIDEO_CLIP_RATE, Row, Section, video_row
from toolchain.bench.specs import VideoSpec

if TYPE_CHECKING:
    from toolchain.bench.scheduler import Scheduler

CLIP = Path("video") / "short_hamilton_clip.mp4"
"""The clip, under the shared examples folder."""

EVERY = (1, 3)
"""Analyze every frame, and one in three."""

UPSCALED_EVERY = 3
"""The scaled-up clip is analyzed one frame in three (the issue's setting for 1080p)."""

QUICK_FRAMES = 30
"""Frames per repetition in the quick setting."""


def upscale(clip: Path, target: Path, size: tuple[int, int], frames: int | None) -> Path:
    """Write ``clip`` scaled to ``size`` (bicubic, H.264 at the clip's frame rate) to ``target``.

    Args:
        clip: The source video.
        target: The file written (a bench work file).
        size: Width and height of the written frames.
        frames: Only the first ``frames`` frames (``None``: all).
    """
    import av

    from toolchain.video.writer import CODEC, ENCODER_OPTIONS, FALLBACK_FPS

    with av.open(str(clip)) as source, av.open(str(target), "w") as out:
        video = source.streams.video[0]
        rate = Fraction(video.average_rate or FALLBACK_FPS).limit_denominator(1001)
        stream: Any = out.add_stream(CODEC, rate=rate, options=dict(ENCODER_OPTIONS))
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for index, frame in enumerate(source.decode(video)):
            if frames is not None and index >= frames:
                break
            scaled = frame.reformat(width=size[0], height=size[1], format="yuv420p",
                                    interpolation="BICUBIC")
            scaled.pts, scaled.time_base = index, 1 / rate
            for packet in stream.encode(scaled):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return target


def measure_video(scheduler: Scheduler, clip: Path, people: list[tuple[str, Path]]) -> None:
    """Append the video rows to ``scheduler.rows``."""
    config = scheduler.config
    gallery = scheduler.work / "video_gallery.db"
    scheduler.enroll(gallery, [[name, str(p)] for name, p in people])
    frames = QUICK_FRAMES if config.quick else None
    clip_fps = None
    tracks: dict[int, list[Any]] = {}
    for every in EVERY:
        run = scheduler.worker(VideoSpec(str(clip), scheduler.art, str(gallery), every,
                                         config.e2e_repeats, frames))
        clip_fps = run.result["clip_fps"]
        tracks[every] = run.result["tracks"]
        scheduler.rows.append(Row(
            Section.VIDEO, video_row(every), "frames/s", run.result["samples"],
            baseline=VIDEO_CLIP_RATE, peak_rss_mb=run.peak_rss_mb,
            detail={key: run.result[key] for key in ("frames", "analyzed", "named")},
        ))
    big = upscale(clip, scheduler.work / "clip_upscaled.mp4", UPSCALED_SIZE, frames)
    run = scheduler.worker(VideoSpec(str(big), scheduler.art, str(gallery), UPSCALED_EVERY,
                                     config.e2e_repeats, frames))
    scheduler.rows.append(Row(
        Section.VIDEO, video_row(UPSCALED_EVERY, UPSCALED_SIZE), "frames/s",
        run.result["samples"], baseline=VIDEO_CLIP_RATE, peak_rss_mb=run.peak_rss_mb,
        detail={**{key: run.result[key] for key in ("frames", "analyzed", "named")},
                "tracks": len(run.result["tracks"]),
                "same_tracks_as_clip": run.result["tracks"] == tracks[UPSCALED_EVERY]},
    ))
    if clip_fps:
        scheduler.rows.append(Row(Section.VIDEO, VIDEO_CLIP_RATE, "frames/s", [clip_fps],
                                  detail={"clip": str(clip)}))
