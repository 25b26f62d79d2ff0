"""``facenet watch``: who appears when in a video file, a camera or a live stream.

The library does the work (:func:`toolchain.video.track`); this command opens the recognizer and
the source, shows progress, writes the annotated video and prints the timeline as a table, the
``--json`` document of :meth:`~toolchain.video.results.VideoSummary.to_dict`, or CSV (one row per
track).

Exit codes: ``0`` the source ended (or a camera/stream was stopped with Ctrl-C), ``2`` usage,
``3`` a video file that cannot be used (damaged mid-way: the timeline so far is printed), ``9`` a
camera or stream that cannot be opened, ``10`` a camera or stream that stalled or dropped (after
``--reconnect`` attempts; the timeline so far is printed), ``130`` a file run stopped with Ctrl-C
(the timeline so far is printed).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from toolchain.cli.common import (
    ArtifactsOption,
    console,
    display_text,
    fail,
    problem,
    stop_signals,
)
from toolchain.cli.options import (
    AlignOption,
    AllowCropMismatchOption,
    GalleryOption,
    MarginOption,
    MatchOption,
    MaxDetectSideOption,
    MinFaceOption,
    ModelsOption,
    PrecisionChoice,
    PrecisionOption,
    RuntimeChoice,
    RuntimeOption,
    crop_keywords,
    detection_keywords,
    model_keywords,
    open_recognizer,
    threshold_value,
)
from toolchain.cli.output import csv_text, print_csv, print_json
from toolchain.core.paths import DEFAULT_ARTIFACTS
from toolchain.gallery.schema import MatchMode

if TYPE_CHECKING:
    from toolchain.video import VideoSource, VideoSummary, VideoTracking
    from toolchain.video.results import FrameResult

app = typer.Typer()
"""``facenet watch`` (added to the root app by :mod:`toolchain.cli.app`)."""

CameraOption = Annotated[
    int | None,
    typer.Option("--camera", min=0, show_default=False, metavar="N",
                 help="Recognize faces from the V4L2 camera /dev/videoN (no path argument)."),
]
EveryOption = Annotated[
    int,
    typer.Option("--every", min=1, metavar="N",
                 help="Video: detect faces in one frame of every N; tracking carries the boxes "
                      "in between."),
]
FpsOption = Annotated[
    float | None,
    typer.Option("--fps", min=0.01, show_default=False, metavar="F",
                 help="Video: detect faces in F frames per second of video instead of --every."),
]
MinTrackFramesOption = Annotated[
    int,
    typer.Option("--min-track-frames", min=1, metavar="N",
                 help="Video: report a track only if its face was detected in N analyzed frames "
                      "(fewer: a passing false detection)."),
]
MinNameFaceOption = Annotated[
    float,
    typer.Option("--min-name-face", min=0.0, metavar="PX",
                 help="Video: faces smaller than this (short side of the box) are tracked but do "
                      "not vote for the track's name (the enrollment minimum)."),
]
ReconnectOption = Annotated[
    int,
    typer.Option("--reconnect", min=0, metavar="N",
                 help="Camera or stream: reopen it up to N times in a row when it stalls or "
                      "drops, waiting 0.5 s, then 1 s, 2 s... (at most 8 s) in between."),
]
TimeoutOption = Annotated[
    float,
    typer.Option("--timeout", min=0.1, metavar="S",
                 help="Camera or stream: seconds to open, and of silence that counts as a "
                      "stall."),
]

INTERRUPTED_FILE_EXIT = 130
"""Exit code of a file run stopped with Ctrl-C (a camera or stream stopped so exits 0)."""

CSV_COLUMNS = ("track", "name", "first_time", "last_time", "first_frame", "last_frame",
               "frames", "median_distance", "best_distance", "best_frame", "x", "y", "width",
               "height", "nearest", "votes", "candidates")
"""``--csv`` columns: one row per track; the box is the one at the best frame."""


def _source_value(value: str | None) -> str | None:
    """The SOURCE argument's callback: a file must exist and be a file; a stream URL is kept."""
    from toolchain.video.sources import is_stream_url

    if value is None or is_stream_url(value):
        return value
    if not Path(value).exists():
        raise typer.BadParameter(f"Path {value!r} does not exist.")
    if Path(value).is_dir():
        raise typer.BadParameter(f"{value} is a folder, not a video file")
    return value


def _annotate_value(value: Path | None) -> Path | None:
    """``--annotate``: a ``.mp4`` / ``.mov`` / ``.mkv`` file, or a folder."""
    from toolchain.video.writer import CONTAINERS

    if value is not None and value.is_file() and value.suffix.lower() not in CONTAINERS:
        raise typer.BadParameter(f"{value} is a file: a video is annotated into a "
                                 f"{', '.join(sorted(CONTAINERS))} file or a folder")
    return value


def _source(argument: str | None, camera: int | None) -> VideoSource:
    from toolchain.video.sources import camera_source, source_from_argument

    if camera is not None and argument is not None:
        raise typer.BadParameter("--camera takes no SOURCE: give either a camera or a video",
                                 param_hint="--camera")
    if camera is not None:
        return camera_source(camera)
    if argument is None:
        raise typer.BadParameter("give a video file, a stream URL or --camera N",
                                 param_hint="SOURCE")
    return source_from_argument(argument)


def _annotation_path(annotate: Path, source: VideoSource) -> Path:
    """``--annotate``: ``<folder>/<source stem>.annotated.mp4`` for an existing folder or a new
    name without a suffix; else the file itself, whose suffix the writer then checks (``out.avi``
    is refused, not taken for a folder to create)."""
    if annotate.is_dir() or not annotate.suffix:
        return annotate / f"{source.stem}.annotated.mp4"
    return annotate


@contextlib.contextmanager
def _progress(run: VideoTracking) -> Iterator[Callable[[FrameResult], None]]:
    """A rich progress display on stderr (only on a terminal): a bar with frames/s for a file,
    a live line (frames, analyzed, dropped, frames/s) for a camera or stream."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    err = console(stderr=True)
    total = run.feed.frame_count
    columns: list[Any] = [TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    columns.append(TextColumn("{task.fields[line]}"))
    started = time.perf_counter()
    with Progress(*columns, console=err, transient=True,
                  disable=not err.is_terminal) as progress:
        task = progress.add_task(display_text(run.source.label), total=total, line="")

        def advance(result: FrameResult) -> None:
            seen = result.index + 1
            parts = [] if total is not None else [f"{seen} frames"]
            parts += [f"{run.analyzed} analyzed",
                      f"{seen / max(time.perf_counter() - started, 1e-9):.1f} frames/s"]
            if run.source.live:
                parts.append(f"{run.feed.dropped} dropped")
            progress.update(task, completed=seen, line=", ".join(parts))

        yield advance


def _csv_rows(summary: VideoSummary) -> list[list[object]]:
    return [[
        t.track_id, csv_text(t.label), f"{t.first_time:.3f}", f"{t.last_time:.3f}",
        t.first_frame, t.last_frame, t.frames,
        "" if t.median_distance is None else f"{t.median_distance:.4f}",
        "" if t.best_distance is None else f"{t.best_distance:.4f}", t.best_frame,
        *(f"{v:.1f}" for v in t.best_box),
        "" if t.nearest is None else csv_text(t.nearest), t.votes,
        json.dumps([{"name": c.name, "median_distance": round(c.distance, 4)}
                    for c in t.candidates], ensure_ascii=False),
    ] for t in summary.tracks]


def _print_table(summary: VideoSummary, match: str, top_k: int) -> None:
    from rich.table import Table
    from rich.text import Text

    rate = f"{summary.fps:.2f} fps" if summary.fps else "no declared rate"
    title = (f"{display_text(summary.source)}: {summary.frames} frames ({rate}), "
             f"{summary.analyzed} analyzed, {summary.dropped} dropped, "
             f"{summary.frames_per_second:.1f} frames/s; threshold {summary.threshold:.3f} "
             f"({display_text(summary.threshold_source.value)}), match {match}")
    table = Table(title=title)
    for column in ("track", "name", "from", "to", "frames", "median", "best", "box at best"):
        table.add_column(column, no_wrap=True)
    table.add_column(f"top-{top_k} (median)", overflow="fold")
    for t in summary.tracks:
        table.add_row(
            str(t.track_id),
            display_text(t.name) if t.name is not None else Text("unknown", style="red"),
            f"{t.first_time:.2f} s (#{t.first_frame})", f"{t.last_time:.2f} s (#{t.last_frame})",
            str(t.frames), "-" if t.median_distance is None else f"{t.median_distance:.3f}",
            "-" if t.best_distance is None else f"{t.best_distance:.3f}",
            ",".join(f"{v:.0f}" for v in t.best_box) + f" (#{t.best_frame})",
            ", ".join(f"{display_text(c.name)} {c.distance:.2f}" for c in t.candidates),
        )
    console().print(table)


def _consume(run: VideoTracking, write: Callable[[FrameResult], None] | None) -> bool:
    """Go through the run (progress, annotated frames); ``True`` if Ctrl-C or SIGTERM stopped
    it. The signal ends the run between two frames (:meth:`VideoTracking.stop`), so the
    annotated video holds exactly the frames of the timeline; a second signal stops at once."""
    with _progress(run) as advance, stop_signals(run.stop):
        for result in run:
            if write is not None:
                write(result)
            advance(result)
    return run.summary().ending == "interrupted"


@app.command()
def watch(
    source: Annotated[str | None, typer.Argument(
        callback=_source_value, show_default=False, metavar="SOURCE",
        help="A video file, or a stream URL (rtsp://, http(s)://, udp://, ...).")] = None,
    camera: CameraOption = None,
    gallery: GalleryOption = None,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", callback=threshold_value,
        help="Name a track when its median distance is at most this [default: the gallery's "
             "calibrated threshold, else the model's metadata].")] = None,
    top_k: Annotated[int, typer.Option(
        "--top-k", min=1, max=100, help="Candidates listed per track.")] = 3,
    every: EveryOption = 1,
    fps: FpsOption = None,
    min_track_frames: MinTrackFramesOption = 3,
    min_name_face: MinNameFaceOption = 40.0,
    reconnect: ReconnectOption = 0,
    timeout: TimeoutOption = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV on stdout, one row per track.")
                      ] = False,
    annotate: Annotated[Path | None, typer.Option(
        "--annotate", callback=_annotate_value, metavar="FILE|FOLDER",
        help="Write the video with `#track name distance` boxes into this .mp4/.mov/.mkv "
             "file, or into the folder as <stem>.annotated.mp4.")] = None,
    match: MatchOption = MatchMode.NEAREST,
    min_face: MinFaceOption = None,
    max_detect_side: MaxDetectSideOption = None,
    margin: MarginOption = None,
    align: AlignOption = None,
    runtime: RuntimeOption = RuntimeChoice.onnxruntime,
    precision: PrecisionOption = PrecisionChoice.fp32,
    allow_crop_mismatch: AllowCropMismatchOption = False,
    models: ModelsOption = None,
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
) -> int:
    """Track the faces of a video, camera or stream: who appears when (a timeline)."""
    from toolchain.core.errors import ToolchainError
    from toolchain.video import annotated_video, track

    if as_json and as_csv:
        raise typer.BadParameter("--json and --csv are exclusive", param_hint="--json/--csv")
    if fps is not None and every != 1:
        raise typer.BadParameter("--every and --fps are exclusive", param_hint="--every/--fps")
    video = _source(source, camera)
    with stop_signals():  # a service manager or `timeout` stops it as Ctrl-C does
        rec = open_recognizer(artifacts, gallery, models, threshold=threshold, top_k=top_k,
                              match=match.value,
                              **crop_keywords(margin, align, allow_crop_mismatch),
                              **detection_keywords(min_face, max_detect_side),
                              **model_keywords(runtime, precision))
        with rec:
            opened = rec.gallery()
            if not opened.people():
                problem(f"warning: the gallery {opened.path} is empty: every face will be "
                        "`unknown`; enroll people first (`facenet enroll`)")
            run = track(rec, video, every=every, fps=fps, min_track_frames=min_track_frames,
                        min_name_face=min_name_face, reconnect=reconnect, timeout=timeout)
            with run, contextlib.ExitStack() as outputs:
                write = None
                if annotate is not None:
                    inputs = [] if video.live else [Path(video.location)]
                    write = outputs.enter_context(annotated_video(
                        _annotation_path(annotate, video), run.feed.fps, inputs))
                try:
                    interrupted = _consume(run, write)
                    error: ToolchainError | None = None
                except ToolchainError as exc:
                    interrupted, error = False, exc
            summary = run.summary()
            gallery_path = opened.path
        if as_json:
            print_json({"gallery": str(gallery_path), "match": match.value,
                        **summary.to_dict()})
        elif as_csv:
            print_csv(CSV_COLUMNS, _csv_rows(summary))
        else:
            _print_table(summary, match.value, top_k)
    if not summary.tracks and (error is None or summary.frames):
        problem(f"{summary.source}: no face tracked")  # not when the error says why: no frame
    if error is not None:
        fail(str(error), error.exit_code)
    if interrupted:
        problem(f"interrupted after {summary.frames} frames: the timeline above is the part "
                "seen")
        return 0 if video.live else INTERRUPTED_FILE_EXIT
    return 0
