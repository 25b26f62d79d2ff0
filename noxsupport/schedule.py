"""How the nox sessions run their steps: the one place that schedules them.

A job is a list of :class:`Step`, each naming the steps it needs and the environments it runs
in. :func:`run_job` builds every environment the steps name at once (:mod:`noxsupport.envs`),
then starts each step as soon as its needs are done and its environments are built, at most
``slots`` steps at a time (the machine's cores: the steps are CPU-bound), earlier steps of the
list first. A step's commands write to its own log (``.nox/logs/<step>.log``), printed whole
when the step ends, so the output of steps that ran side by side never interleaves.

Every step's wall time is logged as it ends (``[time] export-onnx: 41.2 s``) and the timeline
(each environment and step: start, seconds) is returned for the job's report. A failed step
stops the job: no new step starts, the running ones finish, and the failure is raised.

Commands inside a step go through :func:`run`: in a scheduled step it runs the command with
the step's log as its output; called outside a job (a single-step session) it is
``session.run``, as before.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from noxsupport import envs


@dataclass(frozen=True)
class Step:
    """One step of a job.

    Attributes:
        name: its name in logs and in the job's report.
        run: what it does (its commands go through :func:`run`).
        needs: steps that must have ended before it starts.
        envs: environments it runs in (built before it starts).
    """

    name: str
    run: Callable[[], None]
    needs: tuple[str, ...] = ()
    envs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Span:
    """When something of the job ran: seconds from the job's start, and for how long."""

    name: str
    kind: str
    """``environment`` or ``step``."""
    start: float
    seconds: float
    detail: str = ""


class StepFailed(RuntimeError):
    """A command of a scheduled step failed (the message names it and the step's log)."""


_step = threading.local()
"""The log file of the step the current thread runs (none outside a job)."""


def run(session: Any, *args: str, env: Mapping[str, str] | None = None,
        stdout: IO[str] | None = None, success_codes: Sequence[int] = (0,),
        silent: bool = False) -> str | None:
    """Run a command of a step: into the step's log inside a job, else ``session.run``.

    Returns:
        The command's output when ``silent`` (as ``session.run`` does), else ``None``.

    Raises:
        StepFailed: inside a job, the command exited with a code not in ``success_codes``.
    """
    log: IO[str] | None = getattr(_step, "log", None)
    if log is None:
        out = session.run(*args, external=True, env=dict(env or {}), stdout=stdout,
                          success_codes=list(success_codes), silent=silent)
        return out if isinstance(out, str) else None
    log.write(f"$ {shlex.join(args)}\n")
    log.flush()
    proc = subprocess.run(args, stdout=subprocess.PIPE if silent else (stdout or log),
                          stderr=log, text=True, check=False, env={**os.environ, **(env or {})})
    if proc.returncode not in success_codes:
        raise StepFailed(f"{shlex.join(args[:3])}... exited with {proc.returncode}")
    return proc.stdout if silent else None


@dataclass
class _Job:
    steps: Sequence[Step]
    specs: Mapping[str, envs.Env]
    env_dir: Path
    root: Path
    logs: Path
    slots: int
    echo: Callable[[str], None]
    spans: list[Span] = field(default_factory=list)
    start: float = field(default_factory=time.perf_counter)
    built: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)

    def now(self) -> float:
        return time.perf_counter() - self.start

    def build(self, name: str) -> None:
        started = self.now()
        result = envs.ensure(name, self.specs[name], self.env_dir, self.root)
        detail = (f"built with {result.installer}" if result.built else "current")
        self.spans.append(Span(name, "environment", round(started, 1),
                               round(self.now() - started, 1), detail))
        self.echo(f"[time] {name} environment: {self.now() - started:.1f} s ({detail})")

    def step(self, step: Step) -> None:
        started = self.now()
        self.logs.mkdir(parents=True, exist_ok=True)
        path = self.logs / f"{step.name}.log"
        ok = False
        with path.open("w", encoding="utf-8") as log:
            _step.log = log
            try:
                step.run()
                ok = True
            except Exception as exc:  # any failure of a step stops the job; say which
                log.write(f"{type(exc).__name__}: {exc}\n")
                self.failures.append(f"{step.name}: {exc} (log: {path})")
            finally:
                _step.log = None
        seconds = self.now() - started
        text = path.read_text(encoding="utf-8", errors="replace")
        print(f"----- {step.name} ({seconds:.1f} s, {path}) -----\n{text}", end="", flush=True)
        self.spans.append(Span(step.name, "step", round(started, 1), round(seconds, 1),
                               "" if ok else "failed"))
        self.echo(f"[time] {step.name}: {seconds:.1f} s" + ("" if ok else " (failed)"))

    def ready(self, step: Step) -> bool:
        return set(step.needs) <= self.done and set(step.envs) <= self.built

    def run(self) -> list[Span]:
        env_names = list(dict.fromkeys(e for s in self.steps for e in s.envs))
        waiting = list(self.steps)
        running: dict[Future[None], str] = {}
        busy = 0
        with ThreadPoolExecutor(max_workers=len(env_names) + self.slots) as pool:
            for name in env_names:
                running[pool.submit(self.build, name)] = f"env:{name}"
            while True:
                while not self.failures and busy < self.slots:
                    step = next((s for s in waiting if self.ready(s)), None)
                    if step is None:
                        break
                    waiting.remove(step)
                    running[pool.submit(self.step, step)] = step.name
                    busy += 1
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    name = running.pop(future)
                    error = future.exception()
                    if name.startswith("env:"):
                        if error is None:
                            self.built.add(name[4:])
                        else:
                            self.failures.append(str(error))
                    else:
                        busy -= 1
                        if not any(f.startswith(f"{name}:") for f in self.failures):
                            self.done.add(name)
        if self.failures:
            raise StepFailed("; ".join(self.failures))
        if waiting:
            raise StepFailed("steps never ready (unknown needs?): "
                             + ", ".join(s.name for s in waiting))
        return self.spans


def run_job(steps: Sequence[Step], specs: Mapping[str, envs.Env], env_dir: Path, root: Path,
            logs: Path, echo: Callable[[str], None], slots: int | None = None) -> list[Span]:
    """Run ``steps`` (see the module docstring); return the timeline of environments and steps.

    Raises:
        StepFailed: a step or an environment failed, or a step's needs can never be met.
    """
    job = _Job(steps, specs, env_dir, root, logs, slots or os.cpu_count() or 1, echo)
    return job.run()


def _cache_mb(folder: Path | None) -> float | None:
    """Megabytes under ``folder`` (``None`` when it cannot be named)."""
    if folder is None:
        return None
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return round(total / 1e6, 1)


def _package_cache() -> Path | None:
    """The installer's download cache: uv's (``uv cache dir``) or pip's (``pip cache dir``)."""
    uv = envs.uv_binary()
    command = [uv, "cache", "dir"] if uv else [sys.executable, "-m", "pip", "cache", "dir"]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    text = proc.stdout.strip()
    return Path(text) if proc.returncode == 0 and text else None


@dataclass
class JobReport:
    """What the job's report says about the conditions it ran in, taken at its start."""

    started: float
    wall_start: float
    load_before: list[float]
    cache: Path | None
    cache_mb_before: float | None
    envs_before: list[str]
    artifacts_before: list[str]

    @classmethod
    def start(cls, env_dir: Path, artifacts: Path) -> JobReport:
        """Record the clock, the load, how full the package cache is and what already exists."""
        cache = _package_cache()
        return cls(
            started=time.time(), wall_start=time.perf_counter(),
            load_before=[round(v, 2) for v in os.getloadavg()], cache=cache,
            cache_mb_before=_cache_mb(cache),
            envs_before=sorted(p.parent.name for p in env_dir.glob(f"*/{envs.STAMP}")),
            artifacts_before=sorted(p.name for p in artifacts.iterdir()
                                    if not p.name.startswith(".") and p.name != "README.md")
            if artifacts.is_dir() else [])

    def finish(self, spans: Sequence[Span], path: Path) -> dict[str, Any]:
        """Write the report to ``path`` (atomically) and return it."""
        from toolchain.core.atomic import write_json
        from toolchain.core.machine import cpu_model, isa

        seconds = round(time.perf_counter() - self.wall_start, 1)
        steps = [s for s in spans if s.kind == "step"]
        report: dict[str, Any] = {
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "seconds": seconds,
            "summary": ", ".join(f"{s.name} {s.seconds:.0f} s" for s in steps),
            "installer": envs.installer_name(),
            "python": sys.version.split()[0],
            "cold": {
                "package_cache": str(self.cache) if self.cache else None,
                "package_cache_mb_before": self.cache_mb_before,
                "environments_before": self.envs_before,
                "artifacts_before": self.artifacts_before,
            },
            "machine": {"cpu": cpu_model(), "features": isa(), "cores": os.cpu_count() or 1},
            "loadavg_before": self.load_before,
            "loadavg_after": [round(v, 2) for v in os.getloadavg()],
            "spans": [asdict(s) for s in spans],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, report)
        return report
