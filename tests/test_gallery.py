"""The SQLite gallery: no-op re-enrollment, model binding, matching, export/import, bad files."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.corpus_gallery import add_synthetic, export_doc, overwrite_page
from helpers.gallery_backends import edit_meta, edit_vector

from toolchain import gallery as gallery_module
from toolchain.core.errors import InputError, IntegrityError
from toolchain.core.preprocess import l2_normalize
from toolchain.gallery import (
    Entry,
    Gallery,
    MatchMode,
    export_json,
    gallery_exists,
    import_export,
    is_postgres_url,
    open_gallery,
    parse_import,
    postgres,
    sqlite,
    store,
)
from toolchain.gallery.ranking import pairwise_distances

MODEL_A = "a" * 64
MODEL_B = "b" * 64


def unit(*values: float, dim: int = 128) -> np.ndarray:
    """A unit vector whose first components are ``values``."""
    vector = np.zeros(dim, np.float32)
    vector[: len(values)] = values
    return l2_normalize(vector)


def entry(name: str, vector: np.ndarray, photo: str, box: tuple[float, ...] = (1, 2, 30, 40)
          ) -> Entry:
    return Entry(name=name, vector=vector, source=f"{photo}.jpg", image_sha256=photo * 8,
                 box=(box[0], box[1], box[2], box[3]), score=0.99)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "sub" / "gallery.db"


def snapshot(path: Path) -> tuple[list[tuple[Any, ...]], dict[str, str]]:
    with open_gallery(path) as gallery:
        rows = [(e.name, e.vector.tobytes(), e.source, e.image_sha256, e.box, e.score)
                for e in gallery.entries()]
        meta = dict(gallery._meta)
    return rows, meta


def test_create_and_reopen(gallery_at: Path | str) -> None:
    with open_gallery(gallery_at, fingerprint=MODEL_A, create=True) as gallery:
        assert gallery.fingerprint == MODEL_A and gallery.dim == 128
        assert gallery.threshold is None
        result = gallery.add([entry("Ada", unit(1), "p1"), entry("Ada", unit(1, 0.1), "p2"),
                              entry("Bob", unit(0, 1), "p3")])
        assert len(result.added) == 3 and not result.duplicates
    if not is_postgres_url(gallery_at):
        conn = sqlite3.connect(gallery_at)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
    with open_gallery(gallery_at, fingerprint=MODEL_A) as gallery:
        people = {p.name: p for p in gallery.people()}
        assert people["Ada"].embeddings == 2 and people["Ada"].photos == 2
        assert people["Bob"].embeddings == 1
        stored = gallery.entries()
        np.testing.assert_allclose(np.linalg.norm([e.vector for e in stored], axis=1), 1.0,
                                   rtol=1e-6)


def test_reenrolling_the_same_face_is_a_no_op(gallery_at: Path | str) -> None:
    with open_gallery(gallery_at, fingerprint=MODEL_A, create=True) as gallery:
        gallery.add([entry("Ada", unit(1), "p1")])
        again = gallery.add([entry("Ada", unit(1), "p1"), entry("Eve", unit(1), "p1")])
        assert not again.added
        assert [owner for _, owner in again.duplicates] == ["Ada", "Ada"]
        assert [p.name for p in gallery.people()] == ["Ada"]
        other_face = gallery.add([entry("Eve", unit(0, 1), "p1", box=(100, 2, 30, 40))])
        assert len(other_face.added) == 1
        assert [(p.name, p.embeddings) for p in gallery.people()] == [("Ada", 1), ("Eve", 1)]


def test_box_is_compared_after_rounding(gallery_at: Path | str) -> None:
    with open_gallery(gallery_at, fingerprint=MODEL_A, create=True) as gallery:
        gallery.add([entry("Ada", unit(1), "p1", box=(1.0, 2.0, 30.0, 40.0))])
        again = gallery.add([entry("Ada", unit(1), "p1", box=(1.0000001, 2.0, 30.0, 40.0))])
        assert not again.added


def test_another_models_gallery_is_refused(gallery_at: Path | str) -> None:
    open_gallery(gallery_at, fingerprint=MODEL_A, create=True).close()
    with pytest.raises(IntegrityError) as info:
        open_gallery(gallery_at, fingerprint=MODEL_B)
    message = str(info.value)
    assert str(gallery_at) in message and MODEL_A[:16] in message and MODEL_B[:16] in message
    open_gallery(gallery_at).close()


def test_missing_gallery_is_not_created_unless_asked(gallery_at: Path | str) -> None:
    with pytest.raises(InputError, match="does not exist"):
        open_gallery(gallery_at, fingerprint=MODEL_A)
    assert not gallery_exists(gallery_at)


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (b"SQLite format 2\x00 not really" * 100, "not a readable facenet gallery"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20, "not a readable facenet gallery"),
        (b"", "is an empty file"),
    ],
)
def test_files_that_are_not_galleries(db: Path, content: bytes, phrase: str) -> None:
    db.parent.mkdir(parents=True)
    db.write_bytes(content)
    with pytest.raises(InputError, match=phrase):
        open_gallery(db)
    assert db.read_bytes() == content



def test_empty_file_is_not_turned_into_a_gallery(db: Path) -> None:
    db.parent.mkdir(parents=True)
    db.touch()
    with pytest.raises(InputError, match="is an empty file"):
        open_gallery(db, fingerprint=MODEL_A, create=True)
    assert db.read_bytes() == b""


def test_creator_that_loses_the_race_opens_the_winners_gallery(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_link = os.link

    def link_after_a_rival(src: str, dst: str) -> None:
        monkeypatch.setattr(sqlite.os, "link", real_link)
        with open_gallery(dst, fingerprint=MODEL_A, create=True) as rival:
            rival.add([entry("Ada", unit(1), "p1")])
        real_link(src, dst)

    monkeypatch.setattr(sqlite.os, "link", link_after_a_rival)
    with open_gallery(db, fingerprint=MODEL_A, create=True) as gallery:
        assert [p.name for p in gallery.people()] == ["Ada"]
    assert sorted(p.name for p in db.parent.iterdir() if not p.name.endswith(("-wal", "-shm"))) \
        == [db.name]

def test_other_sqlite_database_is_refused(db: Path) -> None:
    db.parent.mkdir(parents=True)
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(InputError, match="not a facenet gallery"):
        open_gallery(db, fingerprint=MODEL_A, create=True)


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="directory"):
        open_gallery(tmp_path, fingerprint=MODEL_A, create=True)


def test_a_bad_vector_writes_nothing(gallery_at: Path | str) -> None:
    with open_gallery(gallery_at, fingerprint=MODEL_A, create=True) as gallery:
        gallery.add([entry("Ada", unit(1), "p1")])
    before = snapshot(gallery_at)
    bad = [entry("Bob", unit(0, 1), "p2"), entry("Cy", np.full(128, np.nan, np.float32), "p3")]
    with open_gallery(gallery_at, fingerprint=MODEL_A) as gallery, pytest.raises(InputError):
        gallery.add(bad)
    short = [entry("Bob", unit(0, 1), "p2"), entry("Cy", np.ones(64, np.float32), "p3")]
    with open_gallery(gallery_at, fingerprint=MODEL_A) as gallery, pytest.raises(InputError):
        gallery.add(short)
    assert snapshot(gallery_at) == before


def test_an_error_inside_the_transaction_rolls_back(gallery_at: Path | str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    with open_gallery(gallery_at, fingerprint=MODEL_A, create=True) as gallery:
        gallery.add([entry("Ada", unit(1), "p1")])
    before = snapshot(gallery_at)
    calls = {"n": 0}
    backend = postgres if is_postgres_url(gallery_at) else store
    real_box = backend.canonical_box

    def fail_on_second_row(box: Sequence[float]) -> tuple[float, float, float, float]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk on fire")
        return real_box(box)

    monkeypatch.setattr(backend, "canonical_box", fail_on_second_row)
    with open_gallery(gallery_at, fingerprint=MODEL_A) as gallery, pytest.raises(RuntimeError):
        gallery.add([entry("Bob", unit(0, 1), "p2"), entry("Cy", unit(0, 0, 1), "p3")])
    monkeypatch.undo()
    assert snapshot(gallery_at) == before


def test_nearest_and_centroid_matching(gallery_at: Path | str) -> None:
    """Ada has two different-looking photos; a query like one of them is Ada by nearest, but the
    mean of Ada's two photos lies closer to Bob."""
    ada_1, ada_2 = unit(1, 0, 0), unit(0, 0, 1)
    bob = unit(0.6, 0.1, 0.6)
    query = unit(0.95, 0.05, 0.1)
    with open_gallery(gallery_at, fingerprint=MODEL_A, create=True) as gallery:
        gallery.add([entry("Ada", ada_1, "a1"), entry("Ada", ada_2, "a2"),
                     entry("Bob", bob, "b1")])
        nearest = gallery.match(query[None], k=2, mode=MatchMode.NEAREST)[0]
        centroid = gallery.match(query[None], k=2, mode=MatchMode.CENTROID)[0]
    assert nearest[0].name == "Ada"
    assert nearest[0].distance == pytest.approx(float(np.linalg.norm(query - ada_1)), abs=1e-5)
    assert [c.name for c in centroid] == ["Bob", "Ada"]
    ada_mean = l2_normalize(ada_1 + ada_2)
    assert centroid[1].distance == pytest.approx(float(np.linalg.norm(query - ada_mean)),
                                                 abs=1e-5)


def test_match_top_k_is_sorted_and_empty_gallery_matches_nobody(gallery_at: Path | str) -> None:
    with open_gallery(gallery_at, fingerprint=MODEL_A, create=True) as gallery:
        assert gallery.match(unit(1)[None]) == [[]]
        gallery.add([entry(n, unit(*v), n) for n, v in
                     {"A": (1, 0), "B": (0, 1), "C": (1, 1), "D": (-1, 0)}.items()])
        ranked = gallery.match(np.stack([unit(1, 0.2), unit(-1, 0.1)]), k=3)
    assert [c.name for c in ranked[0]] == ["A", "C", "B"]
    assert ranked[1][0].name == "D"
    assert all(a.distance <= b.distance for a, b in zip(ranked[0], ranked[0][1:], strict=False))


def test_pairwise_distances() -> None:
    rng = np.random.default_rng(3)
    a, b = l2_normalize(rng.standard_normal((4, 8))), l2_normalize(rng.standard_normal((5, 8)))
    expected = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
    np.testing.assert_allclose(pairwise_distances(a, b), expected, atol=1e-5)
    np.testing.assert_allclose(np.diag(pairwise_distances(a, a)), 0.0, atol=1e-3)


def test_remove_and_threshold(gallery_at: Path | str) -> None:
    with open_gallery(gallery_at, fingerprint=MODEL_A, create=True) as gallery:
        gallery.add([entry("Ada", unit(1), "p1"), entry("Ada", unit(1, 1), "p2"),
                     entry("Bob", unit(0, 1), "p3")])
        assert gallery.remove("Ada") == 2
        with pytest.raises(InputError, match="no person named 'Ada'"):
            gallery.remove("Ada")
        gallery.set_threshold(0.8125, "test")
        with pytest.raises(InputError):
            gallery.set_threshold(float("nan"), "test")
    with open_gallery(gallery_at) as gallery:
        assert [p.name for p in gallery.people()] == ["Bob"]
        assert gallery.threshold == 0.8125 and gallery.threshold_source == "test"
        assert gallery.match(unit(1, 0.9)[None], k=5)[0][0].name == "Bob"


def test_export_import_round_trip(gallery_at: Path | str, tmp_path: Path) -> None:
    with open_gallery(gallery_at, fingerprint=MODEL_A, create=True) as gallery:
        gallery.add([entry("Ada", unit(1), "p1"), entry("Bob", unit(0, 1), "p2")])
        gallery.set_threshold(0.9, "test")
        exported = tmp_path / "out" / "gallery.json"
        assert export_json(gallery, exported) == 2
    data = parse_import(exported)
    assert data.fingerprint == MODEL_A and data.dim == 128 and data.threshold == 0.9
    copy = tmp_path / "copy.db"
    with open_gallery(copy, fingerprint=data.fingerprint, create=True) as gallery:
        assert len(gallery.add(data.entries).added) == 2
        assert len(gallery.add(data.entries).duplicates) == 2
    assert snapshot(copy)[0] == snapshot(gallery_at)[0]


def test_seed_database_json_import(tmp_path: Path, gallery_at: Path | str) -> None:
    rng = np.random.default_rng(0)
    ada, bob1, bob2 = (rng.standard_normal(128) * 9 for _ in range(3))
    seed = tmp_path / "DataBase.json"
    seed.write_text(json.dumps({"Ada Lovelace": ada.tolist(),
                                "Bob": [bob1.tolist(), bob2.tolist()]}))
    data = parse_import(seed)
    assert data.fingerprint is None and data.kind == "seed DataBase.json" and data.dim == 128
    with open_gallery(gallery_at, fingerprint=MODEL_A, create=True) as gallery:
        assert len(gallery.add(data.entries).added) == 3
        assert len(gallery.add(parse_import(seed).entries).duplicates) == 3
        people = {p.name: p.embeddings for p in gallery.people()}
        assert people == {"Ada Lovelace": 1, "Bob": 2}
        best = gallery.match(l2_normalize(ada.astype(np.float32))[None], k=1)[0][0]
    assert best.name == "Ada Lovelace" and best.distance < 1e-3


MALFORMED = {
    "not_json": "{'Ada': [1, 2]",
    "a_list": json.dumps([[0.1] * 128]),
    "empty_object": "{}",
    "a_string_vector": json.dumps({"Ada": "0.1, 0.2"}),
    "strings_in_vector": json.dumps({"Ada": ["0.1"] * 128}),
    "booleans_in_vector": json.dumps({"Ada": [True] * 128}),
    "nan_in_vector": '{"Ada": [NaN' + ", 0.5" * 127 + "]}",
    "all_zero": json.dumps({"Ada": [0.0] * 128}),
    "mixed_sizes": json.dumps({"Ada": [0.1] * 128, "Bob": [0.1] * 127}),
    "empty_name": json.dumps({" ": [0.1] * 128}),
    "export_without_people": json.dumps({"format": "facenet-toolchain-gallery",
                                         "schema_version": 1, "model_fingerprint": MODEL_A,
                                         "dim": 128}),
    "export_bad_box": json.dumps({
        "format": "facenet-toolchain-gallery", "schema_version": 1,
        "model_fingerprint": MODEL_A, "dim": 128, "threshold": None,
        "people": [{"name": "Ada", "embeddings": [
            {"vector": [0.1] * 128, "source": "x", "image_sha256": "ab", "box": [1, 2],
             "score": None}]}]}),
    "export_future_schema": json.dumps({"format": "facenet-toolchain-gallery",
                                        "schema_version": 99, "people": []}),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_import_is_refused(tmp_path: Path, case: str) -> None:
    path = tmp_path / f"{case}.json"
    path.write_text(MALFORMED[case])
    with pytest.raises(InputError) as info:
        parse_import(path)
    assert str(path) in str(info.value)


def test_malformed_import_changes_nothing(tmp_path: Path, gallery_at: Path | str) -> None:
    """A file whose LAST vector is bad: parse fails before anything is written; a wrong-size
    file that parses fails inside ``add`` before its transaction starts."""
    with open_gallery(gallery_at, fingerprint=MODEL_A, create=True) as gallery:
        gallery.add([entry("Ada", unit(1), "p1")])
    before = snapshot(gallery_at)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"Bob": [0.2] * 128, "Cy": [0.1] * 128, "Dee": [0.3] * 12}))
    with pytest.raises(InputError):
        parse_import(bad)
    wrong_dim = tmp_path / "wrong_dim.json"
    wrong_dim.write_text(json.dumps({"Bob": [0.2] * 64, "Cy": [0.1] * 64}))
    with open_gallery(gallery_at, fingerprint=MODEL_A) as gallery, pytest.raises(InputError):
        gallery.add(parse_import(wrong_dim).entries)
    assert snapshot(gallery_at) == before


# ---- hardening (issue 9): poisoned vectors, thresholds, corrupt files, hostile imports ----

def seed_file(tmp_path: Path, doc: Any, name: str = "DataBase.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


NEAR_ZERO = [1e-25] * 128


@pytest.mark.parametrize(
    ("doc", "phrases"),
    [
        ({"Ada": unit(1).tolist(), "Mallory": NEAR_ZERO}, ("'Mallory'", "norm 1.13e-24")),
        ({"Mallory": [0.0] * 127 + [1e-30]}, ("'Mallory'", "norm 1e-30")),
        (export_doc(MODEL_A, vector=NEAR_ZERO), ("'Ada'", "norm 1.13e-24")),
        ({"Ada": [1e308] * 128}, ("'Ada'", "1e+308", "float32")),
        ({"Ada": [-3.5e38] + [0.0] * 127}, ("'Ada'", "float32")),
    ],
    ids=["near-zero", "one-tiny-value", "near-zero-export", "1e308", "beyond-float32"],
)
def test_import_refuses_vectors_an_embedder_cannot_make(
    tmp_path: Path, doc: dict[str, Any], phrases: tuple[str, ...]
) -> None:
    path = seed_file(tmp_path, doc)
    with pytest.raises(InputError) as info:
        parse_import(path)
    message = str(info.value)
    assert str(path) in message and "non-finite" not in message
    for phrase in phrases:
        assert phrase in message


def test_integer_beyond_any_float_is_refused(tmp_path: Path) -> None:
    path = seed_file(tmp_path, '{"Ada": [1' + "0" * 400 + ", 0.5" * 127 + "]}")
    with pytest.raises(InputError, match=r"'Ada'.*float32"):
        parse_import(path)


def test_poisoned_vector_is_refused_by_add_and_writes_nothing(gallery_at: Path | str) -> None:
    """The attack of issue 9: a near-zero vector normalized with a clamped norm stayed near zero,
    at distance 1.000 from every face; the whole batch is refused instead."""
    with open_gallery(gallery_at, fingerprint=MODEL_A, create=True) as gallery:
        gallery.add([entry("Ada", unit(1), "p1")])
    before = snapshot(gallery_at)
    with open_gallery(gallery_at, fingerprint=MODEL_A) as gallery:
        with pytest.raises(InputError, match=r"'Mallory'.*norm"):
            gallery.add([entry("Bob", unit(0, 1), "p2"),
                         entry("Mallory", np.full(128, 1e-25, np.float32), "p3")])
        assert gallery.match(unit(0, 0, 1)[None])[0][0].name == "Ada"
    assert snapshot(gallery_at) == before


def test_small_but_sane_raw_vectors_are_normalized_exactly(gallery_at: Path | str) -> None:
    tiny = np.full(128, 1e-3, np.float64)
    with open_gallery(gallery_at, fingerprint=MODEL_A, create=True) as gallery:
        gallery.add([entry("Ada", tiny, "p1"), entry("Bob", np.full(128, 3e38, np.float32), "p2")])
        norms = np.linalg.norm([e.vector for e in gallery.entries()], axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-6)


@pytest.mark.parametrize(
    "stored",
    [np.full(128, 1e-25, np.float32), unit(1) * 1.01, np.full(128, np.nan, np.float32),
     unit(1)[:64], b"\x00\x01\x02"],
    ids=["near-zero", "norm-1.01", "nan", "64-values", "odd-bytes"],
)
def test_stored_vector_that_is_not_unit_norm_is_an_integrity_error(
    gallery_at: Path | str, stored: np.ndarray | bytes
) -> None:
    with open_gallery(gallery_at, fingerprint=MODEL_A, create=True) as gallery:
        gallery.add([entry("Ada", unit(1), "p1"), entry("Mallory", unit(0, 1), "p2")])
    storable = not isinstance(stored, bytes) and stored.size == 128 and np.isfinite(stored).all()
    if is_postgres_url(gallery_at) and not storable:
        import psycopg

        with pytest.raises(psycopg.DataError):
            edit_vector(gallery_at, "Mallory", stored)
        return
    edit_vector(gallery_at, "Mallory", stored)
    with open_gallery(gallery_at, fingerprint=MODEL_A) as gallery:
        assert [p.name for p in gallery.people()] == ["Ada", "Mallory"]
        for read in (gallery.entries, lambda: gallery.match(unit(1)[None])):
            with pytest.raises(IntegrityError) as info:
                read()
            message = str(info.value)
            assert str(gallery_at) in message and "'Mallory'" in message and "unit" in message
        assert gallery.remove("Mallory") == 1
        assert gallery.match(unit(1)[None])[0][0].name == "Ada"


@pytest.mark.parametrize("value", [0.4, 1, 2.0, np.float32(1.1)])
def test_check_threshold_accepts_distances(value: Any) -> None:
    assert gallery_module.check_threshold(value) == pytest.approx(float(value))


@pytest.mark.parametrize("value", [0.0, -0.1, 2.0001, 1e300, float("nan"), float("inf"),
                                   float("-inf"), True, "0.8", None])
def test_check_threshold_refuses_what_no_distance_can_be(value: Any) -> None:
    with pytest.raises(InputError, match=r"\(0, 2\]"):
        gallery_module.check_threshold(value)


@pytest.mark.parametrize("value", ["1e300", "NaN", "0", "-1", "2.5", "true", '"0.8"'])
def test_imported_threshold_must_be_a_distance(tmp_path: Path, value: str) -> None:
    text = json.dumps(export_doc(MODEL_A, threshold=123.0)).replace("123.0", value)
    path = seed_file(tmp_path, text, "export.json")
    with pytest.raises(InputError) as info:
        parse_import(path)
    assert str(path) in str(info.value) and "threshold" in str(info.value)


def test_set_threshold_is_range_checked(gallery_at: Path | str) -> None:
    with open_gallery(gallery_at, fingerprint=MODEL_A, create=True) as gallery:
        for bad in (1e300, 0.0, 2.5, float("nan")):
            with pytest.raises(InputError, match="threshold"):
                gallery.set_threshold(bad, "test")
        gallery.set_threshold(2.0, "test")
        assert gallery.threshold == 2.0


@pytest.mark.parametrize("stored", ["1e300", "nan", "0", "-0.5", "inf", "close enough"])
def test_stored_threshold_out_of_range_is_an_integrity_error(gallery_at: Path | str,
                                                             stored: str) -> None:
    with open_gallery(gallery_at, fingerprint=MODEL_A, create=True) as gallery:
        gallery.add([entry("Ada", unit(1), "p1")])
        gallery.set_threshold(0.9, "test")
    edit_meta(gallery_at, "threshold", stored)
    with open_gallery(gallery_at, fingerprint=MODEL_A) as gallery:
        with pytest.raises(IntegrityError) as info:
            _ = gallery.threshold
        assert str(gallery_at) in str(info.value) and repr(stored) in str(info.value)
        gallery.set_threshold(0.8, "recalibrated")
        assert gallery.threshold == 0.8


@pytest.mark.parametrize("page", [2, 10, 20, 40])
def test_random_bytes_in_the_middle_of_a_gallery(db: Path, page: int) -> None:
    """Pages of the tables, of the unique index and of the free list: every one is found when
    the gallery is opened (before anything is matched or printed)."""
    add_synthetic(db, MODEL_A)
    overwrite_page(db, page)
    before = db.read_bytes()
    with pytest.raises(InputError) as info:
        open_gallery(db)
    message = str(info.value)
    assert str(db) in message and "corrupt" in message
    assert db.read_bytes() == before


class _BrokenConnection:
    """Stands for a connection to a file that was damaged after it was opened."""

    in_transaction = False

    def execute(self, *_args: Any) -> Any:
        raise sqlite3.DatabaseError("database disk image is malformed")

    def close(self) -> None:
        pass


def test_every_read_and_write_maps_a_damaged_file_to_one_error(db: Path) -> None:
    with open_gallery(db, fingerprint=MODEL_A, create=True) as gallery:
        gallery.add([entry("Ada", unit(1), "p1")])
    gallery = open_gallery(db)
    gallery._conn.close()
    gallery._conn = _BrokenConnection()  # type: ignore[assignment]
    calls = {
        "people": gallery.people,
        "entries": gallery.entries,
        "match": lambda: gallery.match(unit(1)[None]),
        "remove": lambda: gallery.remove("Ada"),
        "add": lambda: gallery.add([entry("Bob", unit(0, 1), "p2")]),
        "set_threshold": lambda: gallery.set_threshold(0.9, "test"),
    }
    for name, call in calls.items():
        with pytest.raises(InputError) as info:
            call()
        assert str(db) in str(info.value) and "corrupt" in str(info.value), name


@pytest.mark.parametrize(("opening", "closing"), [("[", "]"), ('{"a":', "}")])
def test_deeply_nested_import_is_refused(tmp_path: Path, opening: str, closing: str) -> None:
    path = seed_file(tmp_path, opening * 100_000 + closing * 100_000)
    with pytest.raises(InputError, match="nested"):
        parse_import(path)


def test_import_larger_than_the_cap_is_refused(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = seed_file(tmp_path, {"Ada": unit(1).tolist()})
    monkeypatch.setattr(import_export, "MAX_IMPORT_BYTES", path.stat().st_size - 1)
    with pytest.raises(InputError, match="larger than"):
        parse_import(path)
    monkeypatch.setattr(import_export, "MAX_IMPORT_BYTES", path.stat().st_size)
    assert parse_import(path).entries[0].name == "Ada"


def test_import_of_a_fifo_does_not_hang(tmp_path: Path) -> None:
    import threading

    fifo = tmp_path / "gallery.json"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            parse_import(fifo)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():
        with open(fifo, "w"):  # unblock the reader so the thread can end
            pass
        pytest.fail("parse_import blocked on a FIFO")
    assert isinstance(outcome[0], InputError) and "regular file" in str(outcome[0])


def onnx_stand_in(tmp_path: Path) -> tuple[Path, str]:
    """A file standing for the current model: only its sha256 matters to an import."""
    import hashlib

    model = tmp_path / "models" / "facenet.onnx"
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_bytes(b"stand-in model")
    return model, hashlib.sha256(b"stand-in model").hexdigest()


def test_import_of_another_models_export_into_a_new_gallery_is_refused(
    tmp_path: Path, gallery_at: Path | str
) -> None:
    model, current = onnx_stand_in(tmp_path)
    other = seed_file(tmp_path, export_doc(MODEL_B), "other.json")
    with pytest.raises(IntegrityError) as info:
        gallery_module.import_file(other, gallery_at, model, dim=128)
    message = str(info.value)
    assert str(other) in message and MODEL_B[:16] in message and current[:16] in message
    assert not gallery_exists(gallery_at)
    if not is_postgres_url(gallery_at):
        assert not Path(gallery_at).parent.exists()
    ours = seed_file(tmp_path, export_doc(current, threshold=0.7), "ours.json")
    data, result = gallery_module.import_file(ours, gallery_at, model, dim=128)
    assert len(result.added) == 1 and data.fingerprint == current
    with open_gallery(gallery_at, fingerprint=current) as gallery:
        assert gallery.threshold == 0.7


def test_import_into_an_existing_gallery_of_another_model_is_refused(
    tmp_path: Path, gallery_at: Path | str
) -> None:
    model, _ = onnx_stand_in(tmp_path)
    with open_gallery(gallery_at, fingerprint=MODEL_A, create=True) as gallery:
        gallery.add([entry("Bob", unit(0, 1), "p1")])
    before = snapshot(gallery_at)
    other = seed_file(tmp_path, export_doc(MODEL_B), "other.json")
    with pytest.raises(IntegrityError, match="different models"):
        gallery_module.import_file(other, gallery_at, model, dim=128)
    assert snapshot(gallery_at) == before


def test_seed_import_into_a_new_gallery_needs_the_model(tmp_path: Path,
                                                        gallery_at: Path | str) -> None:
    from toolchain.core.errors import MissingArtifactError

    seed = seed_file(tmp_path, {"Ada": unit(1).tolist()})
    with pytest.raises(MissingArtifactError, match=r"facenet\.onnx"):
        gallery_module.import_file(seed, gallery_at, tmp_path / "models" / "facenet.onnx", dim=128)
    assert not gallery_exists(gallery_at)
    model, current = onnx_stand_in(tmp_path)
    with pytest.raises(InputError, match="512-d"):
        gallery_module.import_file(seed, gallery_at, model, dim=512)
    _, result = gallery_module.import_file(seed, gallery_at, model, dim=128)
    assert len(result.added) == 1
    with open_gallery(gallery_at, fingerprint=current) as gallery:
        assert gallery.threshold is None


def test_import_keeps_a_stored_threshold_and_writes_in_one_transaction(
    tmp_path: Path, db: Path
) -> None:
    model, current = onnx_stand_in(tmp_path)
    with open_gallery(db, fingerprint=current, create=True) as gallery:
        gallery.set_threshold(0.75, "calibrated")
    export = seed_file(tmp_path, export_doc(current, threshold=1.2), "e.json")
    statements: list[str] = []
    real_open = open_gallery

    def traced_open(*args: Any, **kwargs: Any) -> Gallery:
        opened = real_open(*args, **kwargs)
        opened._conn.set_trace_callback(statements.append)  # type: ignore[attr-defined]
        return opened

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(import_export, "open_gallery", traced_open)
        gallery_module.import_file(export, db, model, dim=128)
    assert sum(s.startswith("BEGIN") for s in statements) == 1
    with open_gallery(db) as gallery:
        assert gallery.threshold == 0.75 and gallery.threshold_source == "calibrated"
        assert [p.name for p in gallery.people()] == ["Ada"]


def test_enrolling_a_face_under_another_name_is_reported_as_a_conflict(
        gallery_at: Path | str) -> None:
    with open_gallery(gallery_at, fingerprint=MODEL_A, create=True) as gallery:
        gallery.add([entry("Ada", unit(1), "p1")])
        result = gallery.add([entry("Ada", unit(1), "p1"), entry("Eve", unit(1), "p1"),
                              entry("Bob", unit(0, 1), "p2")])
    assert [e.name for e in result.added] == ["Bob"]
    assert [(e.name, owner) for e, owner in result.duplicates] == [("Ada", "Ada"), ("Eve", "Ada")]
    assert [(e.name, owner) for e, owner in result.conflicts] == [("Eve", "Ada")]


def test_a_gallery_records_its_crop_and_exports_carry_it(gallery_at: Path | str,
                                                         tmp_path: Path) -> None:
    with open_gallery(gallery_at, fingerprint=MODEL_A, create=True, crop="align") as gallery:
        gallery.add([entry("Ada", unit(1), "p1")])
        assert gallery.crop == "align"
        exported = tmp_path / "align.json"
        export_json(gallery, exported)
    assert json.loads(exported.read_text())["crop"] == "align"
    data = parse_import(exported)
    assert data.crop == "align"
    copy = tmp_path / "copy.db"
    with open_gallery(copy, fingerprint=MODEL_A, create=True, crop=data.crop) as gallery:
        gallery.import_data(data)
        assert gallery.crop == "align"


def test_a_gallery_without_a_recorded_crop_is_box(db: Path) -> None:
    open_gallery(db, fingerprint=MODEL_A, create=True).close()
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM meta WHERE key = 'crop'")
    with open_gallery(db, fingerprint=MODEL_A) as gallery:
        assert gallery.crop == "box"


def test_an_export_of_another_crop_is_not_imported(gallery_at: Path | str, tmp_path: Path) -> None:
    with open_gallery(gallery_at, fingerprint=MODEL_A, create=True, crop="box") as gallery:
        gallery.add([entry("Bob", unit(0, 1), "p1")])
    before = snapshot(gallery_at)
    aligned = seed_file(tmp_path, {**export_doc(MODEL_A), "crop": "align,margin=10%"},
                        "aligned.json")
    data = parse_import(aligned)
    with open_gallery(gallery_at, fingerprint=MODEL_A) as gallery, pytest.raises(
            IntegrityError, match="crop 'align,margin=10%'"):
        gallery.import_data(data)
    assert snapshot(gallery_at) == before
    with pytest.raises(InputError, match="not a crop spec"):
        parse_import(seed_file(tmp_path, {**export_doc(MODEL_A), "crop": "wide"}, "bad.json"))


def random_entries(people: int, per_person: int, seed: int = 5) -> list[Entry]:
    """``people`` x ``per_person`` synthetic faces, one photo each."""
    rng = np.random.default_rng(seed)
    return [Entry(f"person {p:04d}", l2_normalize(rng.standard_normal(128).astype(np.float32)),
                  f"p{p}/{i}.jpg", f"{p:05d}{i:03d}".ljust(64, "f"), (1.0, 2.0, 30.0, 40.0), 0.9)
            for p in range(people) for i in range(per_person)]


def test_both_backends_store_and_match_the_same(tmp_path: Path, postgres_url: str) -> None:
    """The same entries in SQLite and PostgreSQL: the same vectors bit for bit, the same people,
    the same ranking; through the HNSW index and an exact scan too (re-ranked exactly: the same
    distances bit for bit, as each is computed whatever other rows are)."""
    entries = random_entries(120, 3)
    queries = l2_normalize(np.random.default_rng(9).standard_normal((40, 128)).astype(np.float32))
    queries[:20] = np.stack([e.vector for e in entries[::18][:20]]) + 0.05 * queries[20:40]
    queries = l2_normalize(queries)
    results = {}
    for target in (tmp_path / "g.db", postgres_url):
        with open_gallery(target, fingerprint=MODEL_A, create=True, crop="align") as gallery:
            for start in range(0, len(entries), 50):
                gallery.add(entries[start:start + 50])
            results[gallery.backend] = (
                [(e.name, e.vector.tobytes(), e.source, e.image_sha256, e.box, e.score)
                 for e in gallery.entries()],
                gallery.people(),
                gallery.match(queries, k=3),
                gallery.match(queries, k=3, mode=MatchMode.CENTROID),
            )
            if isinstance(gallery, postgres.PostgresGallery):
                for search in ("index", "scan"):
                    gallery.search = search  # type: ignore[assignment]
                    ranked = gallery.match(queries, k=3)
                    assert ranked == results["postgresql"][2], search
    sqlite_result, pg_result = results["sqlite"], results["postgresql"]
    assert sqlite_result[0] == pg_result[0]
    assert [(p.name, p.embeddings, p.photos) for p in sqlite_result[1]] == [
        (p.name, p.embeddings, p.photos) for p in pg_result[1]]
    assert sqlite_result[2] == pg_result[2] and sqlite_result[3] == pg_result[3]


def test_an_open_gallery_sees_other_writers(gallery_at: Path | str) -> None:
    """A reader that already matched (and holds the vectors in memory) sees another writer's
    enrollment and removal at its next match."""
    with open_gallery(gallery_at, fingerprint=MODEL_A, create=True) as writer:
        writer.add([entry("Ada", unit(1), "p1")])
        with open_gallery(gallery_at, fingerprint=MODEL_A) as reader:
            assert reader.match(unit(0, 1)[None], k=1)[0][0].name == "Ada"
            writer.add([entry("Bob", unit(0, 1), "p2")])
            assert reader.match(unit(0, 1)[None], k=1)[0][0].name == "Bob"
            writer.remove("Bob")
            assert reader.match(unit(0, 1)[None], k=1)[0][0].name == "Ada"


def test_an_open_gallery_ranks_with_its_current_vectors(gallery_at: Path | str) -> None:
    """What a reader keeps for ranking (the vectors and their float32 squared norms) is
    replaced together when another writer commits: after a person is swapped for another with
    as many rows, the reader ranks exactly as a freshly opened gallery does."""
    entries = random_entries(60, 2, seed=21)
    newcomer = random_entries(61, 2, seed=22)[-2:]
    queries = np.stack([entries[0].vector, newcomer[1].vector, entries[40].vector])
    with open_gallery(gallery_at, fingerprint=MODEL_A, create=True) as writer:
        writer.add(entries)
        with open_gallery(gallery_at, fingerprint=MODEL_A) as reader:
            assert reader.match(queries, k=2)[0][0].name == entries[0].name
            writer.remove(entries[0].name)
            writer.add([Entry("zz newcomer", e.vector, e.source, e.image_sha256, e.box, e.score)
                        for e in newcomer])
            for mode in MatchMode:
                ranked = reader.match(queries, k=4, mode=mode)
                with open_gallery(gallery_at, fingerprint=MODEL_A) as fresh:
                    assert ranked == fresh.match(queries, k=4, mode=mode)
            assert all(c.name != entries[0].name for row in ranked for c in row)
            nearest = reader.match(queries, k=1)
            assert nearest[1][0].name == "zz newcomer" and nearest[1][0].distance == 0.0


def test_bulk_add_loads_without_the_index_then_builds_it(postgres_url: str) -> None:
    """A bulk load is idempotent like add, and leaves the HNSW index there: the index finds
    what the exact scan finds."""
    from helpers.gallery_backends import pg_connection

    entries = random_entries(400, 2, seed=8)
    with open_gallery(postgres_url, fingerprint=MODEL_A, create=True) as gallery:
        assert isinstance(gallery, postgres.PostgresGallery)
        assert gallery.bulk_add(entries, batch=300) == 800
        assert gallery.bulk_add(entries, batch=300) == 0
        assert gallery.count() == 800
        with pg_connection(postgres_url) as (conn, schema):
            assert conn.execute("SELECT count(*) FROM pg_indexes WHERE schemaname = %s AND"
                                " indexname = 'embeddings_hnsw'", (schema,)).fetchone()[0] == 1
        queries = np.stack([e.vector for e in entries[::40]])
        gallery.search = "index"
        indexed = gallery.match(queries, k=1)
        gallery.search = "scan"
        assert [r[0].name for r in indexed] == [r[0].name for r in gallery.match(queries, k=1)]
        assert [r[0].name for r in indexed] == [e.name for e in entries[::40]]


@pytest.mark.parametrize("limit, path", [(120, "memory"), (119, "index")])
def test_auto_search_switches_to_the_index_above_the_exact_scan_limit(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch, limit: int, path: str) -> None:
    """``search = "auto"`` ranks in memory up to ``EXACT_SCAN_MAX`` embeddings and through the
    HNSW index above (the limit made small here: 120 embeddings); both rank the same."""
    entries = random_entries(40, 3)
    queries = np.stack([e.vector for e in entries[::12]])
    indexed: list[bool] = []
    real_search = postgres.PostgresGallery._search_one

    def spy(self: postgres.PostgresGallery, query: np.ndarray, k: int,
            exact: bool) -> list[Any]:
        indexed.append(not exact)
        return real_search(self, query, k, exact)

    monkeypatch.setattr(postgres.PostgresGallery, "_search_one", spy)
    with open_gallery(postgres_url, fingerprint=MODEL_A, create=True, crop="align") as gallery:
        assert isinstance(gallery, postgres.PostgresGallery)
        gallery.add(entries)
        assert gallery.count() == 120
        gallery.search = "memory"
        expected = gallery.match(queries, k=3)
        assert indexed == []
        gallery.search = "auto"
        monkeypatch.setattr(postgres, "EXACT_SCAN_MAX", limit)
        assert gallery.match(queries, k=3) == expected
    assert indexed == ([] if path == "memory" else [True] * len(queries))
