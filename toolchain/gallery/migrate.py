"""``facenet gallery migrate``: copy a gallery to another place or backend, verified.

The destination is created bound to the source's model, embedding size and crop (an existing one
must have the same three). Embeddings are copied in batches, one transaction each, through the
ordinary idempotent :meth:`~toolchain.gallery.base.Gallery.add` (into a large PostgreSQL
gallery without its HNSW index, built once at the end): an interrupted migration is finished by
running it again. Each person and embedding keeps its ``created`` time, and each person's
embeddings keep their order (the source's, which :meth:`~toolchain.gallery.base.Gallery.entries`
reads in insertion order). Vectors are copied bit for bit: the destination normalizes them again
on the way in, which leaves a stored unit vector unchanged
(:data:`~toolchain.gallery.vectors.UNIT_FIXED_POINT`). The stored threshold goes along when the
destination has none.
Then the copy is verified: the destination must hold every source embedding (same person, vector
bytes, source, photo sha256, box, score), checked by counts and by a sha256 over the sorted
per-row digests of both sides.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from toolchain.core.errors import InputError, IntegrityError
from toolchain.gallery.base import Gallery, GalleryTarget
from toolchain.gallery.inventory import open_gallery
from toolchain.gallery.names import MAX_NAME_CHARS, NameRefused, escape, person_name
from toolchain.gallery.postgres import PostgresGallery
from toolchain.gallery.vectors import Entry, canonical_box

MIGRATE_BATCH = 2_000
"""Embeddings per destination transaction."""
BULK_MIN = 50_000
"""From this many embeddings on, a PostgreSQL destination loads without its HNSW index and
builds it once at the end (:meth:`~toolchain.gallery.postgres.PostgresGallery.bulk_add`)."""


@dataclass(frozen=True)
class MigrateResult:
    """What a migration copied and how it was verified."""

    source: str
    destination: str
    people: int
    embeddings: int
    added: int
    """Embeddings the destination did not hold yet (the rest were there already)."""
    checksum: str
    """sha256 over the sorted row digests: the same on both sides."""
    threshold_copied: bool


def row_digest(entry: Entry) -> bytes:
    """sha256 of one embedding with everything stored about it (the vector as float32 bytes)."""
    fields = [entry.name, entry.source, entry.image_sha256, list(canonical_box(entry.box)),
              entry.score]
    return hashlib.sha256(json.dumps(fields).encode() + b"\0"
                          + entry.vector.astype("<f4").tobytes()).digest()


def checksum(entries: Sequence[Entry]) -> str:
    """sha256 over the sorted row digests of ``entries`` (independent of their order)."""
    digest = hashlib.sha256()
    for row in sorted(row_digest(entry) for entry in entries):
        digest.update(row)
    return digest.hexdigest()


def _check_names(gallery: Gallery) -> None:
    """Refuse a source whose names the rule refuses or would change (an older gallery's): the
    copy would not be verified as the same rows, and it would carry them into a new gallery.

    Raises:
        InputError: such names (the first few, escaped).
    """
    bad = []
    for person in gallery.people():
        try:
            if person_name(person.name) != person.name:
                bad.append(person.name)
        except NameRefused:
            bad.append(person.name)
    if bad:
        shown = ", ".join(f"'{escape(name)}'" for name in bad[:3])
        raise InputError(
            f"gallery {gallery.path}: {len(bad)} name(s) do not follow the name rule (NFC, "
            f"stripped, no control, format or unassigned characters, at most {MAX_NAME_CHARS} "
            f"characters): {shown}; remove them (`facenet gallery remove NAME`) and enroll "
            "them again under proper names, then migrate")


def _key(entry: Entry) -> tuple[str, tuple[float, float, float, float]]:
    return entry.image_sha256, canonical_box(entry.box)


def migrate(source: GalleryTarget, destination: GalleryTarget,
            batch: int = MIGRATE_BATCH) -> MigrateResult:
    """Copy every embedding (and the threshold, if the destination has none) and verify.

    Args:
        source: The gallery to copy.
        destination: Where to (created if missing).
        batch: Embeddings per destination transaction.

    Raises:
        InputError: the source is missing or unreadable, holds names the name rule refuses or
            would change (an older gallery: nothing is copied), a destination cannot be created.
        IntegrityError: the destination holds another model's, size's or crop's embeddings, or
            after the copy does not hold exactly the source's rows (a face already enrolled
            there under another name, say).
    """
    with open_gallery(source) as src:
        entries = src.entries()
        born = {person.name: person.created for person in src.people()}
        people = len(born)
        _check_names(src)
        threshold, threshold_source = src.threshold, src.threshold_source
        with open_gallery(destination, fingerprint=src.fingerprint, dim=src.dim, create=True,
                          crop=src.crop) as dst:
            if dst.dim != src.dim or dst.crop != src.crop:
                raise IntegrityError(
                    f"gallery {dst.path} holds {dst.dim}-d embeddings of crop {dst.crop!r}, "
                    f"{src.path} {src.dim}-d ones of crop {src.crop!r}: not one gallery")
            if isinstance(dst, PostgresGallery) and len(entries) >= BULK_MIN:
                added = dst.bulk_add(entries, people_created=born)
            else:
                added = sum(len(dst.add(entries[start:start + batch],
                                        people_created=born).added)
                            for start in range(0, len(entries), batch))
            copied = False
            if dst.threshold is None and threshold is not None:
                dst.set_threshold(threshold, threshold_source or f"migrated from {src.path}")
                copied = True
            keys = {_key(entry) for entry in entries}
            landed = [entry for entry in dst.entries() if _key(entry) in keys]
            want, got = checksum(entries), checksum(landed)
            if len(landed) != len(entries) or want != got:
                raise IntegrityError(
                    f"gallery {dst.path} does not hold the {len(entries)} embeddings of "
                    f"{src.path} as they are there ({len(landed)} found, checksum "
                    f"{got[:16]}… instead of {want[:16]}…): a face may be enrolled there under "
                    "another name")
            return MigrateResult(str(src.path), str(dst.path), people, len(entries), added,
                                 want, copied)
