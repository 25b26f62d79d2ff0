"""Enrolling analysed photos into a gallery: one face per photo, one gallery transaction per batch.

:meth:`~toolchain.runtime.recognizer.Recognizer.enroll_many` reads, detects and embeds the
photos; :func:`enroll_photos` decides what each one enrolls (:func:`~toolchain.runtime.faces.
enroll_outcome`), stores the faces of every ``batch`` photos with one ``Gallery.add`` and turns
the faces the gallery holds already into ``already`` outcomes naming their owner. Kept apart
from the recognizer so the gallery bookkeeping of an enrollment reads on its own.
"""

from __future__ import annotations

from collections.abc import Iterable

from toolchain.gallery import Entry, Gallery
from toolchain.runtime.faces import EnrollOutcome, EnrollStatus, PhotoFaces, enroll_outcome


def _store(gallery: Gallery, pending: list[tuple[EnrollOutcome, PhotoFaces]]
           ) -> list[EnrollOutcome]:
    """Add the faces of ``pending`` in one transaction; their outcomes, in order."""
    ready = {
        id(outcome): Entry(name=outcome.name, vector=outcome.face.embedding,
                           source=str(photo.path), image_sha256=photo.image.sha256,
                           box=outcome.face.box, score=outcome.face.confidence)
        for outcome, photo in pending
        if outcome.face is not None and photo.image is not None
    }
    result = gallery.add(list(ready.values()))
    owners = {id(entry): owner for entry, owner in result.duplicates}
    outcomes: list[EnrollOutcome] = []
    for outcome, _ in pending:
        entry = ready.get(id(outcome))
        if entry is not None and id(entry) in owners:
            owner = owners[id(entry)]
            note = ("" if owner == outcome.name
                    else f" as {owner!r}, not added again as {outcome.name!r}")
            outcome = EnrollOutcome(outcome.path, outcome.name, EnrollStatus.ALREADY,
                                    f"{outcome.path}: already in the gallery{note}",
                                    outcome.face, owner)
        outcomes.append(outcome)
    return outcomes


def enroll_photos(gallery: Gallery, photos: Iterable[tuple[str, PhotoFaces]], *,
                  largest: bool, min_face: float, batch: int) -> list[EnrollOutcome]:
    """Enroll ``(name, analysed photo)`` pairs into ``gallery``, ``batch`` photos per transaction.

    Args:
        gallery: the open gallery, bound to the embedder's model.
        photos: each person's name and the faces of their photo, in order.
        largest: enroll the largest of several usable faces instead of refusing the photo.
        min_face: smallest face enrolled, in pixels on the box's short side.
        batch: photos per ``Gallery.add`` (the photos of one embedder batch).

    Returns:
        One outcome per photo, in order.
    """
    outcomes: list[EnrollOutcome] = []
    pending: list[tuple[EnrollOutcome, PhotoFaces]] = []
    for name, photo in photos:
        pending.append((enroll_outcome(name, photo, largest, min_face), photo))
        if len(pending) >= batch:
            outcomes.extend(_store(gallery, pending))
            pending.clear()
    if pending:
        outcomes.extend(_store(gallery, pending))
    return outcomes
