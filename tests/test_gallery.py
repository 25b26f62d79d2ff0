"""The SQLite gallery: no-op re-enrollment, model binding, matching, export/import, bad files."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from toolchain.errors import InputError, IntegrityError
from toolchain.preprocess import l2_normalize
from toolchain.runtime import gallery as gallery_module
from toolchain.runtime.gallery import (
    Entry,
    Gallery,
    MatchMode,
    export_json,
    pairwise_distances,
    parse_import,
)

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
    with Gallery.open(path) as gallery:
        rows = [(e.name, e.vector.tobytes(), e.source, e.image_sha256, e.box, e.score)
                for e in gallery.entries()]
        meta = dict(gallery._meta)
    return rows, meta


def test_create_and_reopen(db: Path) -> None:
    with Gallery.open(db, fingerprint=MODEL_A, create=True) as gallery:
        assert gallery.fingerprint == MODEL_A and gallery.dim == 128
        assert gallery.threshold is None
        result = gallery.add([entry("Ada", unit(1), "p1"), entry("Ada", unit(1, 0.1), "p2"),
                              entry("Bob", unit(0, 1), "p3")])
        assert len(result.added) == 3 and not result.duplicates
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    with Gallery.open(db, fingerprint=MODEL_A) as gallery:
        people = {p.name: p for p in gallery.people()}
        assert people["Ada"].embeddings == 2 and people["Ada"].photos == 2
        assert people["Bob"].embeddings == 1
        stored = gallery.entries()
        np.testing.assert_allclose(np.linalg.norm([e.vector for e in stored], axis=1), 1.0,
                                   rtol=1e-6)


def test_reenrolling_the_same_face_is_a_no_op(db: Path) -> None:
    with Gallery.open(db, fingerprint=MODEL_A, create=True) as gallery:
        gallery.add([entry("Ada", unit(1), "p1")])
        again = gallery.add([entry("Ada", unit(1), "p1"), entry("Eve", unit(1), "p1")])
        assert not again.added
        assert [owner for _, owner in again.duplicates] == ["Ada", "Ada"]
        assert [p.name for p in gallery.people()] == ["Ada"]
        other_face = gallery.add([entry("Eve", unit(0, 1), "p1", box=(100, 2, 30, 40))])
        assert len(other_face.added) == 1
        assert [(p.name, p.embeddings) for p in gallery.people()] == [("Ada", 1), ("Eve", 1)]


def test_box_is_compared_after_rounding(db: Path) -> None:
    with Gallery.open(db, fingerprint=MODEL_A, create=True) as gallery:
        gallery.add([entry("Ada", unit(1), "p1", box=(1.0, 2.0, 30.0, 40.0))])
        again = gallery.add([entry("Ada", unit(1), "p1", box=(1.0000001, 2.0, 30.0, 40.0))])
        assert not again.added


def test_another_models_gallery_is_refused(db: Path) -> None:
    Gallery.open(db, fingerprint=MODEL_A, create=True).close()
    with pytest.raises(IntegrityError) as info:
        Gallery.open(db, fingerprint=MODEL_B)
    message = str(info.value)
    assert str(db) in message and MODEL_A[:16] in message and MODEL_B[:16] in message
    Gallery.open(db).close()


def test_missing_gallery_is_not_created_unless_asked(db: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        Gallery.open(db, fingerprint=MODEL_A)
    assert not db.exists()


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
        Gallery.open(db)
    assert db.read_bytes() == content



def test_empty_file_is_not_turned_into_a_gallery(db: Path) -> None:
    db.parent.mkdir(parents=True)
    db.touch()
    with pytest.raises(InputError, match="is an empty file"):
        Gallery.open(db, fingerprint=MODEL_A, create=True)
    assert db.read_bytes() == b""


def test_creator_that_loses_the_race_opens_the_winners_gallery(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_link = os.link

    def link_after_a_rival(src: str, dst: str) -> None:
        monkeypatch.setattr(gallery_module.os, "link", real_link)
        with Gallery.open(dst, fingerprint=MODEL_A, create=True) as rival:
            rival.add([entry("Ada", unit(1), "p1")])
        real_link(src, dst)

    monkeypatch.setattr(gallery_module.os, "link", link_after_a_rival)
    with Gallery.open(db, fingerprint=MODEL_A, create=True) as gallery:
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
        Gallery.open(db, fingerprint=MODEL_A, create=True)


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="directory"):
        Gallery.open(tmp_path, fingerprint=MODEL_A, create=True)


def test_a_bad_vector_writes_nothing(db: Path) -> None:
    with Gallery.open(db, fingerprint=MODEL_A, create=True) as gallery:
        gallery.add([entry("Ada", unit(1), "p1")])
    before = snapshot(db)
    bad = [entry("Bob", unit(0, 1), "p2"), entry("Cy", np.full(128, np.nan, np.float32), "p3")]
    with Gallery.open(db, fingerprint=MODEL_A) as gallery, pytest.raises(InputError):
        gallery.add(bad)
    short = [entry("Bob", unit(0, 1), "p2"), entry("Cy", np.ones(64, np.float32), "p3")]
    with Gallery.open(db, fingerprint=MODEL_A) as gallery, pytest.raises(InputError):
        gallery.add(short)
    assert snapshot(db) == before


def test_an_error_inside_the_transaction_rolls_back(db: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    with Gallery.open(db, fingerprint=MODEL_A, create=True) as gallery:
        gallery.add([entry("Ada", unit(1), "p1")])
    before = snapshot(db)
    from toolchain.runtime import gallery as module

    calls = {"n": 0}
    real_blob = module._blob

    def fail_on_second_row(vector: np.ndarray) -> bytes:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk on fire")
        return real_blob(vector)

    monkeypatch.setattr(module, "_blob", fail_on_second_row)
    with Gallery.open(db, fingerprint=MODEL_A) as gallery, pytest.raises(RuntimeError):
        gallery.add([entry("Bob", unit(0, 1), "p2"), entry("Cy", unit(0, 0, 1), "p3")])
    monkeypatch.undo()
    assert snapshot(db) == before


def test_nearest_and_centroid_matching(db: Path) -> None:
    """Ada has two different-looking photos; a query like one of them is Ada by nearest, but the
    mean of Ada's two photos lies closer to Bob."""
    ada_1, ada_2 = unit(1, 0, 0), unit(0, 0, 1)
    bob = unit(0.6, 0.1, 0.6)
    query = unit(0.95, 0.05, 0.1)
    with Gallery.open(db, fingerprint=MODEL_A, create=True) as gallery:
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


def test_match_top_k_is_sorted_and_empty_gallery_matches_nobody(db: Path) -> None:
    with Gallery.open(db, fingerprint=MODEL_A, create=True) as gallery:
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


def test_remove_and_threshold(db: Path) -> None:
    with Gallery.open(db, fingerprint=MODEL_A, create=True) as gallery:
        gallery.add([entry("Ada", unit(1), "p1"), entry("Ada", unit(1, 1), "p2"),
                     entry("Bob", unit(0, 1), "p3")])
        assert gallery.remove("Ada") == 2
        with pytest.raises(InputError, match="no person named 'Ada'"):
            gallery.remove("Ada")
        gallery.set_threshold(0.8125, "test")
        with pytest.raises(InputError):
            gallery.set_threshold(float("nan"), "test")
    with Gallery.open(db) as gallery:
        assert [p.name for p in gallery.people()] == ["Bob"]
        assert gallery.threshold == 0.8125 and gallery.threshold_source == "test"
        assert gallery.match(unit(1, 0.9)[None], k=5)[0][0].name == "Bob"


def test_export_import_round_trip(db: Path, tmp_path: Path) -> None:
    with Gallery.open(db, fingerprint=MODEL_A, create=True) as gallery:
        gallery.add([entry("Ada", unit(1), "p1"), entry("Bob", unit(0, 1), "p2")])
        gallery.set_threshold(0.9, "test")
        exported = tmp_path / "out" / "gallery.json"
        assert export_json(gallery, exported) == 2
    data = parse_import(exported)
    assert data.fingerprint == MODEL_A and data.dim == 128 and data.threshold == 0.9
    copy = tmp_path / "copy.db"
    with Gallery.open(copy, fingerprint=data.fingerprint, create=True) as gallery:
        assert len(gallery.add(data.entries).added) == 2
        assert len(gallery.add(data.entries).duplicates) == 2
    assert snapshot(copy)[0] == snapshot(db)[0]


def test_seed_database_json_import(tmp_path: Path, db: Path) -> None:
    rng = np.random.default_rng(0)
    ada, bob1, bob2 = (rng.standard_normal(128) * 9 for _ in range(3))
    seed = tmp_path / "DataBase.json"
    seed.write_text(json.dumps({"Ada Lovelace": ada.tolist(),
                                "Bob": [bob1.tolist(), bob2.tolist()]}))
    data = parse_import(seed)
    assert data.fingerprint is None and data.kind == "seed DataBase.json" and data.dim == 128
    with Gallery.open(db, fingerprint=MODEL_A, create=True) as gallery:
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


def test_malformed_import_changes_nothing(tmp_path: Path, db: Path) -> None:
    """A file whose LAST vector is bad: parse fails before anything is written; a wrong-size
    file that parses fails inside ``add`` before its transaction starts."""
    with Gallery.open(db, fingerprint=MODEL_A, create=True) as gallery:
        gallery.add([entry("Ada", unit(1), "p1")])
    before = snapshot(db)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"Bob": [0.2] * 128, "Cy": [0.1] * 128, "Dee": [0.3] * 12}))
    with pytest.raises(InputError):
        parse_import(bad)
    wrong_dim = tmp_path / "wrong_dim.json"
    wrong_dim.write_text(json.dumps({"Bob": [0.2] * 64, "Cy": [0.1] * 64}))
    with Gallery.open(db, fingerprint=MODEL_A) as gallery, pytest.raises(InputError):
        gallery.add(parse_import(wrong_dim).entries)
    assert snapshot(db) == before
