"""Load session of ``facenet serve``: concurrent clients on loopback, the CLI beside, a SIGKILL.

The server is a real ``facenet serve`` process (``python -m toolchain serve`` of the given
interpreter) bound to 127.0.0.1 on a free port, with its own gallery in a temporary folder; the
shared people are enrolled through the API first. Then:

1. **Load**: ``clients`` threads send ``requests`` requests between them (one in ``enroll_every``
   an enrollment of a shared people photo, the rest recognitions of the shared photos); every
   request's latency and status is recorded; 503 (queue full) is counted apart from errors.
2. **Burst**: ``burst`` recognitions released together against a server whose ``--queue`` is
   ``burst_queue``: those beyond its places get 503 with ``Retry-After`` at once, and the server
   stays healthy.
3. **CLI**: ``facenet recognize`` on the photos the load recognized, once on one photo and once
   on all, so the report gives its photos/s with and without the process start.
4. **Kill**: a fresh server on the same gallery gets ``kill_enrollments`` simultaneous
   enrollments (unique names, two photos each) and is SIGKILLed once a third are acknowledged.
   The gallery file is checked read-only (SQLite integrity, schema, unit vectors, the model's
   fingerprint), then a new server lists the people: every acknowledged enrollment must be
   there, no enrollment may be partial, the people enrolled before must be unchanged.

Everything is bounded: counts are fixed, every HTTP call and subprocess has a timeout, and only
127.0.0.1 is contacted. The HTTP client is the standard library's, so the session runs in the
runtime environment (no ``requests``).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from PIL.PngImagePlugin import PngInfo

from toolchain.bench.config import SHARED_EXAMPLES
from toolchain.bench.machine import cpu_model
from toolchain.core import atomic
from toolchain.core.contracts import ONNX_FILE
from toolchain.core.errors import MissingArtifactError
from toolchain.core.integrity.fingerprint import model_fingerprint
from toolchain.core.integrity.galleries import check_gallery_file
from toolchain.core.paths import Layout

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 120.0
"""Longest wait for a server to load its models and bind."""

REQUEST_TIMEOUT_S = 120.0
"""Longest wait for one HTTP answer (a request queued behind 15 others on 2 cores)."""

CLI_TIMEOUT_S = 600.0
"""Longest run of one ``facenet recognize`` process."""

LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
REPORT_JSON = "loadtest.json"
REPORT_MD = "loadtest.md"


@dataclass(frozen=True)
class LoadConfig:
    """What one session sends.

    Attributes:
        clients: concurrent client threads.
        requests: requests of the load phase (all clients together).
        enroll_every: one request in this many is an enrollment (the rest recognitions).
        workers: the server's ``--workers``.
        queue: the server's ``--queue`` (beyond it, 503).
        kill_enrollments: simultaneous enrollments of the kill phase.
        burst: simultaneous recognitions of the burst phase.
        burst_queue: the server's ``--queue`` in the burst phase (small: the burst overflows it).
        cli_photos: photos of the CLI's batch (the load's photos, cycled).
        python: interpreter that runs the server and the CLI (``-m toolchain``).
        examples: folder with ``people/<name>/`` and ``photos/``.
    """

    clients: int = 16
    requests: int = 160
    enroll_every: int = 8
    workers: int = 2
    queue: int = 16
    kill_enrollments: int = 12
    burst: int = 20
    burst_queue: int = 4
    cli_photos: int = 40
    python: Path = Path(sys.executable)
    examples: Path = SHARED_EXAMPLES


@dataclass(frozen=True)
class Outcome:
    """One request: its kind, HTTP status (0: no answer), latency, error code and
    ``Retry-After`` if any."""

    kind: str
    status: int
    seconds: float
    error: str | None = None
    retry_after: str | None = None


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


@dataclass
class KillPhase:
    """The SIGKILL during enrollments and what the gallery held afterwards.

    ``statuses`` counts the burst's answers by HTTP status (``"0"``: none, the server died).
    """

    sent: int
    acknowledged: int
    statuses: dict[str, int]
    unanswered: int
    present_whole: int
    partial: list[str]
    lost_acknowledged: list[str]
    before_unchanged: bool
    integrity_problems: list[str]

    @property
    def intact(self) -> bool:
        """No problem found, nothing partial, nothing acknowledged lost, the rest unchanged."""
        return (not self.integrity_problems and not self.partial
                and not self.lost_acknowledged and self.before_unchanged)


@dataclass
class LoadReport:
    """One load session: the machine, the settings and each phase."""

    cpu: str
    cores: int
    loadavg_before: list[float]
    loadavg_after: list[float]
    config: dict[str, object]
    load: LoadPhase
    burst: BurstPhase
    cli: CliPhase
    kill: KillPhase
    kill_intact: bool = field(init=False)

    def __post_init__(self) -> None:
        self.kill_intact = self.kill.intact


def _multipart(fields: Sequence[tuple[str, Path]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, path in fields:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            .encode() + path.read_bytes() + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@dataclass
class Server:
    """A running ``facenet serve`` on loopback."""

    port: int
    process: subprocess.Popen[str]
    log: list[str]

    def call(self, method: str, path: str, files: Sequence[tuple[str, Path]] = ()
             ) -> tuple[int, dict[str, object], str | None]:
        """Send one request; return the status, the JSON body (``{}`` if none) and the
        ``Retry-After`` header."""
        body, ctype = _multipart(files) if files else (None, "")
        conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=REQUEST_TIMEOUT_S)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": ctype} if ctype else {})
            response = conn.getresponse()
            raw = response.read()
            retry_after = response.getheader("Retry-After")
        finally:
            conn.close()
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            payload = {}
        return response.status, payload if isinstance(payload, dict) else {}, retry_after

    def timed(self, kind: str, path: str, files: Sequence[tuple[str, Path]]) -> Outcome:
        """One POST, timed; a transport failure becomes status 0 with its exception's name."""
        start = time.perf_counter()
        try:
            status, payload, retry_after = self.call("POST", path, files)
        except (OSError, http.client.HTTPException) as exc:
            return Outcome(kind, 0, time.perf_counter() - start, type(exc).__name__)
        seconds = time.perf_counter() - start
        error = payload.get("error")
        code = str(error.get("code", status)) if isinstance(error, dict) else None
        return Outcome(kind, status, seconds, code if status >= 300 else None, retry_after)

    def people(self) -> dict[str, int]:
        """Name -> stored embeddings, from ``GET /v1/people``."""
        status, payload, _ = self.call("GET", "/v1/people")
        if status != 200:
            raise RuntimeError(f"GET /v1/people answered {status}: {payload}")
        listed = payload.get("people", [])
        assert isinstance(listed, list)
        return {str(p["name"]): int(p["embeddings"]) for p in listed}


@dataclass
class Launched:
    """A ``facenet serve`` process that reported the port it listens on, and its output."""

    port: int
    process: subprocess.Popen[str]
    log: list[str]


@contextlib.contextmanager
def launch_serve(command: Sequence[str], *, cwd: Path, env: Mapping[str, str],
                 start_timeout: float = START_TIMEOUT_S) -> Iterator[Launched]:
    """Run ``command`` (a ``facenet serve`` on 127.0.0.1, port 0 for any free one) and yield it
    once uvicorn reports its port; SIGTERM it afterwards unless it is gone (SIGKILL if it has not
    stopped 30 s later). Its output is collected into :attr:`Launched.log` as it comes.

    Raises:
        RuntimeError: it ended, or reported no port within ``start_timeout`` seconds (the message
            ends with its last lines of output).
    """
    process = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, cwd=cwd, env=dict(env))
    lines: list[str] = []
    found = threading.Event()
    port: list[int] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if not found.is_set() and (match := LISTENING.search(line)):
                port.append(int(match.group(1)))
                found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + start_timeout
    while not found.wait(0.2):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait(10)
            reader.join(5)
            raise RuntimeError("facenet serve did not start: " + "".join(lines[-20:]))
    try:
        yield Launched(port[0], process, lines)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        reader.join(5)


@contextlib.contextmanager
def serving(python: Path, artifacts: Path, gallery: Path, *options: str) -> Iterator[Server]:
    """Start ``facenet serve`` on 127.0.0.1 (port 0) with ``gallery``; stop it afterwards."""
    command = [str(python), "-m", "toolchain", "serve", "--artifacts", str(artifacts),
               "--gallery", str(gallery), "--host", LOOPBACK, "--port", "0", *options]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    with launch_serve(command, cwd=gallery.parent, env=env) as launched:
        yield Server(launched.port, launched.process, launched.log)


def _photos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)


def _people(examples: Path) -> dict[str, list[Path]]:
    return {d.name: _photos(d) for d in sorted((examples / "people").iterdir()) if d.is_dir()}


def _variant(photo: Path, tag: str, folder: Path) -> Path:
    """``photo``'s pixels (upright) as a PNG carrying ``tag``: new bytes, the same faces.

    The gallery skips a face whose image sha256 and box it already holds, so every enrollment
    of the session gets its own file to be a real write.
    """
    info = PngInfo()
    info.add_text("facenet-loadtest", tag)
    out = folder / f"{tag}-{photo.stem}.png"
    with Image.open(photo) as image:
        ImageOps.exif_transpose(image).convert("RGB").save(out, pnginfo=info)
    return out


def _percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _s(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds:.2f}"


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.0f} ms"


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

    Each enrollment adds a new file (:func:`_variant`) of a shared people photo to its person.
    """
    enroll_photos = [(name, photo) for name, paths in people.items() for photo in paths]
    plan: list[tuple[str, str, list[tuple[str, Path]]]] = []
    for i in range(config.requests):
        if i % config.enroll_every == config.enroll_every - 1:
            name, photo = enroll_photos[(i // config.enroll_every) % len(enroll_photos)]
            copy = _variant(photo, f"load-{i:05d}", scratch)
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
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
        return time.perf_counter() - start

    one = recognize(batch[:1])
    whole = recognize(batch)
    after_start = (count - 1) / (whole - one) if count > 1 and whole > one else None
    return CliPhase(photos=count, seconds=whole, one_photo_seconds=one,
                    photos_per_s=count / whole, photos_per_s_after_start=after_start)


def run_kill(config: LoadConfig, artifacts: Path, gallery: Path,
             people: dict[str, list[Path]], scratch: Path) -> KillPhase:
    """SIGKILL a server once a third of a burst of enrollments is acknowledged; check.

    Enrollment ``i`` stores two new files (:func:`_variant`) of one person's photos as
    ``kill-<i>``: afterwards that name holds two embeddings or is absent.
    """
    sources = [paths[:2] for paths in people.values() if len(paths) >= 2]
    pairs = [[_variant(p, f"kill-{i:03d}", scratch) for p in sources[i % len(sources)]]
             for i in range(config.kill_enrollments)]
    options = ("--workers", str(config.workers), "--queue", str(config.kill_enrollments))
    with serving(config.python, artifacts, gallery, *options) as server:
        before = server.people()
        enough = threading.Event()
        acknowledged: list[str] = []
        wanted = max(1, config.kill_enrollments // 3)

        def enroll(i: int) -> Outcome:
            name = f"kill-{i:03d}"
            outcome = server.timed("enroll", f"/v1/people/{name}/faces",
                                   [("image", p) for p in pairs[i]])
            if outcome.status == 201:
                acknowledged.append(name)
                if len(acknowledged) >= wanted:
                    enough.set()
            return outcome

        with ThreadPoolExecutor(config.kill_enrollments) as pool:
            futures = [pool.submit(enroll, i) for i in range(config.kill_enrollments)]
            deadline = time.monotonic() + REQUEST_TIMEOUT_S
            while not enough.wait(0.05) and time.monotonic() < deadline:
                if all(f.done() for f in futures):
                    break
            server.process.send_signal(signal.SIGKILL)
            server.process.wait(30)
            outcomes = [f.result() for f in futures]
    acked = set(acknowledged)
    problems = check_gallery_file(gallery, _model_fingerprint(artifacts))
    with serving(config.python, artifacts, gallery) as server:
        after = server.people()
    partial = sorted(n for n, count in after.items() if n.startswith("kill-") and count != 2)
    return KillPhase(
        sent=len(outcomes), acknowledged=len(acked),
        statuses=dict(Counter(str(o.status) for o in outcomes)),
        unanswered=sum(o.status == 0 for o in outcomes),
        present_whole=sum(n.startswith("kill-") and c == 2 for n, c in after.items()),
        partial=partial, lost_acknowledged=sorted(n for n in acked if after.get(n) != 2),
        before_unchanged=all(after.get(n) == c for n, c in before.items()),
        integrity_problems=problems)


def _model_fingerprint(artifacts: Path) -> str:
    model = Layout(artifacts).models_dir / ONNX_FILE
    return model_fingerprint(model, hashlib.sha256(model.read_bytes()).hexdigest())


def run_session(artifacts: Path, config: LoadConfig) -> LoadReport:
    """Start the server, enroll the shared people, then the load, CLI and kill phases."""
    model = Layout(artifacts).models_dir / ONNX_FILE
    if not model.is_file():
        raise MissingArtifactError(f"{model} missing: run `nox -s export` first")
    if not (config.examples / "people").is_dir() or not (config.examples / "photos").is_dir():
        raise MissingArtifactError(f"{config.examples} has no people/ and photos/: the shared "
                                   "examples belong next to the checkout")
    people = _people(config.examples)
    photos = _photos(config.examples / "photos")
    loadavg_before = [round(v, 2) for v in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="facenet-load-") as tmp:
        gallery = Path(tmp) / "gallery.db"
        options = ("--workers", str(config.workers), "--queue", str(config.queue))
        with serving(config.python, artifacts, gallery, *options) as server:
            for name, paths in people.items():
                status, payload, _ = server.call("POST", f"/v1/people/{name}/faces",
                                              [("image", p) for p in paths])
                if status != 201:
                    raise RuntimeError(f"enrolling {name} answered {status}: {payload}")
            log.info("load: %d clients, %d requests", config.clients, config.requests)
            load = run_load(server, config, people, photos, Path(tmp))
        log.info("burst: %d recognitions at once, --queue %d", config.burst, config.burst_queue)
        burst = run_burst(config, artifacts, gallery, photos)
        log.info("CLI: facenet recognize on %d photos", config.cli_photos)
        cli = run_cli(config.python, artifacts, gallery, photos, config.cli_photos)
        log.info("kill: SIGKILL during %d enrollments", config.kill_enrollments)
        kill = run_kill(config, artifacts, gallery, people, Path(tmp))
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}
    return LoadReport(cpu=cpu_model(), cores=os.cpu_count() or 0, loadavg_before=loadavg_before,
                      loadavg_after=[round(v, 2) for v in os.getloadavg()], config=settings,
                      load=load, burst=burst, cli=cli, kill=kill)


def markdown(report: LoadReport) -> str:
    """The report as Markdown (what the README quotes)."""
    load, burst, cli, kill = report.load, report.burst, report.cli, report.kill
    config = report.config
    other = ", ".join(f"{k}: {v}" for k, v in sorted(burst.other.items())) or "none"
    errors = ", ".join(f"{k}: {v}" for k, v in sorted(load.errors.items())) or "none"
    kinds = "\n".join(
        f"| {kind} | {int(v['count'] or 0)} | {_s(v['p50_s'])} | {_s(v['p95_s'])} |"
        for kind, v in load.by_kind.items())
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(kill.statuses.items()))
    lines = [
        "# facenet serve under load",
        "",
        f"{report.cpu}, {report.cores} cores, load average {report.loadavg_before[0]:.2f} "
        f"before, {report.loadavg_after[0]:.2f} after. Server on 127.0.0.1: "
        f"`--workers {config['workers']} --queue {config['queue']}`.",
        "",
        "## Load",
        "",
        f"{load.clients} concurrent clients, {load.requests} requests ({load.enrollments} "
        f"enrollments, the rest recognitions of the shared photos) in {load.seconds:.1f} s: "
        f"**{load.requests_per_s:.2f} requests/s**, p50 {_s(load.p50_s)} s, "
        f"p95 {_s(load.p95_s)} s, p99 {_s(load.p99_s)} s. {load.ok} answered 2xx, "
        f"{load.busy_503} got 503 (queue full); errors: {errors}.",
        "",
        "| request | answered | p50 s | p95 s |",
        "| --- | --- | --- | --- |",
        kinds,
        "",
        "## Burst beyond the queue",
        "",
        f"{burst.sent} recognitions released together against `--workers {burst.workers} "
        f"--queue {burst.queue}`: {burst.answered_200} answered 200, {burst.busy_503} got 503 "
        f"(Retry-After: {', '.join(burst.retry_after) or 'n/a'}; the slowest 503 in "
        f"{_ms(burst.slowest_503_s)}), other statuses: {other}; healthz and readyz afterwards: "
        f"{'200' if burst.healthy_after else 'NOT 200'}.",
        "",
        "## CLI batch on the same photos",
        "",
        f"`facenet recognize` on {cli.photos} photos: {cli.seconds:.1f} s, "
        f"**{cli.photos_per_s:.2f} photos/s** with the process start "
        f"({cli.one_photo_seconds:.1f} s for one photo), "
        f"{_s(cli.photos_per_s_after_start)} photos/s after it.",
        "",
        "## SIGKILL during enrollments",
        "",
        f"{kill.sent} simultaneous enrollments of two new photos each, the server SIGKILLed "
        f"once a third were acknowledged: {kill.acknowledged} acknowledged, "
        f"{kill.unanswered} unanswered (statuses {statuses}). Afterwards "
        f"{kill.present_whole} present whole, {len(kill.partial)} partial, "
        f"{len(kill.lost_acknowledged)} acknowledged but lost; the people enrolled before "
        f"{'unchanged' if kill.before_unchanged else 'CHANGED'}; integrity check: "
        f"{'; '.join(kill.integrity_problems) or 'no problem'}. "
        f"Gallery intact: **{'yes' if report.kill_intact else 'NO'}**.",
    ]
    return "\n".join(lines) + "\n"


def write_report(report: LoadReport, reports_dir: Path) -> list[Path]:
    """Write ``loadtest.json`` and ``loadtest.md`` atomically; return their paths."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    paths = [reports_dir / REPORT_JSON, reports_dir / REPORT_MD]
    atomic.write_json(paths[0], asdict(report))
    atomic.write_text(paths[1], markdown(report))
    return paths
