"""Video sources, the decoding feed, the tracker, naming by vote and the annotated video.

Synthetic: clips of colored squares written with PyAV in each test, the square detector and the
tiny FaceNet-signature model of :mod:`runtime_fakes` (one color = one person); decoding, the
feed's queue, tracking, naming and encoding are the real code. The real clip on the real models
is in ``test_video_real.py``; bad files on the command line in ``corpus_video.py``.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from helpers import runtime_fakes as fakes

from toolchain.core.errors import (
    InputError,
    SourceUnavailableError,
    StreamInterruptedError,
)
from toolchain.runtime.drawing import ANNOTATION_MARK
from toolchain.runtime.faces import Face
from toolchain.video import (
    Ending,
    FrameFeed,
    FrameResult,
    SourceKind,
    Tracker,
    VideoReader,
    VideoSource,
    annotated_video,
    camera_source,
    is_video_argument,
    name_track,
    source_from_argument,
    track,
)
from toolchain.video.sources import Frame, redact
from toolchain.video.tracker import Observation

Squares = Callable[[int], list[tuple[str, int, int, int]]]
"""Frame number -> squares ``(color, x, y, side)`` on the gray background."""


def write_clip(path: Path, frames: int, squares: Squares, size: tuple[int, int] = (320, 240),
               fps: int = 30, codec: str = "libx264", fmt: str | None = None,
               audio: bool = False) -> Path:
    """Encode a clip of colored squares (near-lossless, so colors survive)."""
    container = av.open(str(path), "w", format=fmt)
    stream = container.add_stream(codec, rate=fps, options={"crf": "1"} if codec == "libx264"
                                  else {})
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
    if audio:
        sound = container.add_stream("aac", rate=44100)
    for i in range(frames):
        image = np.full((size[1], size[0], 3), fakes.BACKGROUND, np.uint8)
        for color, x, y, side in squares(i):
            image[y:y + side, x:x + side] = fakes.COLORS[color]
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    if audio:
        for i in range(10):
            block = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                               layout="mono")
            block.sample_rate, block.pts = 44100, i * 1024
            for packet in sound.encode(block):
                container.mux(packet)
        for packet in sound.encode():
            container.mux(packet)
    container.close()
    return path


def walkers(i: int) -> list[tuple[str, int, int, int]]:
    """Red walks right the whole clip; blue shows from frame 10 to 29; green (a stranger) from
    frame 20 on. No two squares share a column (the square detector boxes column runs)."""
    squares = [("red", 10 + 3 * i, 30, 60)]
    if 10 <= i < 30:
        squares.append(("blue", 210, 140, 50))
    if i >= 20:
        squares.append(("green", 265, 40, 50))
    return squares


@pytest.fixture
def recognizer(tmp_path: Path, fake_artifacts: Path) -> Iterator[object]:
    """The fake recognizer with Red and Blue enrolled (green is nobody)."""
    from toolchain.runtime.recognizer import Recognizer

    red = fakes.photo(tmp_path / "enroll" / "red.png", [("red", 60)])
    blue = fakes.photo(tmp_path / "enroll" / "blue.png", [("blue", 70)])
    with Recognizer.from_artifacts(fake_artifacts, gallery=tmp_path / "g.db") as rec:
        assert all(o.ok for o in rec.enroll_many([("Red", red), ("Blue", blue)]))
        yield rec


# ---- sources ----


def test_arguments_name_their_source() -> None:
    assert is_video_argument("clip.MP4") and is_video_argument("a/b.mkv")
    assert is_video_argument("rtsp://cam.local/stream") and is_video_argument("HTTP://x/y")
    assert not is_video_argument("photo.jpg") and not is_video_argument("folder")
    assert not is_video_argument("ftp://host/clip")
    assert source_from_argument("udp://127.0.0.1:1234").kind is SourceKind.STREAM
    assert source_from_argument("HTTP://Host/Cam.ts") == VideoSource(SourceKind.STREAM,
                                                                      "http://Host/Cam.ts")
    assert source_from_argument("clip.webm") == VideoSource(SourceKind.FILE, "clip.webm")
    camera = camera_source(2)
    assert camera.location == "/dev/video2" and camera.live and camera.stem == "camera2"
    assert camera.label == "camera 2 (/dev/video2)"
    with pytest.raises(InputError, match="negative"):
        camera_source(-1)
    url = "rtsp://admin:s3cret@10.0.0.5:554/live?x=1"
    assert redact(url) == "rtsp://admin:***@10.0.0.5:554/live?x=1"
    assert "s3cret" not in source_from_argument(url).label
    assert source_from_argument("http://h/cams/door.ts").stem == "door"


def test_reader_decodes_rgb_frames_in_order_with_times(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "c.mp4", 12, lambda i: [("red" if i % 2 else "blue", 40, 40,
                                                          100)], fps=24)
    with VideoReader(source_from_argument(str(clip))) as reader:
        assert reader.fps == 24 and reader.frame_count == 12
        frames = list(reader.frames())
    assert [f.index for f in frames] == list(range(12))
    assert np.allclose([f.time for f in frames], np.arange(12) / 24, atol=1e-6)
    for frame in frames:
        assert frame.pixels.shape == (240, 320, 3) and frame.pixels.dtype == np.uint8
        r, g, b = (int(v) for v in frame.pixels[90, 90])
        assert (r > 150 > b) if frame.index % 2 else (b > 150 > r), (frame.index, r, g, b)
        assert np.abs(frame.pixels[5, 5].astype(int) - fakes.BACKGROUND).max() <= 3


@pytest.mark.parametrize(("rotation", "top"), [(-90, "red"), (90, "blue"), (180, "none")])
def test_frames_are_turned_upright_by_the_display_rotation(tmp_path: Path, rotation: int,
                                                           top: str) -> None:
    """A phone records portrait video as landscape frames plus a display rotation."""
    path = tmp_path / "phone.mp4"
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=10, options={"crf": "1"})
    stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
    stream.set_display_rotation(rotation)
    image = np.zeros((64, 96, 3), np.uint8)
    image[:, :48] = fakes.COLORS["red"]
    image[:, 48:] = fakes.COLORS["blue"]
    for packet in [*stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")),
                   *stream.encode()]:
        container.mux(packet)
    container.close()
    with VideoReader(source_from_argument(str(path))) as reader:
        pixels = next(iter(reader.frames())).pixels
    assert pixels.shape == ((64, 96, 3) if rotation == 180 else (96, 64, 3))
    first_row = pixels[2, 2:-2].astype(int)
    red = np.abs(first_row - fakes.COLORS["red"]).max(axis=1) < 40
    blue = np.abs(first_row - fakes.COLORS["blue"]).max(axis=1) < 40
    if top == "none":
        assert blue[:10].all() and red[-10:].all(), "turned half a turn: blue now on the left"
    else:
        assert (red if top == "red" else blue).all(), (rotation, first_row[:3])


def _reader_error(path: Path) -> str:
    with pytest.raises(InputError) as caught:
        VideoReader(source_from_argument(str(path)))
    return str(caught.value)


def test_reader_refuses_unusable_files(tmp_path: Path) -> None:
    good = write_clip(tmp_path / "good.mp4", 30, walkers)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert "empty file (0 bytes)" in _reader_error(empty)
    junk = tmp_path / "junk.mkv"
    junk.write_bytes(b"not a video at all\n" * 50)
    assert "not a readable video" in _reader_error(junk)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert "not a readable video" in _reader_error(cut)
    sound = tmp_path / "sound.mp4"
    container = av.open(str(sound), "w")
    stream = container.add_stream("aac", rate=44100)
    block = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                       layout="mono")
    block.sample_rate = 44100
    for packet in [*stream.encode(block), *stream.encode()]:
        container.mux(packet)
    container.close()
    assert "no video stream (audio streams only)" in _reader_error(sound)
    mkv = write_clip(tmp_path / "h264.mkv", 5, walkers)
    data = mkv.read_bytes()
    assert data.count(b"V_MPEG4/ISO/AVC") == 1
    unknown = tmp_path / "unknown.mkv"
    unknown.write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_MPEG4/ISO/XYZ"))
    assert "codec is not one this FFmpeg build can decode" in _reader_error(unknown)
    fifo = tmp_path / "fifo.mp4"
    os.mkfifo(fifo)
    assert "is a FIFO, not a regular file" in _reader_error(fifo)
    assert "no such file" in _reader_error(tmp_path / "missing.mp4")


def test_damaged_middle_of_a_file_ends_after_the_good_frames(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "c.ts", 60, walkers, fmt="mpegts")
    data = bytearray(clip.read_bytes())
    data[len(data) // 2:] = b"\xff" * (len(data) - len(data) // 2)
    clip.write_bytes(bytes(data))
    with VideoReader(source_from_argument(str(clip))) as reader:
        frames = list(reader.frames())
    assert 10 < len(frames) < 60


def test_frames_over_the_pixel_limit_are_refused_at_open_and_mid_way(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The photos' decompression-bomb limit applies to every frame: to the size a file declares
    (before any frame is decoded) and to each frame (a stream can change size). A raw MJPEG file
    of three 64x48 JPEGs then one 200x200, under a limit of 10,000 pixels."""
    from PIL import Image

    def jpeg(side: tuple[int, int]) -> bytes:
        import io

        buffer = io.BytesIO()
        Image.new("RGB", side, (90, 120, 150)).save(buffer, format="JPEG")
        return buffer.getvalue()

    growing = tmp_path / "growing.mjpeg"
    growing.write_bytes(jpeg((64, 48)) * 3 + jpeg((200, 200)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    with VideoReader(source_from_argument(str(growing))) as reader:
        frames = []
        with pytest.raises(InputError, match=r"frame 3: 200x200 = 40,000 pixels exceeds the "
                                             r"10,000-pixel"):
            frames.extend(reader.frames())
    assert len(frames) == 3
    big = write_clip(tmp_path / "big.mp4", 3, walkers, size=(160, 120))
    assert "its frames: 160x120 = 19,200 pixels exceeds" in _reader_error(big)


def test_missing_camera_and_refusing_address_are_unavailable(tmp_path: Path) -> None:
    index = next(i for i in range(64, 128) if not Path(f"/dev/video{i}").exists())
    with pytest.raises(SourceUnavailableError, match=rf"camera {index} \(/dev/video{index}\) "
                                                     "does not exist"):
        VideoReader(camera_source(index))
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SourceUnavailableError, match=r"cannot open .*[Cc]onnection refused"):
        VideoReader(source_from_argument(f"http://127.0.0.1:{port}/live.ts"), timeout=3)


# ---- the feed: bounded queue, drops, reconnect ----


class FakeReader:
    """A live source that delivers ``count`` frames as fast as it can, then fails or ends."""

    def __init__(self, count: int, fail: bool):
        self.count, self.fail, self.fps, self.frame_count = count, fail, 30.0, None
        self.closed = False
        self.delivered = threading.Event()
        """Set once the decoder has taken the last frame."""

    def frames(self, start_index: int = 0, time_offset: float = 0.0) -> Iterator[Frame]:
        pixels = np.zeros((4, 4, 3), np.uint8)
        for i in range(self.count):
            yield Frame(start_index + i, time_offset + i / 30, pixels)
        self.delivered.set()
        if self.fail:
            raise StreamInterruptedError(f"fake: dropped after {start_index + self.count} frames")

    def close(self) -> None:
        self.closed = True


def opener_of(*readers: FakeReader | Exception) -> Callable[[VideoSource, float], FakeReader]:
    queue = list(readers)

    def opener(_source: VideoSource, _timeout: float) -> FakeReader:
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return opener


LIVE = VideoSource(SourceKind.STREAM, "http://127.0.0.1/fake")


def test_live_frames_beyond_the_queue_are_dropped_and_counted() -> None:
    """The analysis takes one frame, then waits until the source has delivered all 400 (an
    event of the source, not a sleep): then the queue holds the newest (4, or those after the
    frame taken), every other frame was dropped and counted."""
    reader = FakeReader(400, fail=False)
    feed = FrameFeed(LIVE, queue_size=4, opener=opener_of(reader))  # type: ignore[arg-type]
    frames = iter(feed)
    seen = [next(frames).index]
    assert reader.delivered.wait(60), "the decoder never took the last frame"
    seen += [frame.index for frame in frames]
    first = seen[0]  # whichever frame the decoder had queued when the analysis asked
    assert seen == [first, *range(max(first + 1, 396), 400)], seen
    assert feed.dropped == 400 - len(seen) >= 395
    assert seen[-1] == 399, "the newest frames are kept, the oldest dropped"


def test_file_frames_are_never_dropped() -> None:
    source = VideoSource(SourceKind.FILE, "fake.mp4")
    feed = FrameFeed(source, queue_size=2, opener=opener_of(FakeReader(50, fail=False)))  # type: ignore[arg-type]
    seen = []
    for frame in feed:
        seen.append(frame.index)
        time.sleep(0.001)
    assert seen == list(range(50)) and feed.dropped == 0


def test_a_dropped_stream_reconnects_and_goes_on_counting() -> None:
    first, second = FakeReader(10, fail=True), FakeReader(5, fail=False)
    feed = FrameFeed(LIVE, reconnect=2, backoff=0.01, queue_size=100,
                     opener=opener_of(first, SourceUnavailableError("still down"), second))  # type: ignore[arg-type]
    frames = list(feed)
    assert [f.index for f in frames] == list(range(15))
    times = [f.time for f in frames]
    assert all(b > a for a, b in itertools.pairwise(times))
    assert feed.reconnects == 1 and first.closed and second.closed


def test_reconnect_attempts_run_out() -> None:
    feed = FrameFeed(LIVE, reconnect=2, backoff=0.01, queue_size=100, opener=opener_of(  # type: ignore[arg-type]
        FakeReader(7, fail=True), SourceUnavailableError("down"), SourceUnavailableError("down")))
    got = []
    with pytest.raises(StreamInterruptedError, match=r"dropped after 7 frames \(reconnect "
                                                     r"attempts: 2\)"):
        for frame in feed:
            got.append(frame.index)
    assert got == list(range(7)) and feed.reconnects == 0


def test_opens_that_bring_no_frame_count_as_attempts() -> None:
    """A stream that came back (the open succeeds) but sends nothing is a failed attempt: the
    count does not start again at 1, so the attempts run out (it used to retry for ever)."""
    readers = [FakeReader(7, fail=True)] + [FakeReader(0, fail=True) for _ in range(2)]
    feed = FrameFeed(LIVE, reconnect=2, backoff=0.01, queue_size=100,
                     opener=opener_of(*readers, FakeReader(5, fail=False)))  # type: ignore[arg-type]
    got = []
    with pytest.raises(StreamInterruptedError, match=r"dropped after 7 frames \(reconnect "
                                                     r"attempts: 2\)"):
        for frame in feed:
            got.append(frame.index)
    assert got == list(range(7)) and feed.reconnects == 2


def test_a_frame_ends_a_row_of_attempts() -> None:
    readers = [FakeReader(3, fail=True), FakeReader(0, fail=True), FakeReader(2, fail=True),
               FakeReader(0, fail=True), FakeReader(4, fail=False)]
    feed = FrameFeed(LIVE, reconnect=2, backoff=0.01, queue_size=100,
                     opener=opener_of(*readers))  # type: ignore[arg-type]
    assert [f.index for f in feed] == list(range(9)) and feed.reconnects == 4


@pytest.mark.parametrize("reconnect", [0, 2])
def test_a_stream_that_never_brings_a_frame_is_unavailable(reconnect: int) -> None:
    """Every open succeeds and brings nothing (an MP4 with its index at the end from a server
    without ``Range``): exit 9 (unavailable) with the likely reason, not 10 (interrupted)."""
    feed = FrameFeed(LIVE, reconnect=reconnect, backoff=0.01, queue_size=100, opener=opener_of(  # type: ignore[arg-type]
        *[FakeReader(0, fail=True) for _ in range(reconnect + 1)]))
    with pytest.raises(SourceUnavailableError, match=rf"opened {reconnect + 1} time\(s\) but "
                                                     r"brought no frame.*faststart.*Range"):
        list(feed)


def test_closing_a_feed_stops_its_decoder() -> None:
    feed = FrameFeed(LIVE, queue_size=2, opener=opener_of(FakeReader(10**6, fail=False)))  # type: ignore[arg-type]
    for frame in feed:
        if frame.index >= 3:
            break
    feed.close()
    assert not any(t.name == "facenet-video-decoder" and t.is_alive()
                   for t in threading.enumerate())


# ---- tracking and naming ----

PEOPLE = ["Ada", "Bob"]


def obs(frame: int, ada: float, bob: float, side: float = 80.0) -> Observation:
    return Observation(frame, frame / 30, (0.0, 0.0, side, side), np.array([ada, bob]),
                       votes=side >= 40)


def test_one_bad_frame_does_not_flip_a_name() -> None:
    frames = [obs(i, 0.6, 1.3) for i in range(9)] + [obs(9, 1.4, 0.3)]
    naming = name_track(frames, PEOPLE, threshold=1.0)
    assert naming.name == "Ada" and naming.median == pytest.approx(0.6)
    assert naming.votes == 9 and naming.voters == 10
    assert naming.best_distance == pytest.approx(0.6)


def test_a_stranger_is_not_named_for_one_close_frame() -> None:
    frames = [obs(i, 1.3, 1.25) for i in range(9)] + [obs(9, 0.5, 1.3)]
    naming = name_track(frames, PEOPLE, threshold=1.0)
    assert naming.name is None and naming.nearest == "Bob"
    assert naming.median == pytest.approx(1.25)
    assert [c.name for c in naming.candidates] == ["Bob", "Ada"]


def test_half_the_frames_within_the_threshold_names() -> None:
    frames = [obs(i, 0.8 if i % 2 else 1.3, 1.5) for i in range(6)]
    assert name_track(frames, PEOPLE, threshold=1.0).name is None
    frames.append(obs(6, 0.8, 1.5))
    assert name_track(frames, PEOPLE, threshold=1.0).name == "Ada"


def test_faces_too_small_do_not_vote() -> None:
    tracker = Tracker(PEOPLE, threshold=1.0, min_name_face=40)
    for i in range(4):
        side = 30 if i < 3 else 45
        tracked = tracker.update(i, i / 30, [face((10, 10, side, side), 0)],
                                 np.array([[0.5, 1.5]]))
        assert tracked[0].name == (None if i < 3 else "Ada")
    summary = tracker.summaries()[0]
    assert (summary.frames, summary.voters, summary.votes) == (4, 1, 1)


def face(box: tuple[float, float, float, float], direction: int) -> Face:
    embedding = np.zeros(128, np.float32)
    embedding[direction] = 1.0
    return Face(box, 0.99, {}, np.zeros((160, 160, 3), np.uint8), embedding)


def test_tracker_follows_moving_faces_and_splits_at_a_cut() -> None:
    tracker = Tracker(PEOPLE, threshold=1.0)
    distances = np.array([[0.5, 1.4], [1.4, 0.5]])
    ids = []
    for i in range(5):
        tracked = tracker.update(i * 3, i / 10, [face((10 + 9 * i, 20, 50, 50), 0),
                                                 face((200 - 9 * i, 20, 50, 50), 1)], distances)
        ids.append([t.track_id for t in tracked])
    assert ids == [[1, 2]] * 5
    carried = {t.track_id: t.box for t in tracker.carry(13)}
    assert carried[1][0] == pytest.approx(10 + 9 * 4 + 3) and not any(
        t.observed for t in tracker.carry(13))
    cut = tracker.update(15, 0.5, [face((10 + 9 * 5, 20, 50, 50), 2)], np.array([[1.4, 1.4]]))
    assert [t.track_id for t in cut] == [3], "same place, another face: a new track"
    assert [(s.track_id, s.name, s.frames) for s in tracker.summaries()] == [
        (1, "Ada", 5), (2, "Bob", 5), (3, None, 1)]
    assert [s.track_id for s in tracker.summaries(min_frames=2)] == [1, 2]


def test_a_track_ends_after_max_age_and_a_face_found_again_far_away_rejoins() -> None:
    tracker = Tracker(PEOPLE, threshold=1.0, max_age=1.0)
    near = np.array([[0.5, 1.4]])
    tracker.update(0, 0.0, [face((10, 10, 50, 50), 0)], near)
    assert [t.track_id for t in tracker.update(3, 0.5, [face((250, 150, 50, 50), 0)], near)] == [1]
    assert [t.track_id for t in tracker.update(60, 2.0, [face((250, 150, 50, 50), 0)], near)] == [2]


# ---- track(): the whole run ----


def test_track_names_each_appearance_once(recognizer: object, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "walk.mp4", 45, walkers)
    run = track(recognizer, clip, every=1)  # type: ignore[arg-type]
    results = list(run)
    summary = run.summary()
    assert [r.index for r in results] == list(range(45)) and all(r.analyzed for r in results)
    assert summary.ending is Ending.END and summary.frames == 45 and summary.analyzed == 45
    assert summary.dropped == 0 and summary.kind == "file" and summary.size == (320, 240)
    got = [(t.label, t.first_frame, t.last_frame, t.frames) for t in summary.tracks]
    assert got == [("Red", 0, 44, 45), ("Blue", 10, 29, 20), ("unknown", 20, 44, 25)]
    red = summary.tracks[0]
    assert red.median_distance is not None and red.median_distance < 0.1
    assert red.best_box[2] == pytest.approx(60, abs=2)
    assert red.first_time == 0 and red.last_time == pytest.approx(44 / 30)
    assert [c.name for c in red.candidates] == ["Red", "Blue"]
    assert summary.tracks[2].nearest is not None and summary.tracks[2].name is None
    frame = results[25]
    assert sorted(f.label for f in frame.faces) == ["Blue", "Red", "unknown"]


def test_stop_ends_the_run_after_the_frame_being_analyzed(recognizer: object,
                                                          tmp_path: Path) -> None:
    """What Ctrl-C and SIGTERM do in ``facenet watch``: :meth:`stop` (a flag, safe in a signal
    handler) ends the iteration between two frames; the run is interrupted, every frame it
    yielded is counted, and nothing is yielded after it."""
    clip = write_clip(tmp_path / "walk.mp4", 45, walkers)
    with track(recognizer, clip, every=1) as run:  # type: ignore[arg-type]
        seen = []
        for result in run:
            seen.append(result.index)
            if result.index == 9:
                run.stop()
    summary = run.summary()
    assert seen == list(range(10)) and summary.frames == 10 and summary.analyzed == 10
    assert summary.ending is Ending.INTERRUPTED


def test_every_third_frame_is_analyzed_and_boxes_are_carried(recognizer: object,
                                                            tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "walk.mp4", 45, walkers)
    run = track(recognizer, clip, every=3)  # type: ignore[arg-type]
    results = list(run)
    assert [r.index for r in results if r.analyzed] == list(range(0, 45, 3))
    assert run.summary().analyzed == 15
    red = {r.index: f for r in results for f in r.faces if f.label == "Red"}
    assert sorted(red) == list(range(45))
    assert not red[4].observed and red[3].observed
    for index in (4, 5, 31, 44):
        assert red[index].box[0] == pytest.approx(10 + 3 * index, abs=3), index
    assert [t.label for t in run.summary().tracks] == ["Red", "Blue", "unknown"]


def test_fps_option_analyzes_that_many_frames_per_second(recognizer: object,
                                                         tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "walk.mp4", 60, walkers)
    run = track(recognizer, clip, fps=5)  # type: ignore[arg-type]
    assert [r.index for r in run if r.analyzed] == list(range(0, 60, 6))
    with pytest.raises(InputError, match="--every"):
        track(recognizer, clip, every=0)  # type: ignore[arg-type]


def test_annotated_video_holds_every_frame_with_boxes(recognizer: object,
                                                      tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "walk.mp4", 30, walkers)
    out = tmp_path / "out" / "walk.annotated.mp4"
    run = track(recognizer, clip, every=2)  # type: ignore[arg-type]
    with annotated_video(out, run.feed.fps, inputs=[clip]) as write:
        for result in run:
            write(result)
    with av.open(str(out)) as written:
        stream = written.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.average_rate == Fraction(30)
        assert (stream.width, stream.height) == (320, 240)
        assert written.metadata.get("comment") == ANNOTATION_MARK
        frames = [f.to_ndarray(format="rgb24") for f in written.decode(stream)]
    assert len(frames) == 30
    x = 10 + 3 * 25
    edge = frames[25][60:80, x - 4:x + 1].reshape(-1, 3).astype(int)
    greenish = (edge[:, 1] - edge[:, 0] > 30) & (edge[:, 1] - edge[:, 2] > 30)
    assert greenish.any(), "a green (named) box around Red"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_a_still_of_a_video(tmp_path: Path) -> None:
    from PIL import Image

    from toolchain.video.writer import save_still

    clip = write_clip(tmp_path / "c.mp4", 5, lambda i: [("red" if i == 3 else "blue", 0, 0, 320)])
    save_still(clip, 3, tmp_path / "still.png")
    with Image.open(tmp_path / "still.png") as still:
        r, _, b = still.convert("RGB").getpixel((100, 100))
    assert still.size == (320, 240) and r > 150 > b
    with pytest.raises(InputError, match="has no frame 5"):
        save_still(clip, 5, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_annotated_video_never_replaces_an_input_or_a_foreign_file(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "walk.mp4", 3, walkers)
    with pytest.raises(InputError, match="is the video being read"):
        annotated_video(clip, 30, inputs=[clip]).__enter__()
    mine = tmp_path / "mine.mp4"
    mine.write_bytes(b"my holiday video")
    with pytest.raises(InputError, match="not replacing it"):
        annotated_video(mine, 30).__enter__()
    assert mine.read_bytes() == b"my holiday video"
    with pytest.raises(InputError, match=r"\.mkv, \.mov, \.mp4"):
        annotated_video(tmp_path / "x.avi", 30).__enter__()
    again = tmp_path / "again.mp4"
    for _ in range(2):
        with annotated_video(again, 30) as write:
            write(FrameResult(0, 0.0, True, (), np.zeros((241, 321, 3), np.uint8)))
    with av.open(str(again)) as written:
        assert (written.streams.video[0].width, written.streams.video[0].height) == (320, 240)


def test_an_error_mid_run_leaves_no_annotated_video(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError), annotated_video(out, 30) as write:
        write(FrameResult(0, 0.0, True, (), np.zeros((48, 64, 3), np.uint8)))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with annotated_video(out, 30):
        pass
    assert list(tmp_path.iterdir()) == [], "no frame, no video"


def test_the_package_track_stays_the_function_once_its_module_is_imported() -> None:
    """``toolchain.video.track`` is the function, also after ``VideoTracking`` (defined in the
    same module) loaded that module: the module is ``tracking``, so importing it never sets the
    package's ``track`` attribute to the module (it did when the module was ``track.py``)."""
    import toolchain
    import toolchain.video as video

    assert video.VideoTracking.__module__ == "toolchain.video.tracking"
    assert callable(video.track) and video.track.__name__ == "track"
    from toolchain.video import track

    assert track is video.track is toolchain.track
