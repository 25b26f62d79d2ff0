"""``nox -s arm64``: the face pipeline on arm64 (Raspberry Pi OS 64-bit is Debian bookworm arm64)
under emulation, next to the same run on x86, and what a real Raspberry Pi should do.

- Root: bookworm arm64 ``minbase`` with ``python3``, downloaded and unpacked by debootstrap
  without running anything of it (:func:`~toolchain.deploy.host.debian_root`).
- Wheels: the arm64 lock (``requirements/runtime.txt`` + ``serve.txt``, the same versions as x86)
  installed into a folder by the host's pip (``--target --platform``), from hash-checked wheels.
- Emulation: ``qemu-aarch64-static`` runs the arm64 ``python3.11`` as one user process (no
  emulator is registered with the kernel) as a Raspberry Pi 4's Cortex-A72 (``-cpu``): code the
  board cannot run fails here too (onnxruntime 1.21.0's wheel, which died with SIGILL on Pi 4s,
  dies the same way under ``cortex-a72``; qemu's default ``max`` CPU runs it). The process sees a
  Pi's ``/proc/cpuinfo``, bind-mounted in a private mount namespace (``unshare``): qemu-user 7.2
  passes the x86 host's file through, and the CPU detection of onnxruntime >= 1.28 dereferences
  NULL on x86 text (SIGSEGV at import), which a Pi, with an ARM ``/proc/cpuinfo``, never shows.
- Runs, on both machines: ``facenet enroll`` of ``people/``, ``facenet recognize --json`` of
  ``photos/``, and some parity reference crops (the first of each person in each split)
  embedded with the fp32 and the int8 model (:mod:`toolchain.deploy.probe`); the int8 crops
  also as a Raspberry Pi 5 (Cortex-A76: its dot-product instructions take another int8 path).
- Checks: the same names on every photo; fp32 embeddings within the fp32 parity tolerance of
  x86's (max abs 1e-5); int8 within the int8 format's tolerance of x86 int8 and of x86 fp32.
- Report ``<reports>/arm64.json``: the emulated seconds, marked as emulation (not a board's
  speed), and the expected Raspberry Pi 4/5 speed estimated from published ONNX Runtime numbers.

Standard library only (and ``toolchain.core``): it runs in the Python that runs nox.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from toolchain.core import contracts
from toolchain.core.atomic import sha256_file, write_json, write_text
from toolchain.core.boxes import Box, box_from_dict
from toolchain.core.integrity.sums import record_files
from toolchain.core.paths import Layout
from toolchain.deploy import host
from toolchain.deploy.host import DeployError, Log
from toolchain.deploy.pi import PI4, PI5, Board, estimate

TOOLS = ("debootstrap", "dpkg-deb", "qemu-aarch64-static", "unshare")
ARCH = "arm64"
REPORT = "arm64.json"
MODELS = (contracts.ONNX_FILE, contracts.ONNX_INT8_FILE, *contracts.MTCNN_FILES.values())
"""The runtime models both machines run (the fp32 and int8 FaceNet, the three MTCNN stages)."""
BOX_NOTE = ("a box may differ by a few pixels (and so the crop, its embedding and the distances "
            "to it) where P-Net gives several proposals the same score (it saturates at 1.0 in "
            "float32): numpy's argsort, which orders them before NMS, puts equal values in "
            "another order on aarch64 than on x86_64 (numpy 2.4.6 on both), and NMS keeps the "
            "first; the crops embedded from the same pixels agree within the fp32 bound")
"""Why ``recognize`` can show other boxes on aarch64 with the same names (measured on the
shared photos: 32bit.png, 10 px)."""


@dataclass(frozen=True)
class Scope:
    """How much of the shared photos and reference crops both machines run."""

    people: tuple[str, ...] | None = None
    """Enrolled from ``people/<name>/`` (None: every folder of ``people/``)."""
    photos: tuple[str, ...] | None = None
    """Recognized from ``photos/`` (None: the whole folder)."""
    crops: int | None = None
    """The first this many of :func:`probe_rows` (None: all of them)."""


FULL = Scope()
QUICK = Scope(people=("obama", "biden"), photos=("obama1.jpg", "obama_and_biden.jpg"), crops=2)
"""The tests' run: two people, two photos (one with both), two crops; minutes, not ten."""


def probe_rows(reference: Path) -> list[int]:
    """The first reference crop of each person in each split (every person, both splits)."""
    index = json.loads((reference / contracts.REFERENCE_INDEX).read_text(encoding="utf-8"))
    first: dict[tuple[str, str], int] = {}
    for photo in index["photos"]:
        if photo.get("row") is not None:
            key = (photo["split"], photo["person"])
            first[key] = min(first.get(key, photo["row"]), photo["row"])
    return sorted(first.values())


def stage_models(artifacts: Path, dest: Path) -> Path:
    """An artifacts folder of its own for one machine: hard links to the runtime models (each
    machine caches its optimized graphs next to them, never in ``artifacts``)."""
    models = dest / "models"
    models.mkdir(parents=True, exist_ok=True)
    for name in MODELS:
        origin, target = artifacts / "models" / name, models / name
        if not origin.is_file():
            raise DeployError(f"{origin} missing: run `nox -s export`")
        if not target.is_file() or sha256_file(target) != sha256_file(origin):
            target.unlink(missing_ok=True)
            try:
                os.link(origin, target)
            except OSError:
                target.write_bytes(origin.read_bytes())
    return dest


def install_site(root: Path, cache: Path, log: Log) -> Path:
    """The arm64 lock's packages unpacked into a folder (``pip install --target --platform``
    on the host, offline from the hash-checked wheels), redone only when the lock changes."""
    wheels = host.fetch_wheels(root, ARCH, cache, log)
    lock = host.current_lock(root, ARCH)
    site = cache / f"site-{ARCH}"
    stamp = cache / f"site-{ARCH}.lock-sha256"
    if site.is_dir() and stamp.is_file() and stamp.read_text() == sha256_file(lock):
        return site
    log(f"installing {lock.relative_to(root)} into {site}")
    host.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--find-links",
              wheels, "--require-hashes", "-r", lock, "--target", site, "--upgrade",
              *host.wheel_target(ARCH)], timeout=1800)
    write_text(stamp, sha256_file(lock))
    return site


@dataclass(frozen=True)
class Machine:
    """How to run ``python -m ...`` on one machine, and its own artifacts folder."""

    label: str
    command: tuple[str, ...]
    env: dict[str, str]
    artifacts: Path

    def python(self, *args: str | Path, timeout: float = 7200.0) -> str:
        return host.run([*self.command, *(str(a) for a in args)], env=self.env,
                        timeout=timeout)


def emulated(board: Board, rootfs: Path, site: Path, root: Path, work: Path,
             artifacts: Path) -> Machine:
    """The arm64 Python under qemu as ``board``, seeing the board's ``/proc/cpuinfo``."""
    cpuinfo = work / f"cpuinfo-{board.cpu}"
    write_text(cpuinfo, board.cpuinfo(os.cpu_count() or 1))
    command = ("unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
               'mount --bind "$0" /proc/cpuinfo && exec "$@"', str(cpuinfo),
               "qemu-aarch64-static", "-cpu", board.cpu, "-L", str(rootfs),
               str(rootfs / "usr" / "bin" / f"python{host.PYTHON}"))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
           "HOME": os.environ.get("HOME", "/root"), "PYTHONNOUSERSITE": "1",
           "PYTHONPATH": f"{root}{os.pathsep}{site}"}
    return Machine(f"aarch64 emulated ({board.cpu}, {board.name})", command, env, artifacts)


def native(python: Path, root: Path, artifacts: Path) -> Machine:
    """This machine's runtime environment (``python``), running this checkout's code."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return Machine(f"x86_64 native ({python})", (str(python),), env, artifacts)


def pipeline(machine: Machine, shared: Path, reference: Path, rows: Sequence[int],
             work: Path, models: Sequence[str], scope: Scope | None,
             timings: host.Timings) -> dict[str, Any]:
    """Enroll and recognize the ``scope``'s people and photos (none without a scope), then
    embed the reference ``rows`` with each of ``models``; each step timed as ``<label>: <step>``.
    """
    work.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"machine": machine.label}
    art: list[str | Path] = ["--artifacts", machine.artifacts]
    if scope is not None:
        gallery: list[str | Path] = ["--gallery", work / "gallery.db"]
        for stale in work.glob("gallery.db*"):
            stale.unlink()
        people, photos = shared / "people", shared / "photos"
        with timings.step(f"{machine.label}: enroll people/"):
            if scope.people is None:
                machine.python("-m", "toolchain", "enroll", people, *gallery, *art)
            for person in scope.people or ():
                machine.python("-m", "toolchain", "enroll", "--name", person,
                               *sorted((people / person).iterdir()), *gallery, *art)
        queries = [photos] if scope.photos is None else [photos / p for p in scope.photos]
        with timings.step(f"{machine.label}: recognize photos/"):
            out["recognize"] = json.loads(machine.python(
                "-m", "toolchain", "recognize", *queries, "--json", *gallery, *art))
    for model in models:
        target = work / f"{model}.json"
        with timings.step(f"{machine.label}: embed {len(rows)} crops, {model}"):
            machine.python("-m", "toolchain.deploy.probe", machine.artifacts / "models" / model,
                           reference / contracts.REFERENCE_NPZ, ",".join(map(str, rows)),
                           target)
        out[model] = json.loads(target.read_text(encoding="utf-8"))
    return out


def emulation_key(root: Path, artifacts: Path, shared: Path, lock: Path, board: Board,
                  scope: Scope | None, rows: Sequence[int], models: Sequence[str]) -> str:
    """sha256 of everything an emulated run's result depends on: the code it runs (``toolchain``
    but the benchmarks, the service and the host side of ``deploy``), the models, the locked
    wheels, the emulator, the board, the shared photos and what is run of them."""
    digest = hashlib.sha256()
    skipped = {"bench", "service"}
    host_side = {"host.py", "running.py", "container.py", "arm64.py"}
    for path in sorted((root / "toolchain").rglob("*.py")):
        rel = path.relative_to(root / "toolchain").parts
        if rel[0] in skipped or (rel[0] == "deploy" and rel[-1] in host_side):
            continue
        digest.update(f"{'/'.join(rel)}\0{sha256_file(path)}\n".encode())
    files = [artifacts / "models" / m for m in MODELS] + [lock]
    files += sorted(p for p in (shared / "people").rglob("*") if p.is_file())
    files += sorted(p for p in (shared / "photos").rglob("*") if p.is_file())
    for path in files:
        digest.update(f"{path.name}\0{sha256_file(path)}\n".encode())
    setting = {"board": asdict(board), "scope": None if scope is None else asdict(scope),
               "rows": list(rows), "models": list(models),
               "emulator": host.run(["qemu-aarch64-static", "--version"]).splitlines()[0]}
    digest.update(json.dumps(setting, sort_keys=True).encode())
    return digest.hexdigest()


def emulate(machine: Machine, key: str, reuse: bool, work: Path,
            run: Callable[[host.Timings], dict[str, Any]], timings: host.Timings,
            log: Log) -> tuple[dict[str, Any], bool]:
    """An emulated run's result: the one kept from an earlier run with the same :func:`key
    <emulation_key>` when ``reuse`` (its seconds are the ones measured then), else ``run``'s."""
    saved = work / f"emulated-{key[:24]}.json"
    if reuse and saved.is_file():
        record = json.loads(saved.read_text(encoding="utf-8"))
        if record.get("key") == key:
            timings.seconds.update(record["seconds"])
            return record["result"], True
    log(f"running on {machine.label} (minutes: qemu translates every instruction)")
    own = host.Timings()
    result = run(own)
    timings.seconds.update(own.seconds)
    write_json(saved, {"key": key, "machine": machine.label, "seconds": own.seconds,
                       "result": result})
    return result, False


def difference(a: list[list[float]], b: list[list[float]]) -> dict[str, float]:
    """Largest absolute element difference and smallest row cosine of two embedding lists."""
    max_abs = max(abs(x - y) for row_a, row_b in zip(a, b, strict=True)
                  for x, y in zip(row_a, row_b, strict=True))
    cosines = [sum(x * y for x, y in zip(ra, rb, strict=True))
               / math.sqrt(sum(x * x for x in ra) * sum(y * y for y in rb))
               for ra, rb in zip(a, b, strict=True)]
    return {"max_abs": max_abs, "min_cos": min(cosines)}


def within(diff: dict[str, float], tolerance: dict[str, float | None]) -> bool:
    """Whether ``diff`` holds to a parity ``tolerance``."""
    limit = tolerance["max_abs"]
    return (limit is None or diff["max_abs"] <= limit) and diff["min_cos"] >= (
        tolerance["min_cos"] or 0.0)


def box_of(face: dict[str, Any]) -> Box:
    """The ``(x, y, width, height)`` of a face of ``recognize --json``."""
    return box_from_dict(face["box"])


def faces_by_photo(result: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """A ``recognize --json`` answer as photo name -> its faces, left to right."""
    return {Path(r["file"]).name: sorted(r["faces"] or [], key=box_of)
            for r in result["results"]}


def compare_recognitions(x86: dict[str, Any], arm: dict[str, Any]) -> dict[str, Any]:
    """Names, distances and boxes of two ``recognize --json`` runs over the same photos."""
    a, b = faces_by_photo(x86), faces_by_photo(arm)
    differences = [photo for photo in sorted(a) if [f["label"] for f in a[photo]]
                   != [f["label"] for f in b.get(photo, [])]]
    moved = {}
    for photo in sorted(set(a) - set(differences)):
        box = max((abs(x - y) for fa, fb in zip(a[photo], b[photo], strict=True)
                   for x, y in zip(box_of(fa), box_of(fb), strict=True)), default=0.0)
        distance = max((abs((fa["distance"] or 0) - (fb["distance"] or 0))
                        for fa, fb in zip(a[photo], b[photo], strict=True)), default=0.0)
        if box or distance > 1e-5:
            moved[photo] = {"max_box_diff_px": box, "max_distance_diff": distance}
    return {
        "photos": len(a), "faces": sum(len(f) for f in a.values()),
        "names": {photo: [f["label"] for f in faces] for photo, faces in sorted(a.items())},
        "photos_named_differently": differences,
        "max_distance_diff": max((m["max_distance_diff"] for m in moved.values()), default=0.0),
        "max_box_diff_px": max((m["max_box_diff_px"] for m in moved.values()), default=0.0),
        "photos_with_other_boxes_or_distances": moved,
    }


def compare_embeddings(x86: dict[str, Any], arm: dict[str, Any], model: str) -> dict[str, Any]:
    """One model's crops on arm64 against x86 (same model), and an int8 model also against
    x86's run of its parent format (the fp32 model), each with the format's parity tolerance."""
    mine, theirs = arm[model], x86[model]
    tolerance = theirs["tolerance"]
    diff = difference(mine["embeddings"], theirs["embeddings"])
    out = {"format": theirs["format"], "tolerance": tolerance, "vs_x86": diff,
           "ok": within(diff, tolerance), "onnxruntime": mine["onnxruntime"]}
    parent = next((m for m in x86 if isinstance(x86[m], dict)
                   and x86[m].get("format") == theirs["parent"]), None)
    if parent is not None and parent != model:
        to_parent = difference(mine["embeddings"], x86[parent]["embeddings"])
        x86_to_parent = difference(theirs["embeddings"], x86[parent]["embeddings"])
        out.update(vs_x86_parent=to_parent, x86_vs_x86_parent=x86_to_parent,
                   ok=out["ok"] and within(to_parent, tolerance))
    return out


def main(root: Path, artifacts: Path, shared: Path, cache: Path, reports: Path,
         x86_python: Path, log: Log = print, scope: Scope = FULL,
         reuse: bool = True) -> dict[str, Any]:
    """Prepare the emulated arm64 Python, run both machines, compare, write ``arm64.json``.

    Args:
        root: the checkout (its code runs on both machines; the arm64 lock).
        artifacts: the main job's artifacts (models, parity reference crops), only read.
        shared: the shared example photos (``people/``, ``photos/``).
        cache: where the slow steps' results are kept (e.g. ``.nox/deploy``).
        reports: where ``arm64.json`` goes.
        x86_python: the runtime environment's Python (the x86 side of every comparison).
        scope: how much to run (:data:`FULL`; the tests run :data:`QUICK`).
        reuse: take an emulated run's result from an earlier run with exactly the same inputs
            (:func:`emulation_key`) instead of emulating again; the x86 side always runs.

    Raises:
        DeployError: a tool is missing or failed, or a check does not hold (one line).
    """
    # podman records its store's absolute path: a cache reached through a symbolic link
    # elsewhere would be another store to it
    root, artifacts, cache = root.resolve(), artifacts.resolve(), cache.resolve()
    timings = host.prepare(shared, TOOLS, "the arm64 root file system and its /proc/cpuinfo", log)
    with timings.step("debootstrap arm64"):
        rootfs = host.debian_root(cache, ARCH, ("python3",), log)
    with timings.step("wheels arm64"):
        site = install_site(root, cache, log)
    reference = artifacts / "reference"
    rows = probe_rows(reference)[: scope.crops]
    work = cache / "arm64-run"
    fp32, int8 = contracts.ONNX_FILE, contracts.ONNX_INT8_FILE
    x86 = pipeline(native(x86_python, root, stage_models(artifacts, work / "x86-artifacts")),
                   shared, reference, rows, work / "x86", (fp32, int8), scope, timings)
    lock = host.current_lock(root, ARCH)
    results, reused = {}, {}
    for board, models, what in ((PI4, (fp32, int8), scope), (PI5, (int8,), None)):
        machine = emulated(board, rootfs, site, root, work,
                           stage_models(artifacts, work / f"{board.cpu}-artifacts"))
        key = emulation_key(root, artifacts, shared, lock, board, what, rows, models)
        results[board], reused[board.cpu] = emulate(
            machine, key, reuse, work,
            partial(pipeline, machine, shared, reference, rows, work / board.cpu, models, what),
            timings, log)
    pi4, pi5 = results[PI4], results[PI5]
    recognitions = compare_recognitions(x86["recognize"], pi4["recognize"])
    embeddings = {f"{PI4.cpu} {fp32}": compare_embeddings(x86, pi4, fp32),
                  f"{PI4.cpu} {int8}": compare_embeddings(x86, pi4, int8),
                  f"{PI5.cpu} {int8}": compare_embeddings(x86, pi5, int8)}
    problems = [f"{photo}: named differently on aarch64"
                for photo in recognitions["photos_named_differently"]]
    problems += [f"{name}: outside its parity tolerance of x86"
                 for name, result in embeddings.items() if not result["ok"]]
    report = {
        "target": "Raspberry Pi OS 64-bit (Debian bookworm arm64), CPython "
                  f"{host.PYTHON}, {host.lock_path(root, ARCH).relative_to(root).as_posix()}",
        "runs_on_aarch64": not problems,
        "emulator": host.run(["qemu-aarch64-static", "--version"]).splitlines()[0],
        "boards_emulated": {b.cpu: b.name for b in (PI4, PI5)},
        "onnxruntime": {"x86_64": x86[fp32]["onnxruntime"], "aarch64": pi4[fp32]["onnxruntime"]},
        "scope": asdict(scope),
        "crops": {"rows": rows, "of": contracts.REFERENCE_NPZ,
                  "rule": "the first crop of each person in each split"},
        "recognize": recognitions, "recognize_note": BOX_NOTE, "embeddings": embeddings,
        "seconds": timings.seconds,
        "seconds_note": "aarch64 seconds are EMULATION (qemu-user on this x86 host, every "
                        "instruction translated): they are not a Raspberry Pi's speed; see "
                        "expected_raspberry_pi",
        "emulation_reused": reused,
        "expected_raspberry_pi": estimate(),
        "problems": problems,
    }
    path = reports / REPORT
    write_json(path, report)
    layout = Layout(artifacts)
    if path.parent.resolve() == layout.reports_dir.resolve():
        record_files(layout, [path])
    if problems:
        raise DeployError("arm64 check failed: " + "; ".join(problems))
    return report
