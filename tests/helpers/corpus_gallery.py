"""Bad-input corpus, gallery area: poisoned and edited galleries, hostile imports.

Imports: a near-zero vector (which once sat at distance 1.000 from every face and was named in
19 photos of 20), values beyond float32, a threshold that is no distance, JSON nested 100,000
deep, an export of another model into a new gallery. Galleries: random bytes over a page in the
middle of the file, a stored vector or threshold edited by hand. Each is refused with one line
and its exit code, and the workspace is left as it was.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from helpers.cli import facenet
from helpers.corpus import Command, Outcome, Store, Workspace, case, face_photo
from toolchain.gallery import Entry, open_gallery

OTHER_MODEL = "0" * 64
"""The fingerprint of the galleries made without the real model (no ``models`` needed)."""
PAGE = 4096
Damage = Callable[[Path], None]
ROWS_FOR_PAGES = 300
"""Synthetic embeddings added so a gallery spans ~80 SQLite pages."""


def unit_vector(seed: int, dim: int = 128) -> list[float]:
    vector = np.random.default_rng(seed).standard_normal(dim)
    return (vector / np.linalg.norm(vector)).tolist()


def add_synthetic(path: Path, fingerprint: str | None = None, rows: int = ROWS_FOR_PAGES) -> None:
    """Add ``rows`` synthetic faces to the gallery at ``path`` (created if ``fingerprint``)."""
    entries = [Entry(f"Person {i:03d}", np.asarray(unit_vector(i), np.float32),
                     f"synthetic/{i}.jpg", f"{i:064x}", (1.0, 2.0, 50.0, 60.0), 0.99)
               for i in range(rows)]
    with open_gallery(path, fingerprint=fingerprint, create=fingerprint is not None) as gallery:
        gallery.add(entries)


def overwrite_page(path: Path, page: int | None = None, seed: int = 1) -> None:
    """Random bytes over one whole page (default: the one in the middle of the file)."""
    data = bytearray(path.read_bytes())
    page = len(data) // PAGE // 2 if page is None else page
    assert len(data) >= (page + 1) * PAGE
    data[page * PAGE:(page + 1) * PAGE] = np.random.default_rng(seed).bytes(PAGE)
    path.write_bytes(bytes(data))


def edit_vector(path: Path, name: str, vector: Any) -> None:
    """Replace the stored vector(s) of ``name`` by ``vector`` (an array, or raw bytes)."""
    blob = vector if isinstance(vector, bytes) else np.asarray(vector, "<f4").tobytes()
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute("UPDATE embeddings SET vector = ? WHERE person_id ="
                         " (SELECT id FROM people WHERE name = ?)", (blob, name))
    finally:
        conn.close()


def edit_meta(path: Path, key: str, value: str) -> None:
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)"
                         " ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))
    finally:
        conn.close()


def export_doc(fingerprint: str, threshold: Any = None, vector: list[float] | None = None
               ) -> dict[str, Any]:
    """A ``facenet gallery export`` of one face of Ada (well-formed unless told otherwise)."""
    return {
        "format": "facenet-toolchain-gallery", "schema_version": 1,
        "model_fingerprint": fingerprint, "dim": 128, "threshold": threshold,
        "people": [{"name": "Ada", "embeddings": [
            {"vector": unit_vector(7) if vector is None else vector, "source": "ada.jpg",
             "image_sha256": "ab" * 32, "box": [1, 2, 30, 40], "score": 0.99}]}],
    }


# ---- imports (no models needed: the gallery exists, or the model is a stand-in file) ----

def import_case(name: str, content: str, code: int, phrases: tuple[str, ...],
                gallery: bool = True) -> None:
    @case(f"gallery-import-{name}")
    def _setup(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
        if gallery:
            add_synthetic(ws.gallery, OTHER_MODEL, rows=2)
        else:
            ws.models.mkdir()
            (ws.models / "facenet.onnx").write_bytes(b"stands for the current model")
        path = ws.inputs / "import.json"
        path.write_text(content)
        return (partial(facenet, "gallery", "import", path, "--artifacts", ws.artifacts),
                Outcome(code, str(path), phrases))


import_case("near-zero-vector",
            json.dumps({"Ada": unit_vector(1), "Mallory": [1e-25] * 128}),
            3, ("'Mallory'", "norm 1.13e-24", "not a face embedding"))
import_case("values-beyond-float32", json.dumps({"Ada": [1e308] * 128}),
            3, ("'Ada'", "1e+308", "float32"))
import_case("threshold-1e300", json.dumps(export_doc(OTHER_MODEL, threshold=1e300)),
            3, ("threshold 1e+300", "(0, 2]"))
import_case("threshold-nan",
            json.dumps(export_doc(OTHER_MODEL, threshold=123.0)).replace("123.0", "NaN"),
            3, ("threshold nan", "(0, 2]"))
import_case("threshold-zero", json.dumps(export_doc(OTHER_MODEL, threshold=0)),
            3, ("threshold 0.0", "(0, 2]"))
import_case("nested-100000-deep", "[" * 100_000 + "]" * 100_000, 3, ("nested too deeply",))
import_case("other-models-export-into-new-gallery", json.dumps(export_doc("b" * 64)),
            4, ("bbbbbbbbbbbbbbbb", "different models"), gallery=False)


# ---- damaged or edited galleries ----

def damaged_gallery_case(name: str, damage: Damage, code: int, phrases: tuple[str, ...],
                         command: str = "list") -> None:
    """A gallery of synthetic faces (no model needed), damaged, given to ``gallery COMMAND``."""

    @case(f"gallery-{name}-{command}")
    def _setup(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
        add_synthetic(ws.gallery, OTHER_MODEL)
        damage(ws.gallery)
        target = [ws.root / "exported.json"] if command == "export" else []
        return (partial(facenet, "gallery", command, *target, "--gallery", ws.gallery,
                        "--artifacts", ws.artifacts),
                Outcome(code, str(ws.gallery), phrases))


damaged_gallery_case("random-page", overwrite_page, 3, ("corrupt",))
damaged_gallery_case("random-index-page", partial(overwrite_page, page=2), 3, ("corrupt",))
damaged_gallery_case("stored-threshold-1e300", lambda p: edit_meta(p, "threshold", "1e300"),
                     4, ("stored threshold '1e300'",))
damaged_gallery_case("stored-vector-near-zero",
                     lambda p: edit_vector(p, "Person 007", np.full(128, 1e-25)),
                     4, ("'Person 007'", "unit vector"), command="export")


def damaged_recognize_case(name: str, damage: Damage, code: int, phrases: tuple[str, ...]) -> None:
    """The real model's gallery (one real face enrolled, plus synthetic ones), damaged."""

    @case(f"gallery-{name}-recognize", needs="models")
    def _setup(ws: Workspace, store: Store | None) -> tuple[Command, Outcome]:
        assert store is not None
        ws.runtime(store)
        add_synthetic(ws.gallery)
        damage(ws.gallery)
        photo = ws.photo("Ben.jpg", face_photo(), quality=95)
        return (partial(facenet, "recognize", photo, "--artifacts", ws.artifacts),
                Outcome(code, str(ws.gallery), phrases))


damaged_recognize_case("random-page", overwrite_page, 3, ("corrupt",))
damaged_recognize_case("stored-vector-near-zero",
                       lambda p: edit_vector(p, "Ben Affleck", np.full(128, 1e-25)),
                       4, ("'Ben Affleck'", "unit vector"))
damaged_recognize_case("stored-threshold-nan", lambda p: edit_meta(p, "threshold", "nan"),
                       4, ("stored threshold 'nan'",))
damaged_recognize_case("stored-crop-edited", lambda p: edit_meta(p, "crop", "tilted"),
                       4, ("stored crop 'tilted' is not a crop spec",))
