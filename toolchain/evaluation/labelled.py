"""Labelled photo sets: whose face is where, for calibrating and comparing decisions.

A labelled set is given in one of two ways (:func:`parse_set`):

- ``DIR``, **person folders**: each folder of photos is named after the person they show
  (``DIR/<person>/*.jpg``, also one level deeper as the 5-celebrity set's ``train/<person>/`` and
  ``val/<person>/``); the largest face of each photo is that person's.
- ``LABELS.csv@DIR``, **a labels file** (CSV, UTF-8, header ``photo,names``): ``photo`` relative
  to ``DIR``, ``names`` the people it shows from left to right separated by ``;``. The ``k``
  largest faces found are taken and named in the order of their boxes' centres from left to
  right, so a small face in the background (a child behind two politicians) is not named. Only
  the photos it lists belong to the set.

:data:`FACE_RECOGNITION_EXAMPLES` labels the photos of the ``face_recognition`` repository's
examples (the project's shared real photos) after the table of their README.

:func:`collect` finds and embeds their faces (the caller chooses the detector, embedder and
crop); the calibration and the crop study work on the result.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolchain.core.contracts import IMAGE_SUFFIXES
from toolchain.core.errors import InputError
from toolchain.runtime.faces import DetectionLike

FACE_RECOGNITION_EXAMPLES = (Path(__file__).with_name("labelled_sets")
                             / "face_recognition_examples.csv")
"""Labels of ``face_recognition_examples/`` (``people/`` and ``photos/``), relative to it."""

LABELS_HEADER = ("photo", "names")
"""The labels file's header row."""

MAX_LABELS_BYTES = 4 * 1024 * 1024
"""The largest labels file read."""


@dataclass(frozen=True)
class LabelledPhoto:
    """A photo and the people it shows, left to right (one name: its largest face)."""

    path: Path
    names: tuple[str, ...]


@dataclass(frozen=True)
class LabelledSet:
    """A named set of labelled photos."""

    name: str
    root: Path
    photos: tuple[LabelledPhoto, ...]

    @property
    def people(self) -> list[str]:
        """Everyone named in the set, sorted."""
        return sorted({n for photo in self.photos for n in photo.names})


def _photos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _person_folders(root: Path) -> list[LabelledPhoto]:
    """Photos of ``<root>/<person>/`` and ``<root>/<split>/<person>/`` folders."""
    photos: list[LabelledPhoto] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        own = _photos_in(folder)
        photos += [LabelledPhoto(p, (folder.name,)) for p in own]
        if not own:
            for person in sorted(p for p in folder.iterdir() if p.is_dir()):
                photos += [LabelledPhoto(p, (person.name,)) for p in _photos_in(person)]
    return photos


def read_labels(path: Path, root: Path) -> list[LabelledPhoto]:
    """The photos of a labels file (see the module docstring), relative to ``root``.

    Raises:
        InputError: unreadable, too large, a bad header or row, a photo outside ``root`` or
            missing.
    """
    try:
        if path.stat().st_size > MAX_LABELS_BYTES:
            raise InputError(f"{path}: labels file larger than {MAX_LABELS_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the labels file: {exc}") from exc
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or tuple(c.strip() for c in rows[0][:2]) != LABELS_HEADER:
        raise InputError(f"{path}: the first row must be the header {','.join(LABELS_HEADER)}")
    photos = []
    base = root.resolve()
    for number, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        names = tuple(n.strip() for n in row[1].split(";")) if len(row) > 1 else ()
        if len(row) < 2 or not row[0].strip() or not names or not all(names):
            raise InputError(f"{path}:{number}: expected a photo and its names separated by ;")
        photo = (root / row[0].strip()).resolve()
        if not photo.is_relative_to(base):
            raise InputError(f"{path}:{number}: {row[0]!r} is outside {root}")
        if not photo.is_file():
            raise InputError(f"{path}:{number}: no photo {row[0]!r} in {root}")
        photos.append(LabelledPhoto(photo, names))
    return photos


def labelled_set(root: Path, labels: Path | None = None, name: str | None = None) -> LabelledSet:
    """The labelled set of a folder: the photos of a labels file, else its person folders.

    Raises:
        InputError: the folder does not exist, the labels file is bad, or no photo is labelled.
    """
    if not root.is_dir():
        raise InputError(f"{root}: not a folder of labelled photos")
    photos = read_labels(labels, root) if labels is not None else _person_folders(root)
    if not photos:
        raise InputError(f"{root}: no labelled photos (person folders or a labels file)")
    return LabelledSet(name or root.name, root, tuple(photos))


def parse_set(spec: str) -> LabelledSet:
    """The set named by ``DIR`` (person folders) or ``LABELS.csv@DIR`` (see the module docstring).

    Raises:
        InputError: as :func:`labelled_set`.
    """
    labels, at, root = spec.rpartition("@")
    if at and labels:
        return labelled_set(Path(root), Path(labels))
    return labelled_set(Path(spec))


def assign_names(detections: Sequence[DetectionLike], names: Sequence[str]) -> list[int]:
    """Indices into ``detections`` of the faces named ``names`` (left to right); ``[]`` if too
    few faces were found. One name: the largest face; ``k`` names: the ``k`` largest faces,
    ordered by the x of their centres."""
    if len(detections) < len(names):
        return []
    by_area = sorted(range(len(detections)),
                     key=lambda i: -float(detections[i].box[2]) * float(detections[i].box[3]))
    chosen = by_area[:len(names)]
    return sorted(chosen, key=lambda i: float(detections[i].box[0])
                  + float(detections[i].box[2]) / 2)


@dataclass
class LabelledFaces:
    """Embeddings of the labelled faces of one or more sets.

    Attributes:
        embeddings: ``(F, D)`` unit vectors.
        names: the person of each row.
        sets: the set each row comes from.
        photos: the photo each row comes from.
        missing: photos where fewer faces were found than they are labelled with, or unreadable.
    """

    embeddings: np.ndarray
    names: list[str] = field(default_factory=list)
    sets: list[str] = field(default_factory=list)
    photos: list[Path] = field(default_factory=list)
    missing: list[tuple[Path, str]] = field(default_factory=list)

    def rows(self, keep: Sequence[int]) -> LabelledFaces:
        """The given rows (without the ``missing`` list, which belongs to the whole run)."""
        return LabelledFaces(self.embeddings[list(keep)], [self.names[i] for i in keep],
                             [self.sets[i] for i in keep], [self.photos[i] for i in keep])

    def subset(self, set_name: str) -> LabelledFaces:
        """The rows of one set."""
        return self.rows([i for i, s in enumerate(self.sets) if s == set_name])


def all_pairs(faces: LabelledFaces) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distances and same-person flags of every pair of rows ``i < j``."""
    e = np.asarray(faces.embeddings, np.float64)
    i, j = np.triu_indices(len(e), k=1)
    squares = np.sum(e * e, axis=1)
    gram = e @ e.T
    distances = np.sqrt(np.maximum(squares[i] + squares[j] - 2.0 * gram[i, j], 0.0))
    labels = np.asarray(faces.names)
    return distances, labels[i] == labels[j]


Found = Callable[[Path], tuple[Sequence[DetectionLike], Callable[[Sequence[int]], np.ndarray]]]
"""Per photo: its detections, and a function embedding the faces of given indices."""


def collect(sets: Iterable[LabelledSet], found: Found,
            progress: Callable[[Path], None] | None = None) -> LabelledFaces:
    """Embed the labelled faces of ``sets`` with ``found`` (one call per photo).

    A photo with fewer faces than names, or that cannot be read, is listed in ``missing``.
    """
    vectors: list[np.ndarray] = []
    result = LabelledFaces(np.zeros((0, 0), np.float32))
    for labelled in sets:
        for photo in labelled.photos:
            try:
                detections, embed = found(photo.path)
            except InputError as exc:
                result.missing.append((photo.path, str(exc)))
                continue
            chosen = assign_names(detections, photo.names)
            if not chosen:
                result.missing.append((photo.path, f"{len(detections)} face(s) found for "
                                                   f"{len(photo.names)} name(s)"))
            else:
                vectors.append(embed(chosen))
                result.names += list(photo.names)
                result.sets += [labelled.name] * len(chosen)
                result.photos += [photo.path] * len(chosen)
            if progress is not None:
                progress(photo.path)
    if vectors:
        result.embeddings = np.concatenate(vectors).astype(np.float32)
    return result
