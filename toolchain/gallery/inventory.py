"""Which backend stores a gallery: one table keyed by the target's URL scheme.

A gallery target is a SQLite file path or a ``postgresql://`` URL (libpq's ``postgres://``
spelling too). :data:`BACKENDS` maps each scheme to the module and class that implement
:class:`~toolchain.gallery.base.Gallery` for it, and the extra that installs what it needs; a
plain path has no scheme and is a SQLite file. The interface (``base``) names no backend, and the
backend modules are imported only when a target of theirs is opened, so a SQLite user never loads
psycopg. A new backend: a module with a ``Gallery`` subclass, one row here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from toolchain.core.contracts import EMBEDDING_DIM
from toolchain.gallery.base import Gallery, GalleryTarget, is_postgres_url
from toolchain.gallery.schema import LEGACY_CROP


@dataclass(frozen=True)
class Backend:
    """One gallery backend: where its class is, and what to install for it."""

    name: str
    """What :attr:`Gallery.backend` reports (``sqlite``, ``postgresql``)."""
    module: str
    """The module defining the class (imported on first use)."""
    cls: str
    """The :class:`~toolchain.gallery.base.Gallery` subclass."""
    extra: str | None
    """The ``pip install "facenet-toolchain[EXTRA]"`` it needs beyond the runtime, if any."""

    def load(self) -> type[Gallery]:
        """The backend's class."""
        found: type[Gallery] = getattr(importlib.import_module(self.module), self.cls)
        return found


SQLITE = Backend("sqlite", "toolchain.gallery.store", "SqliteGallery", None)
POSTGRES = Backend("postgresql", "toolchain.gallery.postgres", "PostgresGallery", "postgres")

BACKENDS: dict[str, Backend] = {
    "": SQLITE,
    "postgresql": POSTGRES,
    "postgres": POSTGRES,
}
"""Every backend by the URL scheme of its targets (``""``: a file path)."""


def backend_for(target: GalleryTarget) -> Backend:
    """The backend that stores ``target``."""
    scheme = str(target).split("://", 1)[0].lower() if is_postgres_url(target) else ""
    return BACKENDS[scheme]


def open_gallery(
    target: GalleryTarget, *, fingerprint: str | None = None, dim: int = EMBEDDING_DIM,
    create: bool = False, crop: str = LEGACY_CROP,
) -> Gallery:
    """Open the gallery at ``target``: a SQLite file, or a ``postgresql://`` URL.

    A URL may name one of several galleries of a database with ``?gallery=NAME`` (a
    PostgreSQL schema, default ``facenet``); everything else in it is libpq's.

    Args:
        target: The SQLite file, or the PostgreSQL URL.
        fingerprint: The model the caller embeds with; a gallery made with another is refused.
            ``None`` skips the check (listing, removing, exporting need no model).
        dim: Embedding size recorded when the gallery is created.
        create: Create the gallery if it does not exist (``fingerprint`` required).
        crop: The crop spec text recorded when the gallery is created.

    Raises:
        InputError: missing (and not ``create``), not a gallery, unreadable, locked, or a
            server that cannot be reached.
        IntegrityError: made with a different model.
    """
    return backend_for(target).load().open(target, fingerprint=fingerprint, dim=dim,
                                           create=create, crop=crop)


def gallery_exists(target: GalleryTarget) -> bool:
    """Whether a gallery is at ``target`` (a file exists, or the database holds the gallery).

    Raises:
        InputError: a PostgreSQL server that cannot be reached or read.
    """
    return backend_for(target).load().exists(target)
