"""``facenet batch`` on Ray with the real models and photos: the same embeddings and matches as
the single-process commands, on a cluster started with ``ray start --head`` (2 CPUs, a temporary
directory) and on a private local instance; a worker SIGKILLed mid-run loses nothing and enrolls
nothing twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.cli import facenet, python_env

from toolchain.gallery import open_gallery

RAY = Path(sys.executable).with_name("ray")


def ray_run(test: Callable[..., None]) -> Callable[..., None]:
    """A run on Ray with the real models: marked ``real``, ``slow`` and ``services``."""
    for mark in (pytest.mark.real, pytest.mark.slow, pytest.mark.services):
        test = mark(test)
    return test


TRAIN_PHOTOS = 93
"""Photos under the 5-celebrity train/ (one has no face, ten have a face under 40 px)."""


@pytest.fixture(scope="module")
def real_artifacts() -> Path:
    root = Path(os.environ.get("FACENET_ARTIFACTS", "artifacts")).resolve()
    for name in ("facenet.onnx", "mtcnn_pnet.onnx", "mtcnn_rnet.onnx", "mtcnn_onet.onnx"):
        if not (root / "models" / name).is_file():
            pytest.skip(f"{root / 'models' / name} missing: run `nox -s export` first")
    if not (root / "source" / "5-celebrity-faces-dataset" / "val").is_dir():
        pytest.skip("the 5-celebrity photos are missing: run `nox -s fetch` first")
    return root


@pytest.fixture(scope="module")
def ray_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of the Ray processes: a home of their own and one cluster token, with
    token authentication on (as a real cluster's), so nothing is read from or left in ~/.ray;
    the checkout first on ``PYTHONPATH``, so the head's workers run this tree's code."""
    return python_env({"HOME": str(tmp_path_factory.mktemp("home")), "RAY_AUTH_MODE": "token",
                       "RAY_AUTH_TOKEN": secrets.token_hex(32)})


def rows(target: Path | str) -> list[tuple[Any, ...]]:
    """Every stored embedding with what identifies it, the vector as its float32 bytes."""
    with open_gallery(target) as gallery:
        return sorted((e.name, e.vector.tobytes(), e.source, e.image_sha256, e.box, e.score)
                      for e in gallery.entries())


@pytest.fixture(scope="module")
def single(real_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The train photos enrolled by the single-process `facenet enroll`."""
    db = tmp_path_factory.mktemp("single") / "single.db"
    result = facenet("enroll", real_artifacts / "source" / "5-celebrity-faces-dataset" / "train",
                     "--largest", "--gallery", db, "--artifacts", real_artifacts)
    assert result.returncode == 1, result.stderr
    return db


@pytest.fixture(scope="module")
def ray_cluster(ray_env: dict[str, str]) -> Iterator[str]:
    """A Ray head (2 CPUs) started with ``ray start --head --block`` in a temporary directory;
    its process group is stopped after the module."""
    root = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (root / "head.log").open("w")
    head = subprocess.Popen(
        [str(RAY), "start", "--head", "--block", "--num-cpus=2", f"--port={port}",
         f"--temp-dir={root}", "--include-dashboard=false", "--disable-usage-stats"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=ray_env)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while "--block" not in (root / "head.log").read_text():
            assert head.poll() is None, (root / "head.log").read_text()
            assert time.monotonic() < deadline, "ray start did not come up"
            time.sleep(0.5)
        yield address
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=30)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def summary(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout.strip().splitlines()[-1]


@ray_run
def test_batch_enroll_on_a_cluster_stores_the_single_process_embeddings(
        real_artifacts: Path, single: Path, ray_cluster: str, ray_env: dict[str, str],
        tmp_path: Path) -> None:
    db = tmp_path / "ray.db"
    train = real_artifacts / "source" / "5-celebrity-faces-dataset" / "train"
    result = facenet("batch", "enroll", train, "--largest", "--gallery", db, "--ray", ray_cluster,
                     "--artifacts", real_artifacts, env=ray_env)
    assert result.returncode == 1, result.stderr
    assert summary(result).startswith(
        "82 face(s) added, 0 already there, 11 skipped, on Ray (2 workers, 2 CPUs)")
    assert rows(db) == rows(single)
    again = facenet("batch", "enroll", train, "--largest", "--gallery", db, "--ray", ray_cluster,
                    "--artifacts", real_artifacts, env=ray_env)
    assert summary(again).startswith("0 face(s) added, 82 already there, 11 skipped")
    assert rows(db) == rows(single)


@ray_run
def test_batch_recognize_gives_the_single_process_matches(
        real_artifacts: Path, single: Path, ray_cluster: str, ray_env: dict[str, str],
        tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    val = real_artifacts / "source" / "5-celebrity-faces-dataset" / "val"
    reference = facenet("recognize", val, "--json", "--gallery", single,
                        "--artifacts", real_artifacts)
    assert reference.returncode == 0, reference.stderr
    expected = {r["file"]: r for r in json.loads(reference.stdout)["results"]}
    jsonl, parquet = tmp_path / "val.jsonl", tmp_path / "val.parquet"
    result = facenet("batch", "recognize", val, "--output", jsonl, "--gallery", single,
                     "--ray", ray_cluster, "--artifacts", real_artifacts, env=ray_env)
    assert result.returncode == 0, result.stderr
    local = facenet("batch", "recognize", val, "--output", parquet, "--gallery", single,
                    "--ray", "local", "--cpus", "1", "--artifacts", real_artifacts, env=ray_env)
    assert local.returncode == 0, local.stderr
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert records == pq.read_table(parquet).to_pylist()
    assert sorted(r["file"] for r in records) == sorted(expected)
    faces = 0
    for record in records:
        want = expected[record["file"]]["faces"]
        assert len(record["faces"]) == len(want)
        for got, face in zip(record["faces"], want, strict=True):
            faces += 1
            assert got == face, "batch and recognize --json share one serializer"
    assert summary(result).startswith(f"{faces} face(s) in 25 photos on Ray (2 workers")


KILLED_ONCE_OPEN = """
import os
import signal

_victim = os.environ.get("FACENET_TEST_KILLED_PHOTO")
_marker = os.environ.get("FACENET_TEST_KILLED_MARKER")
if _victim and _marker:
    _open = os.open

    def _killed_once_open(path, *args, **kwargs):
        if os.path.abspath(os.fsdecode(path)) == _victim:
            try:
                os.close(_open(_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return _open(path, *args, **kwargs)

    os.open = _killed_once_open
"""
"""A ``sitecustomize`` for the Ray processes of a test: the first process to open the photo named
by ``FACENET_TEST_KILLED_PHOTO`` records it in ``FACENET_TEST_KILLED_MARKER`` and is SIGKILLed on
the spot (as the kernel's OOM killer would); the retry of that photo goes through."""


@ray_run
def test_a_worker_killed_mid_run_loses_nothing_and_enrolls_nothing_twice(
        real_artifacts: Path, single: Path, ray_env: dict[str, str], postgres_url: str,
        tmp_path: Path) -> None:
    """A Ray worker is SIGKILLed when it opens the 65th of the 93 photos (after four batches):
    Ray restarts it and retries its photos; the gallery ends with exactly the single-process
    rows, each photo reported once. The URL's password (ignored by the local server) shows
    nowhere, the workers' output included. The kill is an event of the run, not a race with a
    poll of the gallery."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILLED_ONCE_OPEN)
    marker = tmp_path / "killed"
    train = real_artifacts / "source" / "5-celebrity-faces-dataset" / "train"
    photos = sorted(train.glob("*/*"))
    assert len(photos) == TRAIN_PHOTOS
    secret = "s3cret-Pw"
    env = {**ray_env, "FACENET_TEST_KILLED_PHOTO": os.path.abspath(photos[64]),
           "FACENET_TEST_KILLED_MARKER": str(marker),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(hook), ray_env.get("PYTHONPATH")]))}
    result = facenet("batch", "enroll", train, "--largest", "--gallery",
                     f"{postgres_url}&password={secret}", "--ray", "local", "--cpus", "2",
                     "--artifacts", real_artifacts, env=env)
    assert marker.is_file(), "no worker opened the photo"
    assert result.returncode == 1, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("82 face(s) added, 0 already there, 11 skipped"), result.stdout
    assert secret not in result.stdout + result.stderr and "password=***" in last, last
    skipped = [line for line in result.stderr.splitlines() if line.startswith("facenet: skipped: ")]
    assert len(skipped) == 11, result.stderr
    assert rows(postgres_url) == rows(single)


@ray_run
def test_one_thread_per_worker_gives_the_bits_of_one_thread_per_core(
        real_artifacts: Path, tmp_path: Path) -> None:
    """A batch worker's sessions (one intra-op thread) find the same faces and embeddings, bit
    for bit, as the single-process commands' (one thread per core) on the val photos."""
    from toolchain.runtime.ort_options import core_count
    from toolchain.runtime.recognizer import Recognizer

    val = sorted((real_artifacts / "source" / "5-celebrity-faces-dataset" / "val").glob("*/*"))
    found = []
    for threads in (1, 0):
        with Recognizer.from_artifacts(real_artifacts, tmp_path / "unused.db",
                                       threads=threads) as rec:
            found.append([(str(photo.path), [(f.box, f.confidence, f.embedding.tobytes())
                                             for f in photo.faces])
                          for photo in rec.analyze(val)])
    assert core_count() > 1, "one core: both runs used one thread"
    assert sum(len(faces) for _, faces in found[0]) >= len(val)
    assert found[0] == found[1]


CRASHING_OPEN = """
import os

_poison = os.environ.get("FACENET_TEST_CRASHING_PHOTO")
if _poison:
    _open = os.open

    def _crashing_open(path, *args, **kwargs):
        if os.path.basename(os.fsdecode(path)) == _poison:
            os._exit(70)
        return _open(path, *args, **kwargs)

    os.open = _crashing_open
"""
"""A ``sitecustomize`` for the Ray processes of a test: a process that opens the photo named by
``FACENET_TEST_CRASHING_PHOTO`` dies on the spot, as a worker would on a photo that crashes the
decoder or the runtime every time."""


@ray_run
def test_a_photo_that_kills_its_worker_every_time_ends_the_run(
        real_artifacts: Path, single: Path, ray_env: dict[str, str], tmp_path: Path) -> None:
    """Ray retries the batch a bounded number of times, then the run ends with one error line
    and exit 8; what came back before is committed, and the same command without the photo
    goes on from there (nothing enrolled twice); a recognition writes no output (an earlier
    file there stays as it was). One worker and four batches before the crashing
    one, so some have come back when it crashes (with two workers, the crashing batch can fail
    three times while the other is still computing the first)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(CRASHING_OPEN)
    crashing = tmp_path / "crashes-its-worker.jpg"
    train = real_artifacts / "source" / "5-celebrity-faces-dataset" / "train"
    photos = sorted(train.glob("*/*"))
    assert len(photos) == TRAIN_PHOTOS
    shutil.copy(photos[0], crashing)
    listed = [f"{p.parent.name}\t{p}" for p in photos]
    poisoned = tmp_path / "poisoned.txt"
    poisoned.write_text("\n".join([*listed[:64], f"crash\t{crashing}", *listed[64:]]) + "\n")
    clean = tmp_path / "clean.txt"
    clean.write_text("\n".join(listed) + "\n")
    db = tmp_path / "ray.db"
    env = {**ray_env, "FACENET_TEST_CRASHING_PHOTO": crashing.name,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(hook),
                                                        ray_env.get("PYTHONPATH")]))}
    common = ["--largest", "--gallery", db, "--ray", "local", "--cpus", "2", "--actors", "1",
              "--artifacts", real_artifacts]
    result = facenet("batch", "enroll", "--list", poisoned, *common, env=env)
    assert result.returncode == 8, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("facenet: error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    done = int(errors[0].split("Ray gave up after ", 1)[1].split(" ", 1)[0])
    assert 0 < done <= 64 and f"of {len(photos) + 1} photos" in errors[0], errors[0]
    assert "workers kept dying" in errors[0] and "enrolled and committed" in errors[0]
    expected = {r[2]: r for r in rows(single)}
    stored = rows(db)
    assert stored == sorted(expected[str(p)] for p in photos[:done] if str(p) in expected)

    unnamed = tmp_path / "unnamed.txt"
    unnamed.write_text("\n".join(line.split("\t")[1] for line in
                                 poisoned.read_text().splitlines()) + "\n")
    output = tmp_path / "out" / "faces.jsonl"
    output.parent.mkdir()
    output.write_text("earlier\n")
    recognized = facenet("batch", "recognize", "--list", unnamed, "--output", output,
                         "--overwrite", *common[1:], env=env)
    assert recognized.returncode == 8, recognized.stderr
    errors = [line for line in recognized.stderr.splitlines()
              if line.startswith("facenet: error:")]
    assert len(errors) == 1 and "Traceback" not in recognized.stderr, recognized.stderr
    assert f"of {len(photos) + 1} photos" in errors[0] and "is not written" in errors[0]
    assert output.read_text() == "earlier\n" and os.listdir(output.parent) == ["faces.jsonl"]

    again = facenet("batch", "enroll", "--list", clean, *common, env=env)
    assert again.returncode in (0, 1), again.stderr
    added, already = (int(summary(again).split(" ", 1)[0]),
                      int(summary(again).split(", ", 1)[1].split(" ", 1)[0]))
    assert already == len(stored) and added + already == len(rows(db)), again.stdout
    assert rows(db) == rows(single)


SESSION_THREADS = """
import os
import sys

_record = os.environ.get("FACENET_TEST_SESSION_THREADS")
if _record:
    import onnxruntime

    _init = onnxruntime.InferenceSession.__init__

    def _recording_init(self, path_or_bytes, sess_options=None, *args, **kwargs):
        threads = -1 if sess_options is None else sess_options.intra_op_num_threads
        process = os.path.basename(sys.argv[0]) if sys.argv else "?"
        line = f"{process} {threads} {os.path.basename(str(path_or_bytes))}\\n"
        fd = os.open(_record, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
        _init(self, path_or_bytes, sess_options, *args, **kwargs)

    onnxruntime.InferenceSession.__init__ = _recording_init
"""
"""A ``sitecustomize`` for the processes of a test: every ONNX Runtime session created appends
``PROGRAM INTRA_OP_THREADS MODEL`` (``PROGRAM``: the basename of ``sys.argv[0]``) to the file
named by ``FACENET_TEST_SESSION_THREADS``."""


@ray_run
def test_threads_reach_the_workers_sessions(
        real_artifacts: Path, ray_env: dict[str, str], tmp_path: Path) -> None:
    """``batch recognize --threads 3`` on a private Ray (1 CPU, one worker): every ONNX Runtime
    session a Ray worker opens (the three MTCNN stages and FaceNet) has 3 intra-op threads, not
    the per-worker default of one. (The driver opens the models once too, to check the gallery
    against them, with its own default of one thread per core.)"""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SESSION_THREADS)
    record = tmp_path / "sessions.txt"
    env = {**ray_env, "FACENET_TEST_SESSION_THREADS": str(record),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(hook), ray_env.get("PYTHONPATH")]))}
    photos = real_artifacts / "source" / "5-celebrity-faces-dataset" / "val" / "madonna"
    artifacts = tmp_path / "artifacts"  # the models linked: their graph caches go here
    (artifacts / "models").mkdir(parents=True)
    for name in ("facenet.onnx", "mtcnn_pnet.onnx", "mtcnn_rnet.onnx", "mtcnn_onet.onnx"):
        (artifacts / "models" / name).symlink_to(real_artifacts / "models" / name)
    output, gallery = tmp_path / "faces.jsonl", tmp_path / "madonna.db"
    enrolled = facenet("enroll", "--name", "madonna", sorted(photos.iterdir())[0], "--gallery",
                       gallery, "--artifacts", artifacts)
    assert enrolled.returncode == 0, enrolled.stderr
    result = facenet("batch", "recognize", photos, "--output", output, "--gallery",
                     gallery, "--ray", "local", "--cpus", "1", "--threads", "3",
                     "--artifacts", artifacts, env=env)
    assert result.returncode == 0, result.stderr
    assert len(output.read_text().splitlines()) == len(list(photos.iterdir()))
    sessions = [line.split() for line in record.read_text().splitlines()]
    workers = [(threads, model.removesuffix(".optimized"))
               for program, threads, model in sessions if program == "default_worker.py"]
    assert {model for _, model in workers} == {
        "facenet.onnx", "mtcnn_pnet.onnx", "mtcnn_rnet.onnx", "mtcnn_onet.onnx"}, sessions
    assert {threads for threads, _ in workers} == {"3"}, sessions
    assert {program for program, _, _ in sessions} == {"default_worker.py", "__main__.py"}


def test_batch_recognize_never_writes_over_an_input_or_an_earlier_output(
        tmp_path: Path, fake_artifacts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The list as --output (a link to it too), or an existing output without --overwrite:
    exit 3 with one line before any work, the file untouched. Before: the list was replaced by
    the results, an earlier output silently."""
    from helpers import runtime_fakes as fakes
    from helpers.cli import invoke

    fakes.photo(tmp_path / "People" / "Red.png", [("red", 60)])
    gallery = tmp_path / "g.db"
    common = ["--gallery", str(gallery), "--artifacts", str(fake_artifacts)]
    assert invoke(capsys, "enroll", tmp_path / "People", *common)[0] == 0
    listed = tmp_path / "L.jsonl"
    listed.write_text("People/Red.png\n")
    (tmp_path / "link.jsonl").symlink_to(listed)
    for output in (listed, tmp_path / "link.jsonl"):
        code, out, err = invoke(capsys, "batch", "recognize", "--list", listed,
                                "--output", output, "--overwrite", *common)
        assert code == 3 and not out and "is one of the inputs" in err, err
        assert len(err.strip().splitlines()) == 1
        assert listed.read_text() == "People/Red.png\n"
    earlier = tmp_path / "earlier.jsonl"
    earlier.write_text("earlier\n")
    code, out, err = invoke(capsys, "batch", "recognize", "--list", listed,
                            "--output", earlier, *common)
    assert code == 3 and not out and "exists: not replacing it" in err and "--overwrite" in err
    assert earlier.read_text() == "earlier\n"


def test_batch_usage_errors_are_one_line(tmp_path: Path, fake_artifacts: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Checked before any Ray work starts: an output of another kind (exit 3, nothing written),
    --cpus for a cluster, no photos at all (usage errors, exit 2)."""
    from helpers import runtime_fakes as fakes
    from helpers.cli import invoke

    fakes.photo(tmp_path / "People" / "Red.png", [("red", 60)])
    gallery = tmp_path / "g.db"
    assert invoke(capsys, "enroll", tmp_path / "People", "--gallery", gallery,
                  "--artifacts", fake_artifacts)[0] == 0
    common = ["--gallery", str(gallery), "--artifacts", str(fake_artifacts)]
    code, out, err = invoke(capsys, "batch", "recognize", tmp_path / "People",
                            "--output", tmp_path / "faces.csv", *common)
    assert code == 3 and not out and "must end in .jsonl or .parquet" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "faces.csv").exists()
    code, _, err = invoke(capsys, "batch", "enroll", tmp_path / "People", "--ray", "auto",
                          "--cpus", "2", *common)
    assert code == 2 and "--cpus bounds a --ray local instance only" in err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    code, _, err = invoke(capsys, "batch", "enroll", "--list", empty, *common)
    assert code == 2 and "no photos" in err
