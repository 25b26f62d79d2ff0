"""The timed phases of a load session: the load, the burst beyond the queue, the CLI beside.

The load sends ``requests`` requests from ``clients`` threads to one server and
:func:`summarize` gives their throughput and latency percentiles, 503 (queue full) apart from
errors; the burst releases recognitions together against a small ``--queue`` on a server of its
own; the CLI phase runs ``facenet recognize`` on one photo and on many.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolchain.bench.loadtest.inputs import LoadConfig, variant
from toolchain.bench.loadtest.server import (
    REQUEST_TIMEOUT_S,
    Outcome,
    Server,
    checkout_env,
    serving,
)

CLI_TIMEOUT_S = 600.0
"""Longest run of one ``facenet recognize`` process."""


@dataclass
class LoadPhase:
    """The load phase's numbers (latencies in seconds over every answered request)."""

    clients: int
    requests: int
    enrollments: int
    seconds: float
    requests_per_s: float
    p50_s: float | None
    p95_s: float | None
    p99_s: float | None
    ok: int
    busy_503: int
    errors: dict[str, int]
    by_kind: dict[str, dict[str, float | None]]


@dataclass
class BurstPhase:
    """Simultaneous recognitions beyond ``--workers`` + ``--queue``: who got 503, how fast."""

    sent: int
    workers: int
    queue: int
    answered_200: int
    busy_503: int
    other: dict[str, int]
    retry_after: list[str]
    slowest_503_s: float | None
    healthy_after: bool


@dataclass
class CliPhase:
    """``facenet recognize`` on the load's photos: whole process and without its start."""

    photos: int
    seconds: float
    one_photo_seconds: float
    photos_per_s: float
    photos_per_s_after_start: float | None


def _percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summarize(outcomes: Sequence[Outcome], clients: int, seconds: float) -> LoadPhase:
    """Throughput, latency percentiles of the answered requests, 503s apart from errors."""
    answered = [o.seconds for o in outcomes if o.status]
    errors = Counter(o.error or str(o.status) for o in outcomes
                     if not 200 <= o.status < 300 and o.status != 503)
    by_kind: dict[str, dict[str, float | None]] = {}
    for kind in sorted({o.kind for o in outcomes}):
        mine = [o.seconds for o in outcomes if o.kind == kind and o.status]
        by_kind[kind] = {"count": float(len(mine)), "p50_s": _percentile(mine, 50),
                         "p95_s": _percentile(mine, 95)}
    return LoadPhase(
        clients=clients, requests=len(outcomes),
        enrollments=sum(o.kind == "enroll" for o in outcomes), seconds=seconds,
        requests_per_s=len(outcomes) / seconds, p50_s=_percentile(answered, 50),
        p95_s=_percentile(answered, 95), p99_s=_percentile(answered, 99),
        ok=sum(200 <= o.status < 300 for o in outcomes),
        busy_503=sum(o.status == 503 for o in outcomes), errors=dict(errors), by_kind=by_kind)


def run_load(server: Server, config: LoadConfig, people: dict[str, list[Path]],
             photos: Sequence[Path], scratch: Path) -> LoadPhase:
    """The load phase: ``config.requests`` requests from ``config.clients`` threads.

    Each enrollment adds a new file (:func:`variant`) of a shared people photo to its person.
    """
    enroll_photos = [(name, photo) for name, paths in people.items() for photo in paths]
    plan: list[tuple[str, str, list[tuple[str, Path]]]] = []
    for i in range(config.requests):
        if i % config.enroll_every == config.enroll_every - 1:
            name, photo = enroll_photos[(i // config.enroll_every) % len(enroll_photos)]
            copy = variant(photo, f"load-{i:05d}", scratch)
            plan.append(("enroll", f"/v1/people/{name}/faces", [("image", copy)]))
        else:
            plan.append(("recognize", "/v1/recognize", [("image", photos[i % len(photos)])]))
    start = time.perf_counter()
    with ThreadPoolExecutor(config.clients) as pool:
        outcomes = list(pool.map(lambda item: server.timed(*item), plan))
    return summarize(outcomes, config.clients, time.perf_counter() - start)


def run_burst(config: LoadConfig, artifacts: Path, gallery: Path, photos: Sequence[Path]
              ) -> BurstPhase:
    """``config.burst`` recognitions released together against ``--queue config.burst_queue``."""
    options = ("--workers", str(config.workers), "--queue", str(config.burst_queue))
    with serving(config.python, artifacts, gallery, *options) as server:
        start = threading.Barrier(config.burst)

        def recognize(i: int) -> Outcome:
            start.wait(REQUEST_TIMEOUT_S)
            return server.timed("recognize", "/v1/recognize",
                                [("image", photos[i % len(photos)])])

        with ThreadPoolExecutor(config.burst) as pool:
            outcomes = list(pool.map(recognize, range(config.burst)))
        healthy = all(server.call("GET", probe)[0] == 200 for probe in ("/healthz", "/readyz"))
    busy = [o for o in outcomes if o.status == 503]
    return BurstPhase(
        sent=len(outcomes), workers=config.workers, queue=config.burst_queue,
        answered_200=sum(o.status == 200 for o in outcomes), busy_503=len(busy),
        other=dict(Counter(str(o.status) for o in outcomes if o.status not in (200, 503))),
        retry_after=sorted({o.retry_after or "missing" for o in busy}),
        slowest_503_s=max((o.seconds for o in busy), default=None), healthy_after=healthy)


def run_cli(python: Path, artifacts: Path, gallery: Path, photos: Sequence[Path], count: int
            ) -> CliPhase:
    """``facenet recognize`` on one photo, then on ``count`` (the photos cycled)."""
    batch = [photos[i % len(photos)] for i in range(count)]

    def recognize(paths: Sequence[Path]) -> float:
        start = time.perf_counter()
        subprocess.run(
            [str(python), "-m", "toolchain", "recognize", "--artifacts", str(artifacts),
             "--gallery", str(gallery), "--json", *map(str, paths)],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            timeout=CLI_TIMEOUT_S, cwd=gallery.parent,
            env=checkout_env())
        return time.perf_counter() - start

    one = recognize(batch[:1])
    whole = recognize(batch)
    after_start = (count - 1) / (whole - one) if count > 1 and whole > one else None
    return CliPhase(photos=count, seconds=whole, one_photo_seconds=one,
                    photos_per_s=count / whole, photos_per_s_after_start=after_start)
