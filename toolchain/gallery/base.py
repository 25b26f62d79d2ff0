"""The gallery interface every backend implements, and the semantics they share.

A gallery target is a SQLite file path or a ``postgresql://`` (or ``postgres://``) URL;
:func:`toolchain.gallery.inventory.open_gallery` picks the backend from its table (this module
names none). The semantics live here, once: the model
fingerprint binding, the recorded crop and threshold, entries checked as unit vectors on the way
in and on the way out, imports refused whole for another model or crop, nearest and centroid
matching by :class:`~toolchain.gallery.vectors.PeopleVectors`. A backend supplies storage:
one transaction per write (a whole batch of entries, idempotent by photo sha256 plus face box),
the rows read back, and a revision that changes whenever any writer commits, so an open gallery
notices other writers' enrollments before it matches.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import numpy as np

from toolchain.core.contracts import EMBEDDING_DIM
from toolchain.core.crop import CropSpec
from toolchain.core.errors import InputError, IntegrityError
from toolchain.gallery.names import person_name
from toolchain.gallery.redact import masked_url
from toolchain.gallery.schema import (
    LEGACY_CROP,
    MAX_DISTANCE,
    SCHEMA_VERSION,
    SHA256_HEX,
    MatchMode,
    check_threshold,
)
from toolchain.gallery.vectors import (
    UNIT_NORM_TOLERANCE,
    Candidate,
    Entry,
    ImportData,
    PeopleVectors,
    entry_vectors,
)

GalleryTarget: TypeAlias = Path | str
"""Where a gallery is: a SQLite file path, or a ``postgresql://`` URL."""

POSTGRES_SCHEMES = ("postgresql", "postgres")
"""URL schemes of a PostgreSQL gallery (libpq's two spellings)."""

StoredRow: TypeAlias = tuple[str, bytes, str, str, float, float, float, float, "float | None",
                          str]
"""One embedding as a backend reads it: name, float32 little-endian vector bytes, source,
image_sha256, box x, y, w, h, score."""


def is_postgres_url(target: GalleryTarget) -> bool:
    """Whether ``target`` names a PostgreSQL gallery rather than a SQLite file."""
    return isinstance(target, str) and target.split("://", 1)[0].lower() in POSTGRES_SCHEMES \
        and "://" in target


def gallery_target(value: GalleryTarget) -> GalleryTarget:
    """``value`` as a gallery target: a URL stays text, anything else becomes a :class:`Path`."""
    return value if is_postgres_url(value) else Path(value)


def display_target(target: GalleryTarget) -> str:
    """``target`` as every message, output and log shows it: a URL without its password or
    secret parameters (:func:`~toolchain.gallery.redact.masked_url`)."""
    return masked_url(str(target)) if is_postgres_url(target) else str(target)


def stored_crop(text: str, gallery: GalleryTarget) -> CropSpec:
    """The crop spec a gallery records.

    Raises:
        IntegrityError: the stored text is not a crop spec (the file was edited or damaged).
    """
    try:
        return CropSpec.parse(text)
    except ValueError as exc:
        raise IntegrityError(f"gallery {display_target(gallery)}: stored crop {text!r} is "
                             f"not a crop spec ({exc})") from exc


@dataclass(frozen=True)
class AddResult:
    """What :meth:`Gallery.add` did."""

    added: list[Entry]
    duplicates: list[tuple[Entry, str]]
    """Entries already in the gallery, each with the name it is enrolled under."""

    @property
    def conflicts(self) -> list[tuple[Entry, str]]:
        """The duplicates asked for under ANOTHER name than the one the face is enrolled under.

        The face keeps its first name (one face, one person); a caller should warn about each.
        """
        return [(entry, owner) for entry, owner in self.duplicates
                if owner != person_name(entry.name)]


@dataclass(frozen=True)
class Person:
    """A summary row of ``facenet gallery list``."""

    name: str
    embeddings: int
    photos: int
    created: str

    def to_dict(self) -> dict[str, object]:
        """``{"name", "embeddings", "photos", "created"}``: ``gallery list --json``, the API."""
        return {"name": self.name, "embeddings": self.embeddings, "photos": self.photos,
                "created": self.created}


class Gallery(abc.ABC):
    """An open gallery of one model's embeddings. Use :meth:`open`; close it (or use ``with``)."""

    path: GalleryTarget
    """The SQLite file, or the PostgreSQL URL without its password."""

    def __init__(self, path: GalleryTarget, meta: dict[str, str]):
        self.path = path
        self._meta = meta
        self._cache: tuple[object, PeopleVectors] | None = None

    @classmethod
    def open(
        cls, target: GalleryTarget, *, fingerprint: str | None = None, dim: int = EMBEDDING_DIM,
        create: bool = False, crop: str = LEGACY_CROP,
    ) -> Gallery:
        """Open this backend's gallery at ``target`` and check it (schema, model fingerprint).

        Callers open any target with :func:`toolchain.gallery.inventory.open_gallery`, which
        picks the backend; the arguments and errors are its.
        """
        gallery = cls._open(target, fingerprint=fingerprint, dim=dim, create=create, crop=crop)
        try:
            gallery._check(fingerprint)
        except BaseException:
            gallery.close()
            raise
        return gallery

    @classmethod
    @abc.abstractmethod
    def exists(cls, target: GalleryTarget) -> bool:
        """Whether this backend holds a gallery at ``target`` (never creates one).

        Raises:
            InputError: the storage cannot be reached or read.
        """

    @classmethod
    @abc.abstractmethod
    def _open(cls, target: GalleryTarget, *, fingerprint: str | None, dim: int, create: bool,
              crop: str) -> Gallery:
        """Open (creating if asked and missing) the backend's gallery; checked by :meth:`open`."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the connection."""

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, fingerprint: str | None) -> None:
        version = self._meta.get("schema_version")
        if version != str(SCHEMA_VERSION):
            raise InputError(
                f"gallery {self.path}: schema version {version}, this toolchain reads "
                f"{SCHEMA_VERSION}"
            )
        stored, dim = self._meta.get("model_fingerprint"), self._meta.get("dim")
        if not isinstance(stored, str) or not SHA256_HEX.fullmatch(stored):
            raise InputError(f"gallery {self.path}: not a valid facenet gallery (model "
                             f"fingerprint {stored!r} is not a sha256)")
        if not isinstance(dim, str) or not dim.isdigit() or int(dim) <= 0:
            raise InputError(f"gallery {self.path}: not a valid facenet gallery (embedding "
                             f"size {dim!r})")
        if fingerprint is not None and fingerprint != self.fingerprint:
            raise IntegrityError(
                f"gallery {self.path} holds embeddings of model sha256 {self.fingerprint[:16]}…, "
                f"the loaded model is sha256 {fingerprint[:16]}…; vectors of different models "
                "cannot be compared: enroll again into a new gallery (--gallery PATH)"
            )

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._backend_name()

    @classmethod
    @abc.abstractmethod
    def _backend_name(cls) -> str:
        """The backend's name (:attr:`backend`)."""

    @property
    def fingerprint(self) -> str:
        """sha256 of the ONNX model whose embeddings the gallery holds."""
        return self._meta["model_fingerprint"]

    @property
    def dim(self) -> int:
        """Embedding size."""
        return int(self._meta["dim"])

    @property
    def crop(self) -> str:
        """The crop spec text its faces were embedded with (:data:`LEGACY_CROP` if unrecorded)."""
        return self._meta.get("crop", LEGACY_CROP)

    @property
    def created(self) -> str:
        """UTC creation time (ISO 8601)."""
        return self._meta.get("created", "")

    @property
    def threshold(self) -> float | None:
        """The calibrated match threshold stored by ``facenet eval dataset --store-threshold``.

        Raises:
            IntegrityError: the stored value is not a distance in (0, 2] (the gallery was edited).
        """
        value = self._meta.get("threshold")
        if value is None:
            return None
        try:
            return check_threshold(float(value))
        except (TypeError, ValueError, InputError) as exc:
            raise IntegrityError(
                f"gallery {self.path}: the stored threshold {value!r} is not a distance in "
                f"(0, {MAX_DISTANCE:g}]; the gallery was edited or damaged: calibrate again "
                "with `facenet eval dataset --store-threshold`"
            ) from exc

    @property
    def threshold_source(self) -> str | None:
        """Where :attr:`threshold` came from."""
        return self._meta.get("threshold_source")

    def add(self, entries: Sequence[Entry], fingerprint: str | None = None, *,
            people_created: Mapping[str, str] | None = None) -> AddResult:
        """Store ``entries`` in ONE transaction; faces already stored are skipped.

        Args:
            entries: Embeddings to add (raw or unit; normalized on the way in). Each keeps its
                ``created`` time if it has one (a migrated copy), else gets the write's.
            fingerprint: The model the vectors come from, recorded per row (default: the gallery's).
            people_created: When each person NOT yet in the gallery counts as created (a
                migration carries them over); else the ``created`` of their first entry.

        Each name is stored as the name rule makes it (NFC, stripped:
        :func:`~toolchain.gallery.names.person_name`).

        Raises:
            InputError: a vector of the wrong size, non-finite, beyond float32 or near zero
                (nothing is written).
            NameRefused: a name the rule refuses (nothing is written).
        """
        if not entries:
            return AddResult(added=[], duplicates=[])
        vectors = entry_vectors(entries, self.dim)
        result, _ = self._write(entries, vectors, fingerprint or self.fingerprint, None,
                                people_created or {})
        return result

    def import_data(self, data: ImportData) -> AddResult:
        """Add a parsed import file, and its threshold if none is stored, in ONE transaction.

        Raises:
            InputError: vectors of another size than the gallery's, or a bad vector (nothing is
                written).
            IntegrityError: the file's vectors come from another model or crop than the
                gallery's.
        """
        if data.dim != self.dim:
            raise InputError(f"{data.path}: {data.dim}-d vectors, the gallery {self.path} holds "
                             f"{self.dim}-d ones")
        self._check(data.fingerprint)
        if data.crop != self.crop:
            raise IntegrityError(
                f"{data.path}: faces embedded with crop {data.crop!r}, the gallery {self.path} "
                f"holds crop {self.crop!r}; vectors of different crops are not comparable"
            )
        vectors = entry_vectors(data.entries, self.dim)
        source = f"imported from {data.path}"
        offer = (data.threshold, source) if data.threshold is not None else None
        result, adopted = self._write(data.entries, vectors, self.fingerprint, offer, {})
        if adopted:
            self._meta.update(threshold=repr(data.threshold), threshold_source=source)
        return result

    @abc.abstractmethod
    def _write(self, entries: Sequence[Entry], vectors: np.ndarray, fingerprint: str,
               threshold: tuple[float, str] | None, people_created: Mapping[str, str]
               ) -> tuple[AddResult, bool]:
        """Insert ``entries`` (``vectors`` checked unit rows) in ONE transaction (times as
        :meth:`add` says).

        A face already stored (same image sha256 and canonical box) is a duplicate, reported with
        the name it is stored under; a person left with no embedding is not kept. ``threshold``
        (value, source) is stored in the same transaction if none is stored yet; the flag says
        whether it was.
        """

    @abc.abstractmethod
    def people(self) -> list[Person]:
        """Every enrolled person with counts, by name."""

    @abc.abstractmethod
    def _rows(self) -> list[StoredRow]:
        """Every stored embedding, by person name then insertion order."""

    def entries(self) -> list[Entry]:
        """Every stored embedding, by person name then insertion order.

        Raises:
            IntegrityError: a stored vector is not a ``dim``-d unit vector (the gallery was
                edited).
        """
        rows = self._rows()
        return self._checked_entries(rows)

    def _checked_entries(self, rows: Sequence[StoredRow]) -> list[Entry]:
        size = 4 * self.dim
        for r in rows:
            if not isinstance(r[1], bytes) or len(r[1]) != size:
                self._bad_vector(r[0], f"{len(r[1]) if isinstance(r[1], bytes) else 0} bytes")
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").astype(np.float32)
        matrix = matrix.reshape(len(rows), self.dim)
        norms = np.linalg.norm(matrix.astype(np.float64), axis=1)
        bad = ~(np.abs(norms - 1.0) <= UNIT_NORM_TOLERANCE)
        if np.any(bad):
            first = int(np.argmax(bad))
            self._bad_vector(rows[first][0], f"norm {norms[first]:.3g}")
        return [
            Entry(name=r[0], vector=vector, source=r[2], image_sha256=r[3],
                  box=(r[4], r[5], r[6], r[7]), score=r[8], created=r[9])
            for r, vector in zip(rows, matrix, strict=True)
        ]

    def _bad_vector(self, name: str, detail: str) -> None:
        raise IntegrityError(
            f"gallery {self.path}: a stored embedding of {name!r} is not a {self.dim}-d unit "
            f"vector ({detail}); the gallery was edited or damaged: remove that person "
            "(`facenet gallery remove`) and enroll them again"
        )

    @abc.abstractmethod
    def remove(self, name: str) -> int:
        """Remove a person and all their embeddings; return how many embeddings went.

        Raises:
            InputError: nobody of that name is enrolled.
        """

    def set_threshold(self, value: float, source: str) -> None:
        """Store a calibrated match threshold (used by recognize when none is given).

        Raises:
            InputError: ``value`` is not a distance in (0, 2] (see :func:`check_threshold`).
        """
        threshold = check_threshold(value)
        self._store_threshold(threshold, source)
        self._meta.update(threshold=repr(threshold), threshold_source=source)

    @abc.abstractmethod
    def _store_threshold(self, threshold: float, source: str) -> None:
        """Write ``threshold`` and its source in one transaction."""

    @abc.abstractmethod
    def revision(self) -> object:
        """A value that changes whenever any writer commits to the gallery."""

    def count(self) -> int:
        """How many embeddings are stored."""
        return sum(person.embeddings for person in self.people())

    def _people_vectors(self) -> PeopleVectors:
        """Every stored vector, grouped by person, with what ranking caches for them; read again
        (and the cache dropped with them) when another writer has committed since."""
        revision = self.revision()
        if self._cache is None or self._cache[0] != revision:
            names: list[str] = []
            starts: list[int] = []
            vectors: list[np.ndarray] = []
            for entry in self.entries():
                if not names or names[-1] != entry.name:
                    names.append(entry.name)
                    starts.append(len(vectors))
                vectors.append(entry.vector)
            matrix = np.stack(vectors) if vectors else np.zeros((0, self.dim), np.float32)
            self._cache = (revision, PeopleVectors(names, matrix, np.asarray(starts, np.intp)))
        return self._cache[1]

    def match(
        self, queries: np.ndarray, k: int = 3, mode: MatchMode = MatchMode.NEAREST
    ) -> list[list[Candidate]]:
        """The ``k`` closest people to each query embedding, closest first (exact).

        Args:
            queries: ``(M, D)`` L2-normalized embeddings.
            k: How many people to return per query.
            mode: Distance to a person's nearest embedding, or to their mean direction.
        """
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, self.dim)
        people = self._people_vectors()
        if not people.names or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        return people.rank(queries, k, mode)
