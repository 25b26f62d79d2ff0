"""What the endpoints compute: the recognizer's operations on uploaded images, on worker threads.

One detector and one embedder are loaded and shared (ONNX Runtime sessions may run from several
threads at once); each worker thread has its own :class:`~toolchain.runtime.recognizer.Recognizer`
over them, because a gallery's SQLite connection belongs to the thread that opened it. A thread's
recognizer reopens its gallery when the gallery changed since it last looked: after a write by
this server (a generation counter) or by another process (the database and WAL files' size and
modification time), so a person enrolled by one request is seen by the next one, whichever thread
serves it.

Writes (enroll, remove) go through one lock, one gallery transaction each: an enrollment request
is stored whole or not at all, and concurrent requests never interleave inside the gallery.
Uploaded images are bytes, not files: they are decoded here (pixel limit checked from the header
first), and an enrollment records ``upload <file name>`` as each face's source.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
import unicodedata
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from toolchain.core.errors import InputError
from toolchain.gallery import Entry, Gallery, Person, is_postgres_url, open_gallery
from toolchain.gallery.names import person_name, stored_name
from toolchain.runtime.embedder import Embedder
from toolchain.runtime.faces import (
    Comparison,
    EnrollOutcome,
    EnrollStatus,
    Face,
    FaceDetector,
    Match,
    PhotoFaces,
    ThresholdSource,
    enroll_outcome,
)
from toolchain.runtime.images import LoadedImage, decode_bytes
from toolchain.runtime.pack import model_source
from toolchain.runtime.recognizer import MIN_ENROLL_FACE, Recognizer
from toolchain.service.config import ServiceConfig
from toolchain.service.errors import gallery_errors
from toolchain.service.pool import Ticket, TimedOut, WorkerPool

log = logging.getLogger(__name__)

MAX_LABEL_CHARS = 80
"""Longest upload file name kept in labels and sources."""


@dataclass(frozen=True)
class Upload:
    """One image as it arrived: its bytes and how errors and the gallery name it."""

    label: str
    """``upload <file name>`` for a multipart file, ``<field>`` for base64 JSON."""
    data: bytes = b""


@dataclass(frozen=True)
class Decoded:
    """An uploaded image decoded to RGB."""

    label: str
    pixels: np.ndarray
    sha256: str

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])


@dataclass(frozen=True)
class FacesResult:
    """``POST /v1/faces``: the faces of one image."""

    size: tuple[int, int]
    faces: list[Face]


@dataclass(frozen=True)
class RecognizeResult:
    """``POST /v1/recognize``: who is in one image, at which threshold."""

    size: tuple[int, int]
    matches: list[Match]
    threshold: float
    threshold_source: ThresholdSource


@dataclass(frozen=True)
class EnrollResult:
    """``POST /v1/people/{name}/faces``: what happened to each image, in order."""

    name: str
    outcomes: list[EnrollOutcome]

    @property
    def added(self) -> int:
        """Faces new in the gallery."""
        return sum(o.status == EnrollStatus.ADDED for o in self.outcomes)


def upload_label(filename: str | None, fallback: str) -> str:
    """``upload <name>`` for a client's file name: its last path part, control characters
    dropped, at most :data:`MAX_LABEL_CHARS` characters (``fallback`` when nothing is left)."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    return f"upload {name[:MAX_LABEL_CHARS]}" if name else fallback


def check_pixels(data: bytes, label: str, max_pixels: int) -> None:
    """Refuse an image whose header declares more than ``max_pixels`` pixels, before decoding.

    Whatever else is wrong with the bytes is left to :func:`~toolchain.runtime.images.decode_bytes`
    (which also applies Pillow's own decompression-bomb limit).

    Raises:
        InputError: the declared size is over the limit.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:
                width, height = opened.size
    except Exception:  # not an image, or one Pillow refuses: decode_bytes says which
        return
    if width * height > max_pixels:
        raise InputError(f"{label}: {width}x{height} = {width * height:,} pixels exceeds this "
                         f"server's {max_pixels:,}-pixel limit; refused")


class Engine:
    """The loaded models, the gallery path, the worker pool and the one write path."""

    def __init__(self, config: ServiceConfig, detector: FaceDetector, embedder: Embedder,
                 models: Path | None = None):
        self.config = config
        self.detector = detector
        self.embedder = embedder
        self.models = models  # the served models' folder: the page's in-browser models too
        self.pool = WorkerPool(config.limits.workers, config.limits.queue)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._generation = 0

    @classmethod
    def load(cls, config: ServiceConfig) -> Engine:
        """Load (and verify) the models of ``config.models`` (default: the artifacts' pack);
        open or create the gallery.

        Raises:
            MissingArtifactError: a model is missing, or the pack holds none for the runtime.
            IntegrityError: a model fails its checksum or the pack's manifest, or the gallery
                was made with another model.
            InputError: the gallery is not a gallery.
        """
        source = model_source(config.models, config.artifacts)
        with Recognizer.load(source, config.gallery, threshold=config.threshold,
                             detection=config.detection, runtime=config.runtime,
                             precision=config.precision) as loaded:
            loaded.gallery(create=True)
            return cls(config, loaded.detector, loaded.embedder, source.root)

    def close(self) -> None:
        """Finish the running jobs and stop the workers."""
        self.pool.shutdown()

    def _signature(self) -> tuple[tuple[int, int] | None, ...]:
        """Size and modification time of the gallery and its WAL (changes on every commit);
        none for a PostgreSQL gallery, which notices other writers' commits itself."""
        if is_postgres_url(self.config.gallery):
            return ()
        result: list[tuple[int, int] | None] = []
        for path in (Path(self.config.gallery), Path(f"{self.config.gallery}-wal")):
            try:
                info = path.stat()
            except OSError:
                result.append(None)
                continue
            result.append((info.st_size, info.st_mtime_ns))
        return tuple(result)

    def _recognizer(self) -> Recognizer:
        """This thread's recognizer, its gallery reopened if the gallery changed since."""
        state = self._local
        if not hasattr(state, "recognizer"):
            state.recognizer = Recognizer(self.detector, self.embedder, self.config.gallery,
                                          threshold=self.config.threshold)
            state.seen = None
        seen = (self._generation, self._signature())
        if state.seen != seen:
            state.recognizer.close()
            state.seen = seen
        recognizer: Recognizer = state.recognizer
        return recognizer

    def gallery(self) -> Gallery:
        """This thread's open gallery (created if it was removed since the start).

        Raises:
            GalleryUnavailable: it cannot be opened (damaged, its database unreachable).
        """
        with gallery_errors():
            return self._recognizer().gallery(create=True)

    def decode(self, upload: Upload) -> Decoded:
        """Decode one upload (pixel limit first).

        Raises:
            InputError: not an image, truncated, or too many pixels.
        """
        if not upload.data:
            raise InputError(f"{upload.label}: empty, not an image")
        check_pixels(upload.data, upload.label, self.config.limits.max_pixels)
        pixels = decode_bytes(upload.data, Path(upload.label))
        return Decoded(upload.label, pixels, hashlib.sha256(upload.data).hexdigest())

    def faces(self, upload: Upload) -> FacesResult:
        """Detect and embed every face of an image."""
        image = self.decode(upload)
        return FacesResult(image.size, self._recognizer().faces(image.pixels))

    def recognize(self, upload: Upload) -> RecognizeResult:
        """Who is in an image (every face; unknown beyond the threshold)."""
        image = self.decode(upload)
        recognizer = self._recognizer()
        with gallery_errors():
            recognizer.gallery(create=True)
        matches = recognizer.recognize(image.pixels)
        threshold, source = recognizer.threshold()
        return RecognizeResult(image.size, matches, threshold, source)

    def compare(self, a: Upload, b: Upload, face_a: int | None, face_b: int | None
                ) -> Comparison:
        """Are the chosen faces of two images the same person (see ``Recognizer.compare``)."""
        first, second = self.decode(a), self.decode(b)
        return self._recognizer().compare(first.pixels, second.pixels, face_a, face_b)

    def enroll(self, name: str, uploads: list[Upload], largest: bool, ticket: Ticket
               ) -> EnrollResult:
        """Enroll one face per image under ``name``, all in one gallery transaction.

        Images without a usable face are reported and skipped (the rules of ``facenet enroll``:
        one face of at least :data:`~toolchain.runtime.recognizer.MIN_ENROLL_FACE` px, the
        largest with ``largest``); a face already enrolled is ``already``.

        Raises:
            NameRefused: the name rule refuses the name.
            TimedOut: the request gave up before the write (nothing written).
        """
        name = person_name(name)
        recognizer = self._recognizer()
        photos: list[PhotoFaces] = []
        for upload in uploads:
            path = Path(upload.label)
            try:
                image = self.decode(upload)
            except InputError as exc:
                photos.append(PhotoFaces(path, None, [], str(exc)))
                continue
            loaded = LoadedImage(path, image.pixels, image.sha256)
            photos.append(PhotoFaces(path, loaded, recognizer.faces(image.pixels)))
            if ticket.cancelled:
                raise TimedOut("the request timed out; nothing was written")
        outcomes = [enroll_outcome(name, photo, largest, MIN_ENROLL_FACE, min_face_hint="",
                                   largest_hint="send largest=true to enroll the biggest")
                    for photo in photos]
        entries: dict[int, Entry] = {}
        for index, (outcome, photo) in enumerate(zip(outcomes, photos, strict=True)):
            if outcome.face is not None and photo.image is not None:
                entries[index] = Entry(name=name, vector=outcome.face.embedding,
                                       source=str(photo.path), image_sha256=photo.image.sha256,
                                       box=outcome.face.box, score=outcome.face.confidence)
        with self._write_lock:
            if not ticket.begin_commit():
                raise TimedOut("the request timed out; nothing was written")
            try:
                with gallery_errors():
                    added = recognizer.gallery(create=True).add(list(entries.values()))
            finally:
                self._generation += 1
        owners = {id(entry): owner for entry, owner in added.duplicates}
        for index, entry in entries.items():
            if id(entry) in owners:
                done = outcomes[index]
                owner = owners[id(entry)]
                note = "" if owner == name else f" as {owner!r}, not added again as {name!r}"
                outcomes[index] = EnrollOutcome(
                    done.path, name, EnrollStatus.ALREADY,
                    f"{done.path}: already in the gallery{note}", done.face, owner)
        return EnrollResult(name, outcomes)

    def people(self) -> list[Person]:
        """Everyone enrolled, by name."""
        gallery = self.gallery()
        with gallery_errors():
            return gallery.people()

    def remove(self, name: str, ticket: Ticket) -> tuple[str, int | None]:
        """Remove the person ``name`` asks for (stripped and normalized as enrollment does:
        :func:`~toolchain.gallery.names.stored_name`): their stored name and the number
        of embeddings removed, ``None`` if nobody has that name.

        Raises:
            NameRefused: nobody is listed under ``name`` and the name rule refuses it.
            TimedOut: the request gave up before the write (nothing removed).
        """
        gallery = self.gallery()
        with self._write_lock:
            existing = [person.name for person in gallery.people()]
            name = stored_name(name, existing)
            if name not in existing:
                return name, None
            if not ticket.begin_commit():
                raise TimedOut("the request timed out; nothing was removed")
            try:
                return name, gallery.remove(name)
            finally:
                self._generation += 1

    def readiness(self) -> dict[str, object]:
        """Open the gallery afresh (bound to the loaded model) and describe what is served:
        the model, how many people, the workers; never where the gallery is (``/readyz`` is
        open without the token, and a gallery URL names hosts, users and perhaps a password).

        Raises:
            InputError, IntegrityError: the gallery is gone (it was created at the start), cannot
                be opened or is another model's.
        """
        with open_gallery(self.config.gallery, fingerprint=self.embedder.fingerprint,
                          dim=self.embedder.dim) as gallery:
            people = len(gallery.people())
        return {"model": self.embedder.fingerprint[:16], "people": people,
                "workers": self.pool.workers,
                "queue": self.pool.capacity - self.pool.workers}
