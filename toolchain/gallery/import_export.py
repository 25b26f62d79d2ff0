"""Gallery files in JSON: ``facenet gallery export`` files written and read, the seed's
``DataBase.json`` read.

An import is parsed and validated whole (:func:`parse_import`) before anything is written, then
added in one transaction with its threshold (:func:`import_file`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.core.atomic import sha256_file, write_json
from toolchain.core.crop import CropSpec
from toolchain.core.errors import InputError, IntegrityError, MissingArtifactError
from toolchain.core.integrity.fingerprint import model_fingerprint
from toolchain.gallery.base import AddResult, Gallery, GalleryTarget
from toolchain.gallery.inventory import gallery_exists, open_gallery
from toolchain.gallery.names import NameRefused, person_name
from toolchain.gallery.schema import (
    EXPORT_FORMAT,
    LEGACY_CROP,
    SCHEMA_VERSION,
    SHA256_HEX,
    check_threshold,
)
from toolchain.gallery.sqlite import one_line
from toolchain.gallery.vectors import Entry, ImportData, unit_embedding, vector_blob

MAX_IMPORT_BYTES = 256 * 2**20
"""Largest import file read (an export of ~100,000 embeddings), so a huge file fails fast."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    """A JSON number that is a finite float (an integer of 400 digits is not)."""
    try:
        return _is_number(value) and math.isfinite(float(value))
    except OverflowError:
        return False


def _number_list(value: Any, where: str, dim: int | None = None) -> np.ndarray:
    if not isinstance(value, list) or not value:
        raise InputError(f"{where}: expected a list of numbers")
    if not all(_is_number(v) for v in value):
        raise InputError(f"{where}: expected only numbers")
    return unit_embedding(value, dim, where)


def _person(name: Any, path: Path) -> str:
    """A person name of an import file, as the name rule makes it.

    Raises:
        InputError: not text, or a name the rule refuses (the file is refused whole).
    """
    if not isinstance(name, str):
        raise InputError(f"{path}: person name {name!r} is not text")
    try:
        return person_name(name)
    except NameRefused as exc:
        raise InputError(f"{path}: {exc}") from exc


def _parse_seed(doc: dict[str, Any], path: Path) -> ImportData:
    entries: list[Entry] = []
    for raw, value in doc.items():
        name = _person(raw, path)
        where = f"{path}: {name!r}"
        nested = isinstance(value, list) and bool(value) and isinstance(value[0], list)
        rows = value if nested else [value]
        for i, row in enumerate(rows):
            vector = _number_list(row, where)
            digest = hashlib.sha256(vector_blob(vector)).hexdigest()
            entries.append(Entry(name=name, vector=vector, source=f"{path.name}#{name}[{i}]",
                                 image_sha256=f"vector:{digest}", box=(0.0, 0.0, 0.0, 0.0)))
    if not entries:
        raise InputError(f"{path}: no people in the file")
    dims = {e.vector.size for e in entries}
    if len(dims) != 1:
        raise InputError(f"{path}: vectors of different sizes {sorted(dims)}")
    return ImportData(path, entries, None, dims.pop(), None, "seed DataBase.json")


def _crop_text(value: Any, path: Path) -> str:
    """The canonical text of an export's ``crop``."""
    try:
        if not isinstance(value, str):
            raise ValueError(f"{value!r}")
        return CropSpec.parse(value).text
    except ValueError as exc:
        raise InputError(f"{path}: crop {value!r} is not a crop spec ({exc})") from exc


def _parse_export(doc: dict[str, Any], path: Path) -> ImportData:
    try:
        if doc.get("schema_version") != SCHEMA_VERSION:
            raise InputError(f"{path}: export schema {doc.get('schema_version')} is not "
                             f"{SCHEMA_VERSION}")
        fingerprint = doc["model_fingerprint"]
        dim = doc["dim"]
        threshold = doc.get("threshold")
        crop = _crop_text(doc.get("crop", LEGACY_CROP), path)
        if (not isinstance(fingerprint, str) or not SHA256_HEX.fullmatch(fingerprint)
                or not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0):
            raise InputError(f"{path}: bad model_fingerprint or dim")
        if threshold is not None:
            threshold = check_threshold(threshold, f"{path}: threshold")
        entries: list[Entry] = []
        for person in doc["people"]:
            name = _person(person["name"], path)
            for i, item in enumerate(person["embeddings"]):
                where = f"{path}: {name!r} embedding {i}"
                vector = item["vector"]
                if isinstance(vector, list) and len(vector) != dim:
                    raise InputError(f"{where}: {len(vector)} values, the file says dim {dim}")
                vector = _number_list(vector, where, dim)
                box = item["box"]
                if not isinstance(box, list) or len(box) != 4 or not all(map(_finite, box)):
                    raise InputError(f"{where}: box must be [x, y, w, h]")
                score = item.get("score")
                if score is not None and not _finite(score):
                    raise InputError(f"{where}: bad score {score!r}")
                sha, source = item["image_sha256"], item["source"]
                if not isinstance(sha, str) or not sha or not isinstance(source, str):
                    raise InputError(f"{where}: bad image_sha256 or source")
                entries.append(Entry(name=name, vector=vector, source=source,
                                     image_sha256=sha, box=(box[0], box[1], box[2], box[3]),
                                     score=score))
    except (KeyError, TypeError, AttributeError) as exc:
        raise InputError(
            f"{path}: not a valid gallery export ({type(exc).__name__}: {exc})"
        ) from exc
    return ImportData(path, entries, fingerprint, dim, threshold, "gallery export", crop)


def _read_capped(path: Path) -> bytes:
    """The bytes of a regular file of at most :data:`MAX_IMPORT_BYTES`.

    Opened non-blocking and checked after opening: a FIFO, a device (``/dev/zero``) or a
    directory is refused instead of blocking or reading forever.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{path}: not a regular file")
        if info.st_size > MAX_IMPORT_BYTES:
            raise InputError(f"{path}: {info.st_size} bytes, larger than the "
                             f"{MAX_IMPORT_BYTES} an import reads")
        try:
            data = handle.read(MAX_IMPORT_BYTES + 1)
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if len(data) > MAX_IMPORT_BYTES:
        raise InputError(f"{path}: larger than the {MAX_IMPORT_BYTES} bytes an import reads")
    return data


def parse_import(path: Path) -> ImportData:
    """Read and validate a ``facenet gallery export`` file or the seed's ``DataBase.json``.

    The file is read up to :data:`MAX_IMPORT_BYTES`; nesting deeper than the JSON parser's
    recursion limit (~1,000 levels; the formats need 5) is refused, as is every vector an
    embedder could not have made (see :func:`unit_embedding`) and a threshold that is no distance
    (see :func:`check_threshold`).

    Raises:
        InputError: unreadable, too large, not JSON, or not one of the two formats (nothing is
            imported).
    """
    path = Path(path)
    data = _read_capped(path)
    try:
        doc = json.loads(data.decode("utf-8"))
    except RecursionError as exc:
        raise InputError(f"{path}: JSON nested too deeply (a gallery export needs 5 levels, "
                         "a DataBase.json 3)") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: not JSON ({one_line(str(exc))})") from exc
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a JSON object")
    if doc.get("format") == EXPORT_FORMAT:
        return _parse_export(doc, path)
    return _parse_seed(doc, path)


def import_file(file: Path, gallery: GalleryTarget, model: Path, dim: int
                ) -> tuple[ImportData, AddResult]:
    """``facenet gallery import``: parse ``file`` and add it to ``gallery`` in one transaction.

    A new gallery is bound to the current model (``model``, the FaceNet ONNX file), so an export
    made with ANOTHER model is refused rather than creating a gallery for vectors this toolchain
    does not compute; an existing gallery accepts only exports of its own model. The seed's
    ``DataBase.json`` carries no fingerprint: it is taken as the current model's.

    Args:
        file: A ``facenet gallery export`` file or the seed's ``DataBase.json``.
        gallery: The gallery file or PostgreSQL URL (created if missing).
        model: The current FaceNet model (needed only when the gallery is created).
        dim: The current model's embedding size.

    Returns:
        The parsed file and what was added (duplicates and their owners included).

    Raises:
        InputError: a malformed file or vectors of another size (nothing is written).
        IntegrityError: the file's vectors come from another model than the gallery's, or than
            the current model's for a new gallery.
        MissingArtifactError: a new gallery is needed and the model is missing.
    """
    data = parse_import(file)
    fingerprint = data.fingerprint
    if not gallery_exists(gallery):
        if data.dim != dim:
            raise InputError(f"{file}: {data.dim}-d vectors, FaceNet makes {dim}-d ones")
        if not model.is_file():
            raise MissingArtifactError(
                f"a new gallery is bound to the model {model}, which is missing; create it "
                "with `nox -s export`")
        current = model_fingerprint(model, sha256_file(model))
        if fingerprint is not None and fingerprint != current:
            raise IntegrityError(
                f"{file} holds embeddings of model sha256 {fingerprint[:16]}…, the current "
                f"model {model} is sha256 {current[:16]}…; vectors of different models cannot "
                "be compared: import it where that model is, or enroll the photos again"
            )
        fingerprint = current
    with open_gallery(gallery, fingerprint=fingerprint, dim=data.dim, create=True,
                      crop=data.crop) as opened:
        return data, opened.import_data(data)


def export_json(gallery: Gallery, path: Path) -> int:
    """Write every embedding of ``gallery`` to ``path`` (atomically); return how many."""
    document = export_document(gallery)
    write_json(path, document)
    return sum(len(person["embeddings"]) for person in document["people"])


def export_document(gallery: Gallery) -> dict[str, Any]:
    """Every embedding of ``gallery``, with its provenance, as the export file's JSON document."""
    people: dict[str, list[dict[str, Any]]] = {}
    entries = gallery.entries()
    for entry in entries:
        people.setdefault(entry.name, []).append({
            "vector": [float(v) for v in entry.vector],
            "source": entry.source,
            "image_sha256": entry.image_sha256,
            "box": list(entry.box),
            "score": entry.score,
        })
    return {
        "format": EXPORT_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "model_fingerprint": gallery.fingerprint,
        "dim": gallery.dim,
        "crop": gallery.crop,
        "threshold": gallery.threshold,
        "people": [{"name": name, "embeddings": items} for name, items in people.items()],
    }

