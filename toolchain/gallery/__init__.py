"""The face gallery: enrolled people and their embeddings, bound to one model.

Two backends behind one interface (:class:`Gallery`, ``base``): a SQLite file (``store``, the
embedded default) and a PostgreSQL + pgvector database (``postgres``), chosen from the table of
``inventory`` by the target :func:`open_gallery` is given (a ``postgresql://`` URL or a file
path). What follows is the SQLite
file; the PostgreSQL gallery holds the same tables in a schema (see ``postgres``).

Schema (``SCHEMA_VERSION`` 1):

- ``meta(key, value)``: ``schema_version``, ``model_fingerprint`` (sha256 of the ONNX file whose
  vectors the gallery holds), ``dim``, ``crop`` (the crop spec its faces were embedded with,
  :class:`toolchain.core.crop.CropSpec` text; absent in galleries older than it: ``box``),
  ``created``, and ``threshold`` / ``threshold_source`` once ``facenet eval dataset
  --store-threshold`` calibrated one.
- ``people(id, name UNIQUE, created)``.
- ``embeddings(id, person_id, vector BLOB float32 little-endian, source, image_sha256, box_x,
  box_y, box_w, box_h, score, model_fingerprint, created)`` with ``UNIQUE(image_sha256, box_*)``:
  enrolling the same face of the same photo again is a no-op, whatever name it is enrolled under.

Everything read back is checked the way it was checked on the way in: a stored vector that is not
a ``dim``-d unit vector, or a stored threshold that is not a distance in (0, 2], means the file was
edited or damaged (:class:`IntegrityError`); a damaged SQLite file is an :class:`InputError` at
open (``PRAGMA quick_check``) or at whatever read meets the damage.

A new gallery appears complete or not at all (``sqlite.create_file``). Writes are one
``BEGIN IMMEDIATE`` transaction each (a whole enroll batch, an import), the journal is WAL and a
busy timeout lets a reader and a writer share the file. Distances are Euclidean
between unit vectors (0 = identical, 2 = opposite).

Matching: by default a person is as close as the NEAREST of their embeddings. Photos of one person
differ in pose, lighting, age and expression, and their embeddings spread out; a query photo
resembles some of them much more than others. The mean of the spread ("centroid") is a blur that
may sit far from every real photo, so one unusual enrollment photo drags it away from the others.
``MatchMode.CENTROID`` is offered for galleries with many clean photos per person, where the mean
averages out noise.

Modules: ``schema`` (the file's contract and the threshold range, no numpy), ``vectors`` (entries,
checked unit vectors, ranking people), ``ranking`` (the exact nearest-people search), ``base``
(:class:`Gallery`: the interface and the shared semantics), ``inventory`` (the backends by URL
scheme, :func:`open_gallery`), ``sqlite`` (creating, opening and checking the file), ``store`` (the
SQLite backend), ``postgres`` (the PostgreSQL backend), ``import_export`` (JSON export and import
files), ``migrate`` (copying between backends), ``redact`` (a gallery URL shown without its
password), ``names`` (the one person-name rule). The names below are imported on first use, so
``--match`` choices and the threshold check cost no numpy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from toolchain.core.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "SCHEMA_VERSION": ".schema",
    "EXPORT_FORMAT": ".schema",
    "MAX_DISTANCE": ".schema",
    "MatchMode": ".schema",
    "check_threshold": ".schema",
    "MIN_RAW_NORM": ".vectors",
    "Entry": ".vectors",
    "Candidate": ".vectors",
    "unit_embedding": ".vectors",
    "Gallery": ".base",
    "AddResult": ".base",
    "Person": ".base",
    "GalleryTarget": ".base",
    "display_target": ".base",
    "stored_crop": ".base",
    "gallery_exists": ".inventory",
    "open_gallery": ".inventory",
    "BACKENDS": ".inventory",
    "gallery_target": ".base",
    "is_postgres_url": ".base",
    "MAX_IMPORT_BYTES": ".import_export",
    "ImportData": ".vectors",
    "parse_import": ".import_export",
    "import_file": ".import_export",
    "export_document": ".import_export",
    "export_json": ".import_export",
}
"""Each public name and the submodule that defines it."""

__all__ = [
    "BACKENDS",
    "EXPORT_FORMAT",
    "MAX_DISTANCE",
    "MAX_IMPORT_BYTES",
    "MIN_RAW_NORM",
    "SCHEMA_VERSION",
    "AddResult",
    "Candidate",
    "Entry",
    "Gallery",
    "GalleryTarget",
    "ImportData",
    "MatchMode",
    "Person",
    "check_threshold",
    "display_target",
    "export_document",
    "export_json",
    "gallery_exists",
    "gallery_target",
    "import_file",
    "is_postgres_url",
    "open_gallery",
    "parse_import",
    "stored_crop",
    "unit_embedding",
]

if TYPE_CHECKING:
    from toolchain.gallery.base import (
        AddResult,
        Gallery,
        GalleryTarget,
        Person,
        display_target,
        gallery_target,
        is_postgres_url,
        stored_crop,
    )
    from toolchain.gallery.import_export import (
        MAX_IMPORT_BYTES,
        ImportData,
        export_document,
        export_json,
        import_file,
        parse_import,
    )
    from toolchain.gallery.inventory import BACKENDS, gallery_exists, open_gallery
    from toolchain.gallery.schema import (
        EXPORT_FORMAT,
        MAX_DISTANCE,
        SCHEMA_VERSION,
        MatchMode,
        check_threshold,
    )
    from toolchain.gallery.vectors import MIN_RAW_NORM, Candidate, Entry, unit_embedding


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
