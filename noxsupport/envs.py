"""How the nox sessions build their environments: the one place that creates and updates them.

Each environment is a virtualenv under ``.nox/_envs/<name>`` built from its pinned requirement
files (``ENV_SPECS`` in the noxfile) and stamped with their digest; it is rebuilt only when a
requirement file or ``pyproject.toml`` changes.

The installer is nox's uv backend when it is there (``python3 -m pip install "nox[uv]"`` puts
the ``uv`` binary next to nox; nox itself finds it with :func:`nox.virtualenv.find_uv`), else pip.
uv resolves all requirement files of an environment in one pass, downloads in parallel and
links files from its cache; pip installs them one file after the other.

uv does not read pip's configuration. So that both install the same pins from the same places,
the index settings pip would use here (``pip config list``: the machine's and the user's files
and ``PIP_*`` variables) are passed to uv as options: ``index-url``, ``extra-index-url``,
``find-links``, ``constraint`` and ``no-index`` map one to one, ``cert`` becomes
``SSL_CERT_FILE``; and uv picks the best matching version over all indexes as pip does
(``--index-strategy unsafe-best-match``) rather than the first index that knows a name. Settings
of uv's own (``UV_*`` variables, ``uv.toml``) apply on top.

Builds log to ``.nox/_envs/<name>.log`` and never print on success, so several can run at once
(:func:`build_all`, threads: the work is downloads and file copies); a failed build prints its
log's tail and raises :class:`BuildFailed`.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

STAMP = ".requirements.sha256"
"""The file in an environment holding the digest it was built from."""

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


@dataclass(frozen=True)
class Env:
    """How one environment is built: pinned requirement files, then (maybe) this project."""

    requirements: tuple[Path, ...]
    no_deps: tuple[Path, ...] = ()
    """Installed with ``--no-deps`` after ``requirements`` (a package whose declared dependency
    is replaced by a prebuilt wheel in ``requirements``)."""
    project: bool = True
    """Install this project (editable, ``--no-deps``) into the environment."""
    compile_bytecode: bool = False
    """Compile every installed module and this project's package to bytecode while building, as
    ``pip install`` does and uv does not by default: a process that may not write bytecode
    (``PYTHONDONTWRITEBYTECODE``, a read-only environment) otherwise compiles every module it
    imports at every start (measured: 1.6 s instead of 2.4 s for ``facenet recognize one.jpg``
    on the loaded 2-core machine; about 12 s more to build the runtime environment)."""


class BuildFailed(RuntimeError):
    """An environment could not be built (the message names it and its log)."""


@dataclass(frozen=True)
class Built:
    """What :func:`ensure` did for one environment."""

    name: str
    bin_dir: Path
    seconds: float
    built: bool
    """False when the environment was current (nothing installed)."""
    installer: str


@cache
def uv_binary() -> str | None:
    """The uv binary nox's uv backend uses, or ``None`` (then pip builds the environments)."""
    if os.environ.get("FACENET_INSTALLER", "") == "pip":
        return None
    try:
        from nox.virtualenv import find_uv
    except ImportError:  # nox without its uv support: look on PATH
        return shutil.which("uv")
    found, binary, _ = find_uv()
    return binary if found else None


def installer_name() -> str:
    """``uv X.Y.Z`` or ``pip`` (which builds the environments here), for logs and reports."""
    uv = uv_binary()
    if uv is None:
        return "pip"
    out = subprocess.run([uv, "--version"], capture_output=True, text=True, check=False)
    return " ".join(out.stdout.split()[:2]) or "uv"


OPTION_MAP = {"index-url": "--index-url", "extra-index-url": "--extra-index-url",
              "find-links": "--find-links", "constraint": "--constraint"}
"""pip configuration keys and the uv option each becomes (values split on whitespace)."""


@cache
def pip_settings() -> dict[str, str]:
    """pip's effective settings (``pip config list`` of nox's Python), by key, last one wins;
    empty when pip cannot say."""
    proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                          text=True, check=False)
    settings: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        scope_key, sep, value = line.partition("=")
        if not sep or "." not in scope_key:
            continue
        scope, key = scope_key.rsplit(".", 1)
        if scope in (":env:", "global", "install"):
            settings[key] = " ".join(shlex.split(value))
    return settings


def uv_index_options(settings: Mapping[str, str]) -> list[str]:
    """The uv options that reach the indexes, links and constraints of pip's ``settings``."""
    options = ["--index-strategy", "unsafe-best-match"]
    for key, flag in OPTION_MAP.items():
        for value in settings.get(key, "").split():
            options += [flag, value]
    if settings.get("no-index", "").lower() in ("1", "true", "yes", "on"):
        options.append("--no-index")
    return options


def _digest(spec: Env, pyproject: Path) -> str:
    digest = hashlib.sha256()
    for req in [*spec.requirements, *spec.no_deps, pyproject]:
        digest.update(req.read_bytes())
    if spec.compile_bytecode:  # only then: the other environments' stamps stay as they were
        digest.update(b"compile-bytecode")
    return digest.hexdigest()


def _commands(venv: Path, spec: Env, root: Path) -> tuple[list[list[str]], dict[str, str]]:
    """The commands that build ``venv`` from ``spec`` with uv or pip, and their environment."""
    python = str(venv / "bin" / "python")
    uv = uv_binary()
    if uv is None:
        pip = [python, "-m", "pip", "--disable-pip-version-check", "-q"]
        commands = [[sys.executable, "-m", "venv", str(venv)],
                    [*pip, "install", "--upgrade", "pip"],
                    *([*pip, "install", "-r", str(req)] for req in spec.requirements),
                    *([*pip, "install", "--no-deps", "-r", str(req)] for req in spec.no_deps)]
        if spec.project:
            commands.append([*pip, "install", "--no-deps", "-e", str(root)])
        return [*commands, *_compile_project(python, spec, root)], {}
    settings = pip_settings()
    install = [uv, "pip", "install", "--python", python, *uv_index_options(settings),
               *(["--compile-bytecode"] if spec.compile_bytecode else [])]
    # --seed: pip in the environment too (`facenet model fetch` downloads with it).
    commands = [[uv, "venv", "--quiet", "--seed", "--python", sys.executable, str(venv)],
                [*install, *(a for req in spec.requirements for a in ("-r", str(req)))]]
    if spec.no_deps:
        commands.append([*install, "--no-deps",
                         *(a for req in spec.no_deps for a in ("-r", str(req)))])
    if spec.project:
        commands.append([*install, "--no-deps", "-e", str(root)])
    env = {"SSL_CERT_FILE": settings["cert"]} if settings.get("cert") else {}
    return [*commands, *_compile_project(python, spec, root)], env


def _compile_project(python: str, spec: Env, root: Path) -> list[list[str]]:
    """The command that compiles this project's package (an editable install is not compiled by
    the installer), when ``spec`` asks for bytecode."""
    if not (spec.compile_bytecode and spec.project):
        return []
    return [[python, "-m", "compileall", "-q", str(root / "toolchain")]]


def ensure(name: str, spec: Env, envs: Path, root: Path) -> Built:
    """Make environment ``name`` current: nothing when its stamp matches the requirements'
    digest, else build it afresh (output to ``<envs>/<name>.log``).

    Raises:
        BuildFailed: an install command failed (its log's tail is in the message).
    """
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(name, threading.Lock())
    with lock:  # a step asking for an environment another thread is building waits for it
        return _ensure(name, spec, envs, root)


def _ensure(name: str, spec: Env, envs: Path, root: Path) -> Built:
    venv = envs / name
    stamp = venv / STAMP
    wanted = _digest(spec, root / "pyproject.toml")
    start = time.perf_counter()
    if stamp.is_file() and stamp.read_text() == wanted:
        return Built(name, venv / "bin", 0.0, False, "")
    shutil.rmtree(venv, ignore_errors=True)
    envs.mkdir(parents=True, exist_ok=True)
    log = envs / f"{name}.log"
    commands, extra = _commands(venv, spec, root)
    with log.open("w", encoding="utf-8") as out:
        for command in commands:
            out.write("$ " + shlex.join(command) + "\n")
            out.flush()
            proc = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False,
                                  env={**os.environ, **extra})
            if proc.returncode != 0:
                tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
                raise BuildFailed(f"building the {name} environment failed (exit "
                                  f"{proc.returncode}; {log}):\n" + "\n".join(tail))
    stamp.write_text(wanted)
    return Built(name, venv / "bin", time.perf_counter() - start, True, installer_name())


def build_all(specs: Mapping[str, Env], names: Iterable[str], envs: Path, root: Path,
              done: Callable[[Built], None] = lambda built: None) -> list[Built]:
    """:func:`ensure` every environment of ``names`` at once (one thread each); ``done`` is
    called as each finishes. The first failure is raised after all have ended."""
    names = list(dict.fromkeys(names))
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        futures = [pool.submit(ensure, name, specs[name], envs, root) for name in names]
        results, failure = [], None
        for future in futures:
            try:
                results.append(future.result())
                done(results[-1])
            except BuildFailed as exc:
                failure = failure or exc
    if failure is not None:
        raise failure
    return results
