"""The gallery under concurrent writers and SIGKILL, and imports that must change nothing.

Writers are separate processes (``spawn``) using the gallery API with synthetic unit vectors
bound to the real model's fingerprint (a fixed stand-in when the model has not been exported:
the database logic does not depend on it). The writer tests run on both backends (``gallery_at``:
a SQLite file, a gallery on the session's PostgreSQL server).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.cli import facenet
from helpers.gallery_backends import sound
from helpers.real import artifacts_root

from toolchain.gallery import Entry, Gallery, is_postgres_url, open_gallery

ROOT = Path(__file__).resolve().parents[1]
WRITERS = 8
PEOPLE_PER_WRITER = 50
EMBEDDINGS_PER_PERSON = 3
PEOPLE_PER_BATCH = 5
DIM = 128
HANG_GUARD_S = 600
"""Longest wait for the writers at a barrier or to finish: only a hang guard (inside the test's
900 s limit), far beyond how long eight spawned processes take on a loaded 2-core machine."""


def model_fingerprint() -> str:
    """sha256 of the exported FaceNet ONNX model, or a fixed stand-in if it is not exported."""
    model = artifacts_root() / "models" / "facenet.onnx"
    if model.is_file():
        return hashlib.sha256(model.read_bytes()).hexdigest()
    return hashlib.sha256(b"stand-in model fingerprint").hexdigest()


def vector(name: str, index: int) -> np.ndarray:
    """A deterministic unit vector per (person, embedding index)."""
    seed = int.from_bytes(hashlib.sha256(f"{name}#{index}".encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def entries_for(names: list[str]) -> list[Entry]:
    """Every embedding of ``names``, each as a distinct face of a distinct synthetic photo."""
    return [
        Entry(name=name, vector=vector(name, i), source=f"synthetic/{name}/{i}.jpg",
              image_sha256=hashlib.sha256(f"{name}/{i}".encode()).hexdigest(),
              box=(float(i), 2.0, 50.0, 60.0), score=0.99)
        for name in names
        for i in range(EMBEDDINGS_PER_PERSON)
    ]


def writer(path: str, fingerprint: str, worker: int, barrier: Any) -> None:
    """Enroll this worker's 50 people in batches of 5 (one transaction each)."""
    names = [f"w{worker}-person{n:02d}" for n in range(PEOPLE_PER_WRITER)]
    barrier.wait(timeout=HANG_GUARD_S)
    with open_gallery(path, fingerprint=fingerprint, dim=DIM, create=True) as gallery:
        for start in range(0, len(names), PEOPLE_PER_BATCH):
            result = gallery.add(entries_for(names[start : start + PEOPLE_PER_BATCH]))
            assert len(result.added) == PEOPLE_PER_BATCH * EMBEDDINGS_PER_PERSON
            assert not result.duplicates


def run_workers(target: Callable[..., None], *args: Any) -> list[int | None]:
    """Exit codes of ``WRITERS`` spawned processes running ``target(*args, worker, barrier)``."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(WRITERS)
    procs = [ctx.Process(target=target, args=(*args, w, barrier)) for w in range(WRITERS)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=HANG_GUARD_S)
    for proc in procs:
        if proc.is_alive():
            proc.kill()
    return [proc.exitcode for proc in procs]


def check_people(gallery: Gallery, expected: dict[str, int]) -> None:
    """Exactly ``expected`` (name -> embedding count), and every stored vector is the one sent."""
    assert {p.name: p.embeddings for p in gallery.people()} == expected
    for entry in gallery.entries():
        index = int(Path(entry.source).stem)
        np.testing.assert_allclose(entry.vector, vector(entry.name, index), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("precreated", [True, False], ids=["existing", "created-concurrently"])
def test_eight_writers_lose_nothing(gallery_at: Path | str, precreated: bool) -> None:
    fingerprint = model_fingerprint()
    if precreated:
        open_gallery(gallery_at, fingerprint=fingerprint, dim=DIM, create=True).close()
    codes = run_workers(writer, str(gallery_at), fingerprint)
    assert codes == [0] * WRITERS
    assert sound(gallery_at) == ["ok"]
    with open_gallery(gallery_at, fingerprint=fingerprint) as gallery:
        expected = {f"w{w}-person{n:02d}": EMBEDDINGS_PER_PERSON
                    for w in range(WRITERS) for n in range(PEOPLE_PER_WRITER)}
        check_people(gallery, expected)
        assert len(gallery.people()) == WRITERS * PEOPLE_PER_WRITER == 400
        assert len(gallery.entries()) == 400 * EMBEDDINGS_PER_PERSON


CREATION_ROUNDS = 20


def round_gallery(root: str, round_: int) -> Path | str:
    """The gallery of one creation round: a file in folder ``root``, or a gallery name suffix."""
    return f"{root}r{round_:02d}" if is_postgres_url(root) else Path(root) / f"round{round_:02d}.db"


def first_opener(root: str, fingerprint: str, _worker: int, barrier: Any) -> None:
    """In every round, open (creating) the same new gallery at the same moment as the others."""
    for round_ in range(CREATION_ROUNDS):
        barrier.wait(timeout=HANG_GUARD_S)
        with open_gallery(round_gallery(root, round_), fingerprint=fingerprint,
                          dim=DIM, create=True) as gallery:
            assert gallery.fingerprint == fingerprint


@pytest.mark.slow
def test_simultaneous_first_opens_agree_on_one_gallery_on_postgresql(postgres_url: str) -> None:
    """Eight processes create the same PostgreSQL gallery at once, 20 times over: all succeed
    (the advisory lock), and each round's gallery is one sound gallery of that model."""
    fingerprint = model_fingerprint()
    assert run_workers(first_opener, postgres_url, fingerprint) == [0] * WRITERS
    for round_ in range(CREATION_ROUNDS):
        target = round_gallery(postgres_url, round_)
        assert sound(target) == ["ok"]
        with open_gallery(target, fingerprint=fingerprint) as gallery:
            assert gallery.people() == []


@pytest.mark.slow
def test_simultaneous_first_opens_agree_on_one_gallery(tmp_path: Path) -> None:
    """Eight processes create the same gallery at once, 20 times over (creating it in place
    failed ~1 round in 4 with "database is locked"): all succeed, each round leaves one WAL
    gallery (plus SQLite's own -wal/-shm when the last
    closer could not checkpoint) and no staging file."""
    fingerprint = model_fingerprint()
    assert run_workers(first_opener, str(tmp_path), fingerprint) == [0] * WRITERS
    databases = {p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm"))}
    assert databases == {f"round{r:02d}.db" for r in range(CREATION_ROUNDS)}
    for round_ in range(CREATION_ROUNDS):
        path = tmp_path / f"round{round_:02d}.db"
        assert sound(path) == ["ok"]
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("SELECT value FROM meta WHERE key = 'model_fingerprint'"
                                ).fetchall() == [(fingerprint,)]
        finally:
            conn.close()


KILL_BATCH_PEOPLE = 40


def batch_names(batch: int) -> list[str]:
    return [f"batch{batch:03d}-person{n:02d}" for n in range(KILL_BATCH_PEOPLE)]


def doomed_writer(path: str, fingerprint: str, first_batch: int, stall_after: int | None,
                  marker: str) -> None:
    """Commit batches from ``first_batch`` on; optionally stall forever inside a later one.

    With ``stall_after`` set, the third batch writes only its first ``stall_after`` embeddings
    (inside its transaction), writes ``marker`` and sleeps until killed. Without it, batches are
    committed in a loop until the process is killed at a random moment.
    """
    with open_gallery(path, fingerprint=fingerprint, dim=DIM, create=True) as gallery:
        real_insert = gallery._insert  # type: ignore[attr-defined]
        batches = 0

        def stalling_insert(conn: Any, entries: list[Entry], vectors: np.ndarray,
                            model: str, people_created: dict[str, str]) -> Any:
            nonlocal batches
            batches += 1
            if stall_after is not None and batches == 3:
                real_insert(conn, entries[:stall_after], vectors[:stall_after], model,
                            people_created)
                Path(marker).write_text("inside the transaction")
                time.sleep(600)
            return real_insert(conn, entries, vectors, model, people_created)

        gallery._insert = stalling_insert  # type: ignore[attr-defined]
        batch = first_batch
        while True:
            gallery.add(entries_for(batch_names(batch)))
            Path(marker).with_suffix(".committed").write_text(str(batch))
            batch += 1


def committed_batches(gallery: Gallery) -> dict[int, int]:
    counts: dict[int, int] = {}
    for person in gallery.people():
        counts[int(person.name[5:8])] = counts.get(int(person.name[5:8]), 0) + 1
        assert person.embeddings == EMBEDDINGS_PER_PERSON, f"{person.name} partially enrolled"
    return counts


@pytest.mark.slow
def test_sigkill_mid_batch_leaves_whole_batches(tmp_path: Path, gallery_at: Path | str) -> None:
    """Kill writers inside a transaction (at chosen points) and at random moments; every time
    the gallery is intact, holds only whole batches, and the next writer carries on."""
    fingerprint = model_fingerprint()
    path = gallery_at
    ctx = mp.get_context("spawn")
    rng = np.random.default_rng(11)
    stall_points: list[int | None] = [0, 1, 57, KILL_BATCH_PEOPLE * EMBEDDINGS_PER_PERSON - 1,
                                      None, None, None, None]
    next_batch = 0
    kills = 0
    for stall in stall_points:
        marker = tmp_path / f"marker-{kills}"
        proc = ctx.Process(target=doomed_writer,
                           args=(str(path), fingerprint, next_batch, stall, str(marker)))
        proc.start()
        deadline = time.monotonic() + 60
        if stall is not None:
            while not marker.exists():
                assert proc.is_alive() and time.monotonic() < deadline, "writer never stalled"
                time.sleep(0.01)
        else:
            committed = marker.with_suffix(".committed")
            while not committed.exists():
                assert proc.is_alive() and time.monotonic() < deadline, "writer never committed"
                time.sleep(0.01)
            time.sleep(float(rng.uniform(0.0, 0.25)))
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=30)
        assert proc.exitcode == -signal.SIGKILL
        kills += 1

        assert sound(path) == ["ok"]
        with open_gallery(path, fingerprint=fingerprint) as gallery:
            batches = committed_batches(gallery)
            assert all(count == KILL_BATCH_PEOPLE for count in batches.values()), batches
            if stall is not None:
                assert max(batches) == next_batch + 1, "the stalled batch must not be there"
            check_people(gallery, {p.name: EMBEDDINGS_PER_PERSON for p in gallery.people()})
        next_batch = max(batches) + 1

    with open_gallery(path, fingerprint=fingerprint) as gallery:
        gallery.add(entries_for(batch_names(next_batch)))
        assert committed_batches(gallery)[next_batch] == KILL_BATCH_PEOPLE
    assert sound(path) == ["ok"]
    assert kills == len(stall_points)


def dump(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


GOOD = [round(float(v), 6) for v in vector("seed", 0)]

MALFORMED_DATABASE_JSON: dict[str, str] = {
    "truncated": json.dumps({"Ada": GOOD, "Grace": GOOD})[:700],
    "not_json": "Ada: [0.1, 0.2]\n",
    "top_level_list": json.dumps([GOOD]),
    "string_in_vector": json.dumps({"Ada": GOOD, "Grace": [*GOOD[:-1], "0.1"]}),
    "nan_in_vector": json.dumps({"Ada": GOOD, "Grace": [*GOOD[:-1], float("nan")]}),
    "short_vectors": json.dumps({"Ada": GOOD[:127], "Grace": GOOD[:127]}),
    "mixed_sizes": json.dumps({"Ada": GOOD, "Grace": GOOD[:64]}),
    "empty_name": json.dumps({"Ada": GOOD, " ": GOOD}),
    "empty_vector": json.dumps({"Ada": GOOD, "Grace": []}),
    "all_zero": json.dumps({"Ada": GOOD, "Grace": [0.0] * DIM}),
    "not_utf8": "{\"Ad\xe9\": [0.5]}",
}
"""Seed-format ``DataBase.json`` files that are broken somewhere after a good first person."""


@pytest.mark.parametrize("case", sorted(MALFORMED_DATABASE_JSON))
def test_malformed_database_json_changes_nothing(tmp_path: Path, case: str) -> None:
    fingerprint = model_fingerprint()
    gallery_path = tmp_path / "gallery.db"
    with open_gallery(gallery_path, fingerprint=fingerprint, dim=DIM, create=True) as gallery:
        gallery.add(entries_for(["Existing Person"]))
    before_bytes = gallery_path.read_bytes()
    before = dump(gallery_path)
    bad = tmp_path / "DataBase.json"
    encoding = "latin-1" if case == "not_utf8" else "utf-8"
    bad.write_bytes(MALFORMED_DATABASE_JSON[case].encode(encoding))

    proc = facenet("gallery", "import", str(bad), "--gallery", str(gallery_path),
                   "--artifacts", str(tmp_path / "artifacts"))

    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 3, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("facenet: error: "), proc.stderr
    assert str(bad) in lines[0]
    assert "Traceback" not in proc.stderr
    assert dump(gallery_path) == before
    assert gallery_path.read_bytes() == before_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DataBase.json", "gallery.db"]


def test_good_database_json_imports(tmp_path: Path) -> None:
    """The control: the same import path with a well-formed file does write."""
    fingerprint = model_fingerprint()
    gallery_path = tmp_path / "gallery.db"
    open_gallery(gallery_path, fingerprint=fingerprint, dim=DIM, create=True).close()
    good = tmp_path / "DataBase.json"
    good.write_text(json.dumps({"Ada": GOOD, "Grace Hopper": [round(float(v), 6)
                                                              for v in vector("g", 1)]}))
    proc = facenet("gallery", "import", str(good), "--gallery", str(gallery_path),
                   "--artifacts", str(tmp_path / "artifacts"))
    assert proc.returncode == 0, proc.stderr
    with open_gallery(gallery_path) as gallery:
        assert [p.name for p in gallery.people()] == ["Ada", "Grace Hopper"]
