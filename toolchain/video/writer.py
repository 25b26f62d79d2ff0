"""The annotated video: every frame with its tracks' boxes and names, H.264 through PyAV.

Boxes and captions are drawn by :func:`toolchain.runtime.drawing.annotate`, as on annotated
photos (green: named, red: unknown); a caption reads ``#track name distance`` (the track's median
distance so far). The file is written to a temporary sibling and renamed into place when the run
ends, so it is never half-written; it carries
:data:`~toolchain.runtime.drawing.ANNOTATION_MARK` in its ``comment`` metadata, and an existing
file is replaced only if it carries that mark too and is not the video being read.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

from toolchain.core.atomic import atomic_file, destination
from toolchain.core.errors import InputError
from toolchain.runtime.drawing import ANNOTATION_MARK, Label, annotate
from toolchain.video.results import FrameResult, TrackedFace

CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
"""Annotated video suffixes and the FFmpeg muxer of each."""

CODEC = "libx264"
"""H.264 (x264 ships in PyAV's wheels)."""

ENCODER_OPTIONS = {"crf": "23", "preset": "veryfast"}
"""x264's default quality at a speed that keeps up with analysis."""

FALLBACK_FPS = 25.0
"""Frame rate written when the source declares none."""


def caption(face: TrackedFace) -> Label:
    """The box and ``#track name distance`` caption of a tracked face."""
    text = f"#{face.track_id} {face.label}"
    if face.distance is not None:
        text += f" {face.distance:.2f}"
    return Label(face.box, text, face.name is not None)


def has_video_mark(path: Path) -> bool:
    """``path`` is a video an earlier run annotated (its metadata carries the mark)."""
    import av

    try:
        with av.open(str(path)) as container:
            return bool(container.metadata.get("comment") == ANNOTATION_MARK)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError):
        return False


def save_still(video: Path, index: int, target: Path) -> None:
    """Write frame ``index`` of ``video`` (e.g. an annotated one, for a report) as a picture,
    atomically; the format follows ``target``'s suffix (JPEG or PNG).

    Raises:
        InputError: ``video`` has fewer frames.
    """
    import av

    from toolchain.runtime.drawing import save_image

    with av.open(str(video)) as container:
        for number, frame in enumerate(container.decode(video=0)):
            if number == index:
                save_image(frame.to_image(), target)
                return
    raise InputError(f"{video} has no frame {index}")


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def check_target(path: Path, inputs: Sequence[Path] = ()) -> str:
    """The muxer for ``path``, after checking that an annotated video may be written there.

    Nothing but a regular file is opened to look for the mark: a FIFO, a device or a socket
    (or a link to one) is refused first (:func:`toolchain.core.atomic.destination`), as opening
    a FIFO would wait for a writer forever.

    Raises:
        InputError: the suffix is not one of :data:`CONTAINERS`, ``path`` is one of ``inputs``
            (links count), is not a regular file, or exists and an earlier run did not write it.
    """
    fmt = CONTAINERS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: an annotated video is written as "
                         f"{', '.join(sorted(CONTAINERS))}, not {path.suffix or 'no suffix'}")
    destination(path)
    identity = _identity(path)
    if identity is None:
        return fmt
    if identity in {_identity(p) for p in inputs}:
        raise InputError(f"{path} is the video being read: not writing the annotated video over "
                         "it")
    if not has_video_mark(path):
        raise InputError(f"{path} exists and is not an annotated video an earlier run wrote: "
                         "not replacing it; remove it or name another file")
    return fmt


class _Encoder:
    """An H.264 stream in an open output container."""

    def __init__(self, target: Path, fmt: str, fps: float | None, size: tuple[int, int]):
        import av

        self.width, self.height = size[0] & ~1, size[1] & ~1
        if self.width < 2 or self.height < 2:
            raise InputError(f"frames of {size[0]}x{size[1]} px are too small to encode")
        self.rate = Fraction(fps or FALLBACK_FPS).limit_denominator(1001)
        self.container = av.open(str(target), "w", format=fmt)
        self.container.metadata["comment"] = ANNOTATION_MARK
        self.stream: Any = self.container.add_stream(CODEC, rate=self.rate,
                                                     options=dict(ENCODER_OPTIONS))
        self.stream.width, self.stream.height = self.width, self.height
        self.stream.pix_fmt = "yuv420p"
        self.last_pts = -1

    def write(self, result: FrameResult) -> None:
        import av

        pixels = annotate(result.pixels, [caption(f) for f in result.faces])
        frame = av.VideoFrame.from_image(pixels.crop((0, 0, self.width, self.height)))
        frame.pts = max(self.last_pts + 1, round(result.time * self.rate))
        self.last_pts = frame.pts
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def finish(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


@contextlib.contextmanager
def annotated_video(path: Path, fps: float | None,
                    inputs: Sequence[Path] = ()) -> Iterator[Callable[[FrameResult], None]]:
    """Write an annotated video to ``path``: yields the per-frame writer.

    The video appears at ``path`` when the block ends without an exception, if it got at least
    one frame; on an exception nothing is left behind. Its size is the first frame's (an odd side
    loses its last pixel row or column: H.264 in 4:2:0 needs even sides).

    Args:
        path: The ``.mp4`` / ``.mov`` / ``.mkv`` to write.
        fps: The source's frame rate (frame times place each frame; a gap stays a gap).
        inputs: Files the run reads, never written over.

    Raises:
        InputError: see :func:`check_target`.
    """
    fmt = check_target(path, inputs)
    with contextlib.ExitStack() as stack:
        encoder: _Encoder | None = None

        def write(result: FrameResult) -> None:
            nonlocal encoder
            if encoder is None:
                height, width = result.pixels.shape[:2]
                encoder = _Encoder(stack.enter_context(atomic_file(path)), fmt, fps,
                                   (width, height))
            encoder.write(result)

        try:
            yield write
        except BaseException:
            if encoder is not None:
                encoder.container.close()
            raise
        if encoder is not None:
            encoder.finish()
