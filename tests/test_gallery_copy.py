"""PostgreSQL writes go through COPY: a bulk add lands exactly the rows given, or none of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.gallery_backends import pg_connection, sound

from toolchain.core.errors import InputError
from toolchain.core.preprocess import l2_normalize
from toolchain.gallery import Entry, open_gallery, postgres

MODEL = "c" * 64
ROWS = 25_000
"""Rows of the bulk add: several COPY batches, one of them partial."""


def many_entries(count: int, seed: int) -> list[Entry]:
    """``count`` synthetic faces: most people with one face, some with three; every other score
    missing; raw (not unit) vectors of varied norms, as an importer could hand them."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, 128)) * rng.uniform(0.5, 20.0, (count, 1))
    return [Entry(f"person {i // 3 if i % 10 == 0 else i:06d}", vectors[i].astype(np.float32),
                  f"photos/{i}.jpg", f"{seed:04d}{i:060d}", (float(i % 640), 2.25, 30.5, 40.0),
                  None if i % 2 else 0.5 + (i % 7) / 20)
            for i in range(count)]


def stored(gallery: postgres.PostgresGallery | object) -> list[tuple[object, ...]]:
    """Every stored row, comparable across backends (the vector as its bytes)."""
    assert hasattr(gallery, "entries")
    return [(e.name, e.vector.tobytes(), e.source, e.image_sha256, e.box, e.score)
            for e in gallery.entries()]


def test_a_bulk_add_lands_the_rows_sqlite_stores_bit_for_bit(tmp_path: Path,
                                                             postgres_url: str) -> None:
    """A bulk load of many batches stores in PostgreSQL exactly what SQLite stores for the same
    entries (names, vectors bit for bit, sources, keys, boxes, missing scores), counts them, and a
    second load adds nothing."""
    entries = many_entries(ROWS, seed=3)
    with open_gallery(tmp_path / "g.db", fingerprint=MODEL, create=True) as sqlite:
        sqlite.add(entries)
        expected = stored(sqlite)
    with open_gallery(postgres_url, fingerprint=MODEL, create=True) as gallery:
        assert isinstance(gallery, postgres.PostgresGallery)
        assert gallery.bulk_add(entries, batch=10_000) == ROWS
        assert gallery.bulk_add(entries[:12_000], batch=10_000) == 0
        assert gallery.count() == ROWS
        assert stored(gallery) == expected
    assert sound(postgres_url) == ["ok"]


def test_a_failing_batch_writes_nothing(postgres_url: str) -> None:
    """A batch the server refuses in the middle of its COPY (a NUL character in the last row's
    source, which PostgreSQL text cannot hold) is one clear error and leaves the gallery as it
    was: no row of the batch, no person, no revision; the next batch is written as usual."""
    first, batch = many_entries(3_000, seed=4), many_entries(5_000, seed=5)
    bad = batch[-1]
    batch[-1] = Entry(bad.name, bad.vector, "photos/\x00.jpg", bad.image_sha256, bad.box,
                      bad.score)
    with open_gallery(postgres_url, fingerprint=MODEL, create=True) as gallery:
        assert isinstance(gallery, postgres.PostgresGallery)
        gallery.add(first)
        before = (gallery.state(), stored(gallery), [p.name for p in gallery.people()])
        with pytest.raises(InputError, match="cannot write"):
            gallery.add(batch)
        assert (gallery.state(), stored(gallery), [p.name for p in gallery.people()]) == before
        with pg_connection(postgres_url) as (conn, schema):
            assert conn.execute(f"SELECT count(*) FROM {schema}.embeddings").fetchone()[0] == 3_000
        assert len(gallery.add(batch[:-1]).added) == 4_999
        assert gallery.count() == 7_999
        unit = l2_normalize(np.stack([e.vector for e in batch[:3]]).astype(np.float32))
        assert [r[0].name for r in gallery.match(unit, k=1)] == [e.name for e in batch[:3]]
    assert sound(postgres_url) == ["ok"]
