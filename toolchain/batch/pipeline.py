"""Batch enrollment and recognition on Ray: a Ray Data pipeline over photo paths.

The driver lists the photos (paths only), checks the models, opens the gallery (creating it for
an enrollment, so its crop and model are fixed before any worker starts) and hands Ray Data a
dataset of ``{index, path, name}`` rows. An actor pool of :class:`PhotoWorker` holds the ONNX
Runtime sessions (one :class:`~toolchain.runtime.recognizer.Recognizer` per actor, loaded once);
each call reads and decodes its photos on the worker, detects, crops and embeds their faces as one
embedder batch (the same code path as ``facenet enroll`` / ``recognize``, so the same embedding
bits) and, to recognize, matches them against the gallery. Results come back to the driver in
input order: enrollments go into the gallery one transaction per batch through the idempotent
:meth:`~toolchain.gallery.base.Gallery.add`, recognitions into JSON Lines or Parquet.

Each worker reserves :data:`WORKER_CPUS` CPU of its node and runs ONNX Runtime with as many
intra-op threads (unless told otherwise), so a node's workers share its cores instead of each
starting one thread per core.

A worker that dies is restarted and its batch retried by Ray, within bounds
(:data:`WORKER_RESTARTS`, :data:`BATCH_RETRIES`; Ray Data's own defaults retry without end, so a
photo that kills its worker every time would stall the run for ever). The driver only writes what
came back, and the idempotent key (photo sha256 plus face box) keeps a retried enrollment from
being stored twice. When Ray gives up, the run ends with :class:`BatchAborted`: an enrollment keeps
every photo whose result came back (committed), a recognition writes no output.

On a cluster, every node must reach the photos and the models (a model pack, or the artifacts
tree) under the same paths (shared storage), and the gallery should be a shared PostgreSQL
(``postgresql://`` URL): a SQLite file works only where every worker and the driver share the
file.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from toolchain.core.atomic import atomic_file, destination
from toolchain.core.boxes import as_box
from toolchain.core.errors import EnvironmentToolError, InputError
from toolchain.gallery import Entry, Gallery
from toolchain.gallery.names import person_name
from toolchain.runtime.faces import EnrollStatus, enroll_outcome
from toolchain.runtime.pack import model_source
from toolchain.runtime.recognizer import IMAGES_PER_BATCH, MIN_ENROLL_FACE, Recognizer

log = logging.getLogger(__name__)

Mode = Literal["enroll", "recognize"]
OUTPUT_SUFFIXES = (".jsonl", ".parquet")
"""The files a batch recognition writes, by suffix."""

WORKER_CPUS = 1
"""CPUs Ray reserves for each worker, and its ONNX Runtime intra-op threads unless ``threads`` is
set: one thread per reserved CPU keeps a node's workers from oversubscribing its cores."""

WORKER_RESTARTS = 8
"""How often Ray restarts one worker process that died (``max_restarts``). Enough for the deaths
a long run meets now and then (a killed process, a lost node, the out-of-memory killer), bounded
so that a pool whose workers cannot stay up ends the run instead of restarting them for ever."""

BATCH_RETRIES = 2
"""How often a batch is tried again after its worker died on it (``max_task_retries``): a
transient death costs one retry; a batch that kills its worker on each of its
``1 + BATCH_RETRIES`` attempts (a photo that crashes the decoder or the runtime) ends the run."""


class BatchAborted(EnvironmentToolError):
    """Ray gave up on the run (a batch failed on every attempt allowed); what came back before
    is kept (see :func:`enroll_batch`, :func:`recognize_batch`). Exit code 8: the engine the
    toolchain drives failed."""


class _RayGaveUp(Exception):
    """Raised by the record iterator when Ray Data ends the run with an error."""


@dataclass(frozen=True)
class BatchConfig:
    """What every worker needs to build its recognizer (plain values: sent to the actors)."""

    mode: Mode
    artifacts: str
    gallery: str = field(repr=False)
    """A file path or a URL (never in a repr: a URL may hold a password)."""
    crop: str
    detection: dict[str, Any] = field(default_factory=dict)
    threshold: float | None = None
    match: str = "nearest"
    top_k: int = 3
    allow_crop_mismatch: bool = False
    largest: bool = False
    min_enroll_face: float = MIN_ENROLL_FACE
    threads: int = 0
    """ONNX Runtime intra-op threads per worker; 0: :data:`WORKER_CPUS`."""
    models: str | None = None
    """The model pack the workers open (``--models PACK``); ``None``: the artifacts' own."""


@dataclass(frozen=True)
class ClusterOptions:
    """Where the pipeline runs.

    ``address``: ``local`` starts a private Ray instance on this machine with ``cpus`` CPUs
    (default: all); anything else is a cluster's address (``auto``, ``HOST:PORT``,
    ``ray://HOST:10001``). ``actors``: workers in the pool (default: one per CPU of the cluster).
    """

    address: str = "local"
    cpus: int | None = None
    actors: int | None = None


@dataclass(frozen=True)
class EnrollRecord:
    """What happened to one photo of a batch enrollment."""

    path: str
    name: str
    status: EnrollStatus
    message: str = ""
    enrolled_as: str | None = None


@dataclass(frozen=True)
class BatchSummary:
    """A finished batch run: photos, how they went, and where the results went."""

    photos: int
    actors: int
    cpus: float
    enrolled: list[EnrollRecord] = field(default_factory=list)
    faces: int = 0
    errors: int = 0
    """Photos that could not be read (their records carry the error)."""
    output: Path | None = None


def _vector_text(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, "<f4").tobytes()).decode("ascii")


def _vector(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").copy()


class PhotoWorker:
    """A Ray Data actor: one recognizer (ONNX Runtime sessions) for all its batches."""

    def __init__(self, config: BatchConfig):
        self.config = config
        self.recognizer = Recognizer.load(
            model_source(config.models, config.artifacts), config.gallery,
            threshold=config.threshold,
            match=config.match, top_k=config.top_k, detection=config.detection,
            crop=config.crop, allow_crop_mismatch=config.allow_crop_mismatch,
            threads=config.threads or WORKER_CPUS)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        """Analyze one batch of photos; one JSON record per photo, in the batch's order."""
        paths = [str(p) for p in batch["path"]]
        if self.config.mode == "recognize":
            records = [photo.to_dict() for photo in self.recognizer.recognize_many(paths)]
        else:
            records = []
            for name, photo in zip(batch["name"], self.recognizer.analyze(paths), strict=True):
                outcome = enroll_outcome(str(name), photo, self.config.largest,
                                         self.config.min_enroll_face)
                record: dict[str, Any] = {"path": str(photo.path), "name": outcome.name,
                                          "status": outcome.status.value,
                                          "message": outcome.message}
                if outcome.face is not None and photo.image is not None:
                    record["entry"] = {
                        "vector": _vector_text(outcome.face.embedding),
                        "image_sha256": photo.image.sha256, "box": list(outcome.face.box),
                        "score": outcome.face.confidence}  # the driver's transport, not output
                records.append(record)
        return {"index": list(batch["index"]), "record": [json.dumps(r) for r in records]}


def _ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise EnvironmentToolError("--ray needs Ray Data: pip install "
                                   "'facenet-toolchain[ray]'") from exc
    return ray


def _connect(cluster: ClusterOptions) -> tuple[Any, float]:
    """``ray`` connected as asked, and the CPUs of the cluster.

    A cluster address with a Ray token at hand (``RAY_AUTH_TOKEN`` or ``~/.ray/auth_token``,
    where ``ray start`` and a local ``ray.init`` keep it) connects with token authentication,
    as ``ray start`` does when it finds one; Ray's client would otherwise not send it (the mode
    is read when ``ray`` is imported, so it is set first).
    """
    if cluster.address != "local" and "RAY_AUTH_MODE" not in os.environ and (
            os.environ.get("RAY_AUTH_TOKEN") or (Path.home() / ".ray" / "auth_token").is_file()):
        os.environ["RAY_AUTH_MODE"] = "token"
    ray = _ray()
    if not ray.is_initialized():
        options: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
        if cluster.address == "local":
            ray.init(num_cpus=cluster.cpus, include_dashboard=False, **options)
        else:
            try:
                ray.init(address=cluster.address, **options)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise InputError(f"Ray cluster {cluster.address!r}: cannot connect "
                                 f"({' '.join(str(exc).split())})") from exc
    return ray, float(ray.cluster_resources().get("CPU", 1.0))


def _cause(exc: BaseException, died: type[BaseException]) -> str:
    """One line saying why Ray ended the run: workers that kept dying (``died``: Ray's error for
    a lost actor, here or in the chain of causes), or the error Ray reports."""
    link: BaseException | None = exc
    while link is not None:
        if isinstance(link, died):
            return (f"workers kept dying: a batch lost its worker on each of its "
                    f"{1 + BATCH_RETRIES} attempts, or a worker died more than "
                    f"{WORKER_RESTARTS} times")
        link = link.__cause__
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first}"[:300]


def _records(items: Sequence[tuple[str, Path]], config: BatchConfig, cluster: ClusterOptions,
             ) -> tuple[Iterator[dict[str, Any]], int, float]:
    """The records of every photo, in input order; the actor count and the cluster's CPUs."""
    ray, cpus = _connect(cluster)
    actors = cluster.actors or max(1, int(cpus))
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # Its error record repeats, with a traceback, the failure reported here as one line.
    logging.getLogger("ray.data._internal.execution.streaming_executor_state").setLevel(
        logging.CRITICAL)
    rows = [{"index": i, "path": str(path), "name": name}
            for i, (name, path) in enumerate(items)]
    dataset = ray.data.from_items(
        rows, override_num_blocks=max(1, math.ceil(len(rows) / IMAGES_PER_BATCH)))
    # One batch in flight per worker: a worker's death then costs an attempt only to the batch
    # it was computing, not to batches queued behind it; the photos are read inside the call,
    # so there is no input to prefetch.
    with warnings.catch_warnings():
        # Ray 2.60 takes the actors' retry options only as ray_remote_args, whose keyword form
        # it announces as deprecated (for 2.64) without naming a replacement for these two.
        warnings.simplefilter("ignore", DeprecationWarning)
        results = dataset.map_batches(
            PhotoWorker, fn_constructor_kwargs={"config": config}, batch_size=IMAGES_PER_BATCH,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=1),
            num_cpus=WORKER_CPUS, max_restarts=WORKER_RESTARTS, max_task_retries=BATCH_RETRIES)

    def iterate() -> Iterator[dict[str, Any]]:
        try:
            for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
                for text in batch["record"]:
                    yield json.loads(str(text))
        except ray.exceptions.RayError as exc:
            raise _RayGaveUp(_cause(exc, ray.exceptions.RayActorError)) from exc

    return iterate(), actors, cpus


def enroll_batch(items: Sequence[tuple[str, Path]], config: BatchConfig,
                 cluster: ClusterOptions, gallery: Gallery,
                 progress: Callable[[Path], None] | None = None) -> BatchSummary:
    """Enroll ``(name, photo)`` pairs on Ray into ``gallery``, one transaction per batch (names
    as the name rule makes them, :func:`~toolchain.gallery.names.person_name`).

    Raises:
        NameRefused: a name the rule refuses (before any work starts).
        EnvironmentToolError: Ray is not installed.
        InputError: the cluster cannot be reached.
        BatchAborted: Ray gave up; every photo whose result came back before is committed, so
            the same run again goes on from there (those are then already there).
    """
    items = [(person_name(name), photo) for name, photo in items]
    records, actors, cpus = _records(items, config, cluster)
    outcomes: list[EnrollRecord] = []
    pending: list[dict[str, Any]] = []

    def store() -> None:
        entries = {
            i: Entry(name=r["name"], vector=_vector(r["entry"]["vector"]), source=r["path"],
                     image_sha256=r["entry"]["image_sha256"], box=as_box(r["entry"]["box"]),
                     score=r["entry"]["score"])
            for i, r in enumerate(pending) if "entry" in r
        }
        result = gallery.add(list(entries.values()))
        owners = {id(entry): owner for entry, owner in result.duplicates}
        for i, r in enumerate(pending):
            owner = owners.get(id(entries[i])) if i in entries else None
            if owner is None:
                outcomes.append(EnrollRecord(r["path"], r["name"], EnrollStatus(r["status"]),
                                             r["message"]))
                continue
            note = "" if owner == r["name"] else f" as {owner!r}, not added again as {r['name']!r}"
            outcomes.append(EnrollRecord(r["path"], r["name"], EnrollStatus.ALREADY,
                                         f"{r['path']}: already in the gallery{note}", owner))
        if progress is not None:
            for r in pending:
                progress(Path(r["path"]))
        pending.clear()

    try:
        for record in records:
            pending.append(record)
            if len(pending) >= IMAGES_PER_BATCH:
                store()
    except _RayGaveUp as exc:
        if pending:
            store()
        raise BatchAborted(
            f"Ray gave up after {len(outcomes)} of {len(items)} photos ({exc}); those "
            f"{len(outcomes)} are enrolled and committed, the same command again goes on from "
            "there") from exc
    if pending:
        store()
    return BatchSummary(len(items), actors, cpus, enrolled=outcomes)


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def check_output(output: Path, inputs: Sequence[Path], *, overwrite: bool = False) -> None:
    """Refuse an output that would destroy something, before any Ray work starts.

    Raises:
        InputError: ``output`` does not end in one of :data:`OUTPUT_SUFFIXES`; is one of
            ``inputs`` (the same file under any name or link: results written over the list
            or a photo they come from); is not a regular file; or exists and ``overwrite`` is
            not set (the results of an earlier run are not replaced silently).
    """
    if output.suffix not in OUTPUT_SUFFIXES:
        raise InputError(f"{output}: the output must end in {' or '.join(OUTPUT_SUFFIXES)}")
    destination(output)
    identity = _file_identity(output)
    if identity is None:
        return
    if identity in {_file_identity(path) for path in inputs}:
        raise InputError(f"{output} is one of the inputs: not writing the results over it; "
                         "name another output")
    if not overwrite:
        raise InputError(f"{output} exists: not replacing it (--overwrite replaces it once the "
                         "run has succeeded); or name another output")


def recognize_batch(paths: Sequence[Path], config: BatchConfig, cluster: ClusterOptions,
                    output: Path, progress: Callable[[Path], None] | None = None, *,
                    read: Sequence[Path] = (), overwrite: bool = False) -> BatchSummary:
    """Recognize every face of ``paths`` on Ray; one record per photo into ``output``.

    ``output`` ends in ``.jsonl`` (one JSON object per line) or ``.parquet``; it is written
    whole or not at all, and is never one of ``paths`` or ``read`` (other files the run reads,
    such as the list of photos); an existing one is replaced only with ``overwrite``.

    Raises:
        EnvironmentToolError: Ray is not installed.
        InputError: an output refused by :func:`check_output`, or the cluster cannot be
            reached.
        BatchAborted: Ray gave up; ``output`` is not written (an earlier file there stays).
    """
    check_output(output, [*read, *paths], overwrite=overwrite)
    records, actors, cpus = _records([("", path) for path in paths], config, cluster)
    counts = {"photos": 0, "faces": 0, "errors": 0}

    def counted() -> Iterator[dict[str, Any]]:
        for record in records:
            counts["photos"] += 1
            counts["faces"] += len(record["faces"])
            counts["errors"] += record["error"] is not None
            if progress is not None:
                progress(Path(record["file"]))
            yield record

    try:
        with atomic_file(output) as temporary:
            if output.suffix == ".jsonl":
                with temporary.open("w", encoding="utf-8") as handle:
                    for record in counted():
                        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                import pyarrow as pa
                import pyarrow.parquet as pq

                pq.write_table(pa.Table.from_pylist(list(counted())), temporary)
    except _RayGaveUp as exc:
        raise BatchAborted(
            f"Ray gave up after {counts['photos']} of {len(paths)} photos ({exc}); {output} "
            "is not written") from exc
    return BatchSummary(len(paths), actors, cpus, faces=counts["faces"],
                        errors=counts["errors"], output=output)
