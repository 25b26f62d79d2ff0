"""Evaluate recognition on a train/ + val/ per-person photo set: what ``facenet eval dataset`` runs.

:func:`evaluate_dataset` enrolls every train/ photo (its largest face) into a temporary gallery,
recognizes every val/ photo (its largest face, the dataset's one-subject convention) and measures,
with :mod:`toolchain.evaluation.metrics`:

- identification: each val face's nearest person, right or wrong, closed-set and at the
  threshold below (a face farther than it is "unknown" and counts as wrong);
- verification: every val face against every train face is a pair, "same" when both are the
  same person; the ROC over the distance threshold, its AUC and equal error rate, and the
  threshold of :func:`~toolchain.evaluation.metrics.best_pair_accuracy`, which
  :func:`save_threshold` stores in a gallery for ``recognize`` (or, given a target false-accept
  rate, the threshold of :func:`~toolchain.evaluation.pair_metrics.far_target`).

The result is an :class:`Evaluation`; :mod:`toolchain.evaluation.dataset_report` renders it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import tempfile
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np

from toolchain.core.crop import BOX, CropSpec
from toolchain.core.errors import InputError, IntegrityError
from toolchain.core.paths import DEFAULT_ARTIFACTS
from toolchain.core.preprocess import largest_face
from toolchain.evaluation.metrics import (
    NO_FACE,
    Identification,
    Verification,
    verification,
)
from toolchain.evaluation.pair_metrics import far_target, tar_at_far
from toolchain.gallery import GalleryTarget, MatchMode, open_gallery
from toolchain.gallery.names import NameRefused, person_name
from toolchain.gallery.ranking import pairwise_distances
from toolchain.runtime.backends import DEFAULT_MODEL, ModelChoice
from toolchain.runtime.faces import EnrollStatus
from toolchain.runtime.images import find_images
from toolchain.runtime.recognizer import MIN_ENROLL_FACE, Recognizer

Progress: TypeAlias = Callable[[str, int], AbstractContextManager[Callable[[Path], None] | None]]
"""Given a stage label and its photo count, a context yielding the per-photo callback."""


@dataclass(frozen=True)
class ValPhoto:
    """One val/ photo: its person, who it was recognized as, at what distance, or why not."""

    file: str
    true: str
    predicted: str | None
    distance: float | None
    error: str | None
    """Why the photo gave no face (unreadable, or no face found); ``None`` when it did."""


@dataclass(frozen=True)
class Evaluation:
    """Everything one evaluation of a dataset measured.

    Attributes:
        dataset: the folder with ``train/`` and ``val/``.
        created: when the run finished (UTC, ISO 8601, seconds).
        model: the embedding model file.
        model_fingerprint: its sha256 (galleries are bound to it).
        embedding_dim: its embedding size.
        match: how val faces were matched to the train gallery.
        train_photos: photos found under ``train/``.
        enrolled: train faces in the gallery.
        people: every person of train/ and val/, sorted.
        val: every val/ photo's outcome, in dataset order.
        identification: top-1 results, open-set at the verification's best threshold.
        verification: the ROC of every val face against every train face.
        pair_distances: ``(val faces, train faces)`` distances behind :attr:`verification`.
        pair_same: same shape, true where both faces are of the same person.
        problems: one line per photo that could not be used (``train: ...`` / ``val: ...``).
        unreadable: how many of them could not be read at all.
        crop: the crop spec text the faces were embedded with.
    """

    dataset: Path
    created: str
    model: Path
    model_fingerprint: str
    embedding_dim: int
    match: MatchMode
    train_photos: int
    enrolled: int
    people: list[str]
    val: list[ValPhoto]
    identification: Identification
    verification: Verification
    pair_distances: np.ndarray
    pair_same: np.ndarray
    problems: list[str]
    unreadable: int
    crop: str = BOX.text

    @property
    def predicted_names(self) -> list[str]:
        """Columns of the confusion table: the people, names only predicted, then no-face."""
        predicted = self.identification.predicted
        names = [*self.people, *sorted({p for p in predicted if p and p not in self.people})]
        if any(p is None for p in predicted):
            names.append(NO_FACE)
        return names


def dataset_split(folder: Path) -> list[tuple[str, Path]]:
    """``(person, photo)`` for every photo under ``folder/<person>/`` (hidden folders skipped),
    the person as the name rule makes the folder's name (a folder copied from a system that
    stores names decomposed, NFD, is still the person the gallery stores in NFC).

    Raises:
        InputError: ``folder`` is missing, holds no per-person photo folders, or a folder name the
            name rule refuses.
    """
    if not folder.is_dir():
        raise InputError(f"{folder}: missing; the dataset needs train/ and val/ per-person "
                         "folders")
    people = [p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    try:
        names = [person_name(person.name) for person in people]
    except NameRefused as exc:
        raise InputError(f"{folder}: {exc}") from exc
    items = [(name, photo) for name, person in zip(names, people, strict=True)
             for photo in find_images(person)]
    if not items:
        raise InputError(f"{folder}: no per-person photo folders")
    return items


def _no_progress(_label: str, _total: int) -> AbstractContextManager[None]:
    return contextlib.nullcontext()


def evaluate_dataset(
    dataset: Path,
    artifacts: Path = DEFAULT_ARTIFACTS,
    *,
    match: MatchMode | str = MatchMode.NEAREST,
    detection: Mapping[str, Any] | None = None,
    min_enroll_face: float = MIN_ENROLL_FACE,
    progress: Progress = _no_progress,
    on_problem: Callable[[str], None] | None = None,
    crop: CropSpec | str | None = None,
    model: ModelChoice = DEFAULT_MODEL,
) -> Evaluation:
    """Enroll ``dataset/train`` into a temporary gallery, recognize ``dataset/val``, measure.

    Args:
        dataset: folder with ``train/<person>/`` and ``val/<person>/`` photos.
        artifacts: the artifacts tree whose models are used.
        match: distance to a person's nearest train face, or to their mean direction.
        detection: keywords of the face detector (see :meth:`Recognizer.from_artifacts`).
        min_enroll_face: smallest face enrolled from train/ (short side, pixels).
        progress: progress display of the two stages (``enrolling train/``,
            ``recognizing val/``).
        on_problem: receives each photo that could not be used, after the run and before any
            error is raised.
        crop: how faces are cropped (default: the model's ``default_crop``).
        model: the runtime and precision of the FaceNet model (default: fp32 on ONNX Runtime).

    Raises:
        InputError: train/ or val/ is missing or empty, no face of either could be used, or
            the pairs are all of one kind (no ROC).
        MissingArtifactError: a model is missing.
    """
    train = dataset_split(dataset / "train")
    val = dataset_split(dataset / "val")
    problems: list[str] = []
    unreadable = 0
    with (
        tempfile.TemporaryDirectory(prefix="facenet-evaluate-") as tmp,
        Recognizer.from_artifacts(artifacts, Path(tmp) / "train.db", match=match, top_k=1,
                                  detection=detection, crop=crop, runtime=model.runtime,
                                  precision=model.precision) as rec,
    ):
        with progress("enrolling train/", len(train)) as advance:
            outcomes = rec.enroll_many(train, largest=True, progress=advance,
                                       min_enroll_face=min_enroll_face)
        for outcome in outcomes:
            if not outcome.ok:
                problems.append(f"train: {outcome.message}")
                unreadable += outcome.status is EnrollStatus.ERROR
        entries = rec.gallery().entries()
        records: list[ValPhoto] = []
        val_vectors: list[np.ndarray] = []
        val_people: list[str] = []
        with progress("recognizing val/", len(val)) as advance:
            photos = rec.analyze([path for _, path in val], progress=advance)
            for (person, _), photo in zip(val, photos, strict=True):
                if photo.error is not None or not photo.faces:
                    message = photo.error or f"{photo.path}: no face found"
                    problems.append(f"val: {message}")
                    unreadable += photo.error is not None
                    records.append(ValPhoto(str(photo.path), person, None, None, message))
                    continue
                face = photo.faces[largest_face([f.box for f in photo.faces])]
                best = rec.gallery().match(face.embedding[None], k=1, mode=rec.match_mode)[0]
                records.append(ValPhoto(str(photo.path), person,
                                        best[0].name if best else None,
                                        best[0].distance if best else None, None))
                val_vectors.append(face.embedding)
                val_people.append(person)
        embedder = rec.embedder
        match_mode = rec.match_mode
        crop_text = rec.crop()[0].text
    if on_problem is not None:
        for message in problems:
            on_problem(message)
    if not entries or not val_vectors:
        raise InputError(f"{dataset}: no usable faces in train/ or val/")
    pair_d = pairwise_distances(np.stack(val_vectors), np.stack([e.vector for e in entries]))
    pair_same = np.array(val_people)[:, None] == np.array([e.name for e in entries])[None, :]
    try:
        ver = verification(pair_d.ravel(), pair_same.ravel())
    except ValueError as exc:
        raise InputError(f"{dataset}: cannot compute ROC ({exc})") from exc
    ident = Identification(tuple(r.true for r in records), tuple(r.predicted for r in records),
                           tuple(r.distance for r in records), ver.best_threshold)
    return Evaluation(
        dataset=dataset,
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        model=embedder.path,
        model_fingerprint=embedder.fingerprint,
        embedding_dim=embedder.dim,
        match=match_mode,
        train_photos=len(train),
        enrolled=len(entries),
        people=sorted({p for p, _ in train} | {p for p, _ in val}),
        val=records,
        identification=ident,
        verification=ver,
        pair_distances=pair_d,
        pair_same=pair_same,
        problems=problems,
        unreadable=unreadable,
        crop=crop_text,
    )


def save_threshold(evaluation: Evaluation, gallery: GalleryTarget,
                   far: float | None = None) -> float:
    """Save a threshold from the evaluation's val x train pairs into ``gallery`` (created if new).

    Without ``far`` it is the accuracy-maximizing threshold; with it, the threshold of the
    :func:`~toolchain.evaluation.pair_metrics.far_target` rule: at most that share of the
    different-person pairs accepted.

    Returns:
        The threshold stored.

    Raises:
        IntegrityError: ``gallery`` belongs to another model, or was enrolled with another crop
            than the evaluation's.
    """
    ver = evaluation.verification
    pairs = ver.pairs_same + ver.pairs_different
    if far is None:
        value = ver.best_threshold
        rule = "accuracy-maximizing"
    else:
        point = tar_at_far(evaluation.pair_distances, evaluation.pair_same, far)
        value = point.threshold
        rule = (f"{far_target(far).name} ({point.false_accepts} of {point.impostor_pairs} "
                f"accepted, TAR {point.tar:.2%})")
    with open_gallery(gallery, fingerprint=evaluation.model_fingerprint,
                      dim=evaluation.embedding_dim, create=True, crop=evaluation.crop) as stored:
        if stored.crop != evaluation.crop:
            raise IntegrityError(
                f"gallery {stored.path} was enrolled with crop {stored.crop!r}, the evaluation "
                f"cropped {evaluation.crop!r}: its threshold would not fit the gallery; evaluate "
                f"with the gallery's crop"
            )
        stored.set_threshold(value, f"facenet eval dataset {evaluation.dataset} at "
                             f"{evaluation.created}, {rule} over {pairs} pairs")
    return value
