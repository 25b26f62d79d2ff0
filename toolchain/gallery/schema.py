"""The gallery's contract, without numpy: schema, export format, match modes, threshold range.

Light on purpose: the command line takes ``--match`` choices and the threshold check from here
without loading numpy or SQLite code.
"""

from __future__ import annotations

import enum
import numbers
import re

from toolchain.core.errors import InputError

SCHEMA_VERSION = 1
"""The ``schema_version`` of the SQLite file and of an export."""
EXPORT_FORMAT = "facenet-toolchain-gallery"
"""The ``format`` of a ``facenet gallery export`` file."""
MAX_DISTANCE = 2.0
"""Largest Euclidean distance between unit vectors (opposite directions): thresholds lie in
(0, MAX_DISTANCE]."""
LEGACY_CROP = "box"
"""The crop of a gallery or export that records none: galleries made before crops were recorded,
and the seed's ``DataBase.json``, hold embeddings of bare MTCNN box crops."""
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
"""A model fingerprint: a lowercase hex sha256."""

SCHEMA_SQL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE people (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL
);
CREATE TABLE embeddings (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    vector BLOB NOT NULL,
    source TEXT NOT NULL,
    image_sha256 TEXT NOT NULL,
    box_x REAL NOT NULL,
    box_y REAL NOT NULL,
    box_w REAL NOT NULL,
    box_h REAL NOT NULL,
    score REAL,
    model_fingerprint TEXT NOT NULL,
    created TEXT NOT NULL,
    UNIQUE (image_sha256, box_x, box_y, box_w, box_h)
);
CREATE INDEX embeddings_person ON embeddings(person_id);
"""
"""The tables of a gallery (version :data:`SCHEMA_VERSION`), one statement per ``;``."""


class MatchMode(str, enum.Enum):
    """How a query is compared with a person's embeddings."""

    NEAREST = "nearest"
    CENTROID = "centroid"



def check_threshold(value: object, where: str = "threshold") -> float:
    """``value`` as a match threshold, or :class:`InputError` saying why it cannot be one.

    A threshold is a Euclidean distance between unit vectors: a real number in (0, 2]. Zero would
    match nothing but the very same vector, anything above 2 matches everyone, NaN nobody.

    Args:
        value: The candidate (a number; booleans and strings are refused).
        where: What the message names (a file and key, or a command-line option).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{where} {value!r} is not a number; a threshold is a distance in "
                         f"(0, {MAX_DISTANCE:g}]")
    threshold = float(value)
    if not 0.0 < threshold <= MAX_DISTANCE:
        raise InputError(f"{where} {threshold!r} is outside (0, {MAX_DISTANCE:g}]: distances "
                         f"between unit vectors run from 0 (identical) to {MAX_DISTANCE:g} "
                         "(opposite)")
    return threshold
