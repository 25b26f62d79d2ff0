"""``facenet recognize`` on a video file, a camera or a stream: the timeline of who appears when.

:mod:`toolchain.cli.recognize` hands a run over here when its argument names a video (a file with
a video suffix, a stream URL) or ``--camera N`` is given; the options below are declared here and
added to its signature. The library does the work (:func:`toolchain.video.track`); this
module shows progress, writes the annotated video and prints the timeline as a table, JSON or CSV.

Exit codes: ``0`` the source ended (or a camera/stream was stopped with Ctrl-C), ``2`` usage,
``3`` a video file that cannot be used (damaged mid-way: the timeline so far is printed), ``9`` a
camera or stream that cannot be opened, ``10`` a camera or stream that stalled or dropped (after
``--reconnect`` attempts; the timeline so far is printed), ``130`` a file run stopped with Ctrl-C
(the timeline so far is printed).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from toolchain.cli.common import console, display_text, fail, problem

if TYPE_CHECKING:
    from toolchain.runtime.recognizer import Recognizer
    from toolchain.video import VideoSource, VideoSummary, VideoTracking
    from toolchain.video.results import FrameResult, TrackSummary

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


@dataclass(frozen=True)
class VideoOptions:
    """The video options of ``facenet recognize`` (see the option declarations)."""

    camera: int | None = None
    every: int = 1
    fps: float | None = None
    min_track_frames: int = 3
    min_name_face: float = 40.0
    reconnect: int = 0
    timeout: float = 10.0


def wants_video(arguments: Sequence[str] | None, camera: int | None) -> bool:
    """The run is a video run: ``--camera``, or an argument naming a video or stream."""
    from toolchain.video.sources import is_video_argument

    return camera is not None or any(is_video_argument(a) for a in arguments or ())


def check_arguments(arguments: list[str] | None) -> list[str] | None:
    """The path arguments' callback: every argument but a stream URL must exist (usage error)."""
    from toolchain.video.sources import is_stream_url

    for argument in arguments or ():
        if not is_stream_url(argument) and not Path(argument).exists():
            raise typer.BadParameter(f"Path {argument!r} does not exist.")
    return arguments


def annotate_value(value: Path | None) -> Path | None:
    """``--annotate``: a folder, or (for a video) a ``.mp4`` / ``.mov`` / ``.mkv`` file."""
    from toolchain.video.writer import CONTAINERS

    if value is not None and value.is_file() and value.suffix.lower() not in CONTAINERS:
        raise typer.BadParameter(f"{value} is a file: photos are annotated into a folder, a "
                                 f"video into a {', '.join(sorted(CONTAINERS))} file")
    return value


def photo_arguments(arguments: list[str] | None, annotate: Path | None) -> list[Path]:
    """The photo run's paths; a usage error if there are none or ``--annotate`` is a file."""
    if not arguments:
        raise typer.BadParameter("give photos, a folder, a video or --camera N",
                                 param_hint="PATHS")
    if annotate is not None and annotate.is_file():
        raise typer.BadParameter(f"{annotate} is a file: photos are annotated into a folder",
                                 param_hint="--annotate")
    return [Path(a) for a in arguments]


def _source(arguments: Sequence[str], camera: int | None) -> VideoSource:
    from toolchain.video.sources import camera_source, source_from_argument

    if camera is not None and arguments:
        raise typer.BadParameter("--camera takes no path: give either a camera or files",
                                 param_hint="--camera")
    if camera is not None:
        return camera_source(camera)
    if len(arguments) != 1:
        raise typer.BadParameter("give one video file or stream URL at a time (photos and "
                                 "videos are not mixed)", param_hint="PATHS")
    if Path(arguments[0]).is_dir():
        raise typer.BadParameter(f"{arguments[0]} is a folder, not a video file",
                                 param_hint="PATHS")
    return source_from_argument(arguments[0])


def _annotation_path(annotate: Path, source: VideoSource) -> Path:
    """``--annotate``: the file itself, or ``<folder>/<source stem>.annotated.mp4``."""
    from toolchain.video.writer import CONTAINERS

    if annotate.suffix.lower() in CONTAINERS and not annotate.is_dir():
        return annotate
    return annotate / f"{source.stem}.annotated.mp4"


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


def _rounded(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def _track_json(track: TrackSummary) -> dict[str, Any]:
    return {
        "track": track.track_id, "name": track.label, "known": track.name is not None,
        "nearest": track.nearest, "first_time": round(track.first_time, 3),
        "last_time": round(track.last_time, 3), "first_frame": track.first_frame,
        "last_frame": track.last_frame, "frames": track.frames, "votes": track.votes,
        "voters": track.voters, "median_distance": _rounded(track.median_distance),
        "best_distance": _rounded(track.best_distance), "best_frame": track.best_frame,
        "best_time": round(track.best_time, 3), "best_box": [round(v, 2) for v in track.best_box],
        "candidates": [{"name": c.name, "median_distance": round(c.distance, 6)}
                       for c in track.candidates],
    }


def summary_json(summary: VideoSummary, gallery: Path | str, match: str) -> dict[str, Any]:
    """The ``--json`` document of a run."""
    return {
        "source": summary.source, "kind": summary.kind, "fps": summary.fps,
        "width": summary.size[0], "height": summary.size[1], "frames": summary.frames,
        "analyzed": summary.analyzed, "dropped": summary.dropped,
        "reconnects": summary.reconnects, "elapsed_seconds": round(summary.elapsed, 3),
        "frames_per_second": round(summary.frames_per_second, 2),
        "ending": str(summary.ending), "error": summary.error, "gallery": str(gallery),
        "threshold": summary.threshold, "threshold_source": summary.threshold_source.value,
        "match": match, "tracks": [_track_json(t) for t in summary.tracks],
    }


def _print_csv(summary: VideoSummary) -> None:
    from toolchain.cli.recognize import _csv_text

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for t in summary.tracks:
        writer.writerow([
            t.track_id, _csv_text(t.label), f"{t.first_time:.3f}", f"{t.last_time:.3f}",
            t.first_frame, t.last_frame, t.frames,
            "" if t.median_distance is None else f"{t.median_distance:.4f}",
            "" if t.best_distance is None else f"{t.best_distance:.4f}", t.best_frame,
            *(f"{v:.1f}" for v in t.best_box),
            "" if t.nearest is None else _csv_text(t.nearest), t.votes,
            json.dumps([{"name": c.name, "median_distance": round(c.distance, 4)}
                        for c in t.candidates], ensure_ascii=False),
        ])
    sys.stdout.write(buffer.getvalue())


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
    """Go through the run (progress, annotated frames); ``True`` if Ctrl-C stopped it."""
    with _progress(run) as advance:
        try:
            for result in run:
                if write is not None:
                    write(result)
                advance(result)
        except KeyboardInterrupt:
            run.close()
            return True
    return False


def recognize_video(open_recognizer: Callable[[], Recognizer], arguments: Sequence[str] | None,
                    options: VideoOptions, *, as_json: bool, as_csv: bool,
                    annotate: Path | None, match: str, top_k: int) -> int:
    """Run ``facenet recognize`` on one video source; the exit code (see the module docstring).

    Args:
        open_recognizer: Opens the recognizer with the command's model, gallery and options.
        arguments: The path arguments (one video file or stream URL, none with ``--camera``).
        options: The video options.
        as_json: Print the timeline as JSON.
        as_csv: Print it as CSV.
        annotate: ``--annotate``: a video file to write, or a folder for
            ``<source>.annotated.mp4``.
        match: The match mode's name (reported).
        top_k: Candidates listed per track.
    """
    from toolchain.core.errors import ToolchainError
    from toolchain.video import annotated_video, track

    source = _source(list(arguments or ()), options.camera)
    if options.fps is not None and options.every != 1:
        raise typer.BadParameter("--every and --fps are exclusive", param_hint="--every/--fps")
    rec = open_recognizer()
    with rec:
        gallery = rec.gallery()
        if not gallery.people():
            problem(f"warning: the gallery {gallery.path} is empty: every face will be "
                    "`unknown`; enroll people first (`facenet enroll`)")
        run = track(rec, source, every=options.every, fps=options.fps,
                    min_track_frames=options.min_track_frames,
                    min_name_face=options.min_name_face, reconnect=options.reconnect,
                    timeout=options.timeout)
        with run, contextlib.ExitStack() as outputs:
            write = None
            if annotate is not None:
                inputs = [] if source.live else [Path(source.location)]
                write = outputs.enter_context(annotated_video(
                    _annotation_path(annotate, source), run.feed.fps, inputs))
            try:
                interrupted = _consume(run, write)
                error: ToolchainError | None = None
            except ToolchainError as exc:
                interrupted, error = False, exc
        summary = run.summary()
        gallery_path = gallery.path
    if as_json:
        print(json.dumps(summary_json(summary, gallery_path, match), indent=2))
    elif as_csv:
        _print_csv(summary)
    else:
        _print_table(summary, match, top_k)
    if not summary.tracks:
        problem(f"{summary.source}: no face tracked")
    if error is not None:
        fail(str(error), error.exit_code)
    if interrupted:
        problem(f"interrupted after {summary.frames} frames: the timeline above is the part "
                "seen")
        return 0 if source.live else INTERRUPTED_FILE_EXIT
    return 0
