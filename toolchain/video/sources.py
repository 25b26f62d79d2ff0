"""Video sources (files, V4L2 cameras, stream URLs) and their decoding to RGB frames with PyAV.

A command-line argument names a source by its form: a URL whose scheme FFmpeg streams from
(:data:`STREAM_SCHEMES`), or a file whose suffix is a video container's (:data:`VIDEO_SUFFIXES`);
``--camera N`` is ``/dev/videoN`` through FFmpeg's ``v4l2`` input. :class:`VideoReader` opens
one and yields :class:`Frame` objects (RGB ``uint8`` pixels turned upright by the stream's display
rotation, as a phone records portrait video; the frame's number and its time since the first
frame), and turns every way a source can fail into one typed error:

- a file that cannot be used (empty, not a video, truncated before its index, no video stream,
  a codec this FFmpeg cannot decode, damaged mid-way, frames over the photos' pixel limit):
  :class:`InputError` (exit 3);
- a camera or stream that cannot be opened: :class:`SourceUnavailableError` (exit 9);
- a camera or stream that fails or stalls after it started: :class:`StreamInterruptedError`
  (exit 10).

PyAV ships FFmpeg inside its wheel, so nothing but ``pip install av`` is needed (no OpenCV).
"""

from __future__ import annotations

import enum
import os
import stat
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.core.atomic import file_kind
from toolchain.core.errors import InputError, SourceUnavailableError, StreamInterruptedError
from toolchain.runtime.images import check_pixel_count

STREAM_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "rtp",
                            "srt", "tcp"})
"""URL schemes read as live streams (FFmpeg's network protocols)."""

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mkv", ".webm", ".avi", ".mov", ".ts", ".mts",
                            ".m2ts", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ogv", ".mjpeg",
                            ".mjpg", ".y4m"})
"""File suffixes read as video files (anything else stays a photo)."""

CAMERA_DEVICE = "/dev/video{}"
"""The V4L2 device of ``--camera N``."""

DEFAULT_TIMEOUT = 10.0
"""Seconds a live source may take to open, and may stay silent once open, before it counts as
unavailable (at open) or stalled (later)."""


class SourceKind(enum.StrEnum):
    """What a video source is (compares equal to, and prints as, its value)."""

    FILE = "file"
    CAMERA = "camera"
    STREAM = "stream"


def redact(url: str) -> str:
    """``url`` without the password of its user part: ``rtsp://user:***@host/...``."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


@dataclass(frozen=True)
class VideoSource:
    """A video file, a V4L2 camera or a stream URL."""

    kind: SourceKind
    location: str
    """The file's path, the camera's device (``/dev/video0``) or the URL, as FFmpeg opens it."""

    @property
    def live(self) -> bool:
        """A camera or stream: frames arrive in real time, may be dropped, may stall."""
        return self.kind is not SourceKind.FILE

    @property
    def label(self) -> str:
        """How messages and reports name the source (a URL's password never shows)."""
        if self.kind is SourceKind.CAMERA:
            return f"camera {self.location.removeprefix('/dev/video')} ({self.location})"
        if self.kind is SourceKind.STREAM:
            return redact(self.location)
        return self.location

    @property
    def stem(self) -> str:
        """A file-name stem for outputs about this source (``clip``, ``camera0``, ``live``)."""
        if self.kind is SourceKind.CAMERA:
            return "camera" + self.location.removeprefix("/dev/video")
        path = urllib.parse.urlsplit(self.location).path if self.live else self.location
        return Path(path).stem or "stream"


def is_stream_url(text: str) -> bool:
    """``text`` is a URL of a scheme in :data:`STREAM_SCHEMES`."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.lower() in STREAM_SCHEMES


def is_video_argument(text: str) -> bool:
    """A command-line argument names a video: a stream URL, or a file with a video suffix."""
    return is_stream_url(text) or Path(text).suffix.lower() in VIDEO_SUFFIXES


def source_from_argument(text: str) -> VideoSource:
    """The source an argument names: a stream URL (its scheme in lower case: URL schemes are
    case-insensitive, FFmpeg's protocol names are not, so ``HTTP://`` was "Protocol not found"),
    else a video file path."""
    if not is_stream_url(text):
        return VideoSource(SourceKind.FILE, text)
    scheme, _, rest = text.partition("://")
    return VideoSource(SourceKind.STREAM, f"{scheme.lower()}://{rest}")


def camera_source(index: int) -> VideoSource:
    """``--camera N``: the V4L2 device ``/dev/videoN``."""
    if index < 0:
        raise InputError(f"camera number {index} is negative")
    return VideoSource(SourceKind.CAMERA, CAMERA_DEVICE.format(index))


@dataclass(frozen=True)
class Frame:
    """One decoded frame."""

    index: int
    """Its number in the source, from 0 (a frame dropped later keeps its number)."""
    time: float
    """Seconds since the source's first frame."""
    pixels: np.ndarray = field(repr=False)
    """``(H, W, 3)`` uint8 RGB, upright."""


def _reason(exc: BaseException) -> str:
    """FFmpeg's words for an error, without the file name PyAV appends."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text).rstrip(".")


def _upright(frame: Any) -> np.ndarray:
    """A decoded frame's RGB pixels turned by its display rotation (a multiple of 90 degrees
    counterclockwise; other angles are left as stored)."""
    pixels = frame.to_ndarray(format="rgb24")
    turns = round(frame.rotation / 90) if frame.rotation and frame.rotation % 90 == 0 else 0
    return np.ascontiguousarray(np.rot90(pixels, turns)) if turns % 4 else pixels


def _check_file(path: str) -> None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({_reason(exc)})") from exc
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path} is a {file_kind(info.st_mode)}, not a regular file: "
                         "not reading it")
    if info.st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes), not a video")


def _check_camera(source: VideoSource) -> None:
    try:
        info = os.stat(source.location)
    except FileNotFoundError:
        raise SourceUnavailableError(f"{source.label} does not exist: no V4L2 camera with that "
                                     "number on this machine") from None
    except OSError as exc:
        raise SourceUnavailableError(f"{source.label}: {_reason(exc)}") from exc
    if not stat.S_ISCHR(info.st_mode):
        raise SourceUnavailableError(f"{source.label} is a {file_kind(info.st_mode)}, not a "
                                     "camera device")


class VideoReader:
    """An open video source; :meth:`frames` decodes it.

    Raises (at construction):
        InputError: a file that is missing, empty, not a regular file, not a video, truncated
            before its index, without a video stream, in a codec this FFmpeg cannot decode, or
            whose frames are over the photos' pixel limit
            (:func:`~toolchain.runtime.images.check_pixel_count`).
        SourceUnavailableError: a camera or stream that cannot be opened within ``timeout``.
    """

    def __init__(self, source: VideoSource, timeout: float = DEFAULT_TIMEOUT):
        """Open ``source``; a live one gets ``timeout`` seconds to open and, later, per read."""
        import av

        self.source = source
        if source.kind is SourceKind.FILE:
            _check_file(source.location)
        elif source.kind is SourceKind.CAMERA:
            _check_camera(source)
        options: dict[str, Any] = {}
        if source.kind is SourceKind.CAMERA:
            options["format"] = "v4l2"
        if source.live:
            options["timeout"] = (timeout, timeout)
        self.timeout = timeout
        self._closed = False
        try:
            self._container = av.open(source.location, **options)
        except av.error.ExitError:
            raise SourceUnavailableError(
                f"{source.label}: no answer within {timeout:g} s") from None
        except (av.error.FFmpegError, OSError) as exc:
            if source.live:
                raise SourceUnavailableError(
                    f"{source.label}: cannot open ({_reason(exc)})") from None
            raise InputError(f"{source.label}: not a readable video ({_reason(exc)}; "
                             "damaged, truncated or not a video file)") from None
        try:
            self._stream = self._video_stream()
        except BaseException:
            self._container.close()
            raise

    def _video_stream(self) -> Any:
        streams = self._container.streams
        if not streams.video:
            kinds = sorted({s.type for s in streams}) or ["no"]
            raise InputError(f"{self.source.label}: no video stream ({' and '.join(kinds)} "
                             "streams only)")
        stream = streams.video[0]
        if stream.codec_context is None:
            raise InputError(f"{self.source.label}: its video codec is not one this FFmpeg "
                             "build can decode")
        check_pixel_count(stream.codec_context.width, stream.codec_context.height,
                          f"{self.source.label}: its frames")
        stream.thread_type = "AUTO"
        return stream

    @property
    def fps(self) -> float | None:
        """Frames per second the source declares (``None`` if it declares none)."""
        rate = self._stream.average_rate or self._stream.guessed_rate
        return float(rate) if rate else None

    @property
    def frame_count(self) -> int | None:
        """Frames a file declares (``None`` for live sources and files that do not say)."""
        if self.source.live:
            return None
        return int(self._stream.frames) or None

    def frames(self, start_index: int = 0, time_offset: float = 0.0) -> Iterator[Frame]:
        """Decode every frame in order.

        Args:
            start_index: Number of the first frame (a reconnected stream goes on counting).
            time_offset: Added to every time (a reconnected stream goes on from where it was).

        Raises:
            InputError: a file is damaged mid-way, its codec cannot be decoded, or a frame is
                over the pixel limit (a stream may change its size mid-way).
            StreamInterruptedError: a live source failed or sent nothing for ``timeout``
                seconds.
        """
        import av

        index = start_index
        first: float | None = None
        fallback_step = 1.0 / (self.fps or 25.0)
        try:
            for frame in self._container.decode(self._stream):
                moment = frame.time
                if moment is None:
                    moment = (index - start_index) * fallback_step
                if first is None:
                    first = moment
                check_pixel_count(frame.width, frame.height, f"{self.source.label}: frame {index}")
                yield Frame(index, time_offset + max(0.0, moment - first), _upright(frame))
                index += 1
        except av.error.DecoderNotFoundError:
            raise InputError(f"{self.source.label}: its video codec is not one this FFmpeg "
                             "build can decode") from None
        except av.error.ExitError:
            raise StreamInterruptedError(
                f"{self.source.label}: stalled, nothing received for {self.timeout:g} s "
                f"after {index} frames") from None
        except (av.error.FFmpegError, OSError) as exc:
            if self.source.live:
                raise StreamInterruptedError(f"{self.source.label}: dropped after {index} "
                                             f"frames ({_reason(exc)})") from None
            raise InputError(f"{self.source.label}: damaged after {index} frames "
                             f"({_reason(exc)})") from None

    def close(self) -> None:
        """Close the container (again: nothing happens)."""
        if not self._closed:
            self._closed = True
            self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
