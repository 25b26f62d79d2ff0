"""The command line as users run it: ``python -m toolchain`` in a subprocess, or in-process.

:func:`facenet` is the suite's one subprocess runner: the checkout first on ``PYTHONPATH`` (so a
test runs this tree's code in any interpreter, the runtime environment's too), TensorFlow's C++
chatter off and UTF-8 I/O, output captured as text, never raising on a non-zero exit.
:func:`invoke` runs the same command line inside the test process (for the synthetic world of
:mod:`helpers.runtime_fakes`, whose monkeypatches only hold in-process).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
"""The checkout the tests run (its ``toolchain`` package wins over any installed one)."""


def python_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child Python: this one, the checkout first on ``PYTHONPATH``,
    TensorFlow quiet, UTF-8 I/O, then ``extra``."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUTF8": "1",
            **(extra or {})}


def facenet_argv(*args: object, python: str | Path | None = None) -> list[str]:
    """``python -m toolchain ARGS`` as an argument list (for ``subprocess.Popen``)."""
    return [str(python or sys.executable), "-m", "toolchain", *map(str, args)]


def facenet(*args: object, python: str | Path | None = None,
            env: Mapping[str, str] | None = None, cwd: Path = ROOT,
            timeout: float = 900, stdin: str | None = None,
            preexec: Callable[[], None] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m toolchain ARGS`` from ``cwd`` (the checkout unless given) with ``python``
    (this interpreter unless given) and wait.

    ``env`` is added to :func:`python_env`; ``timeout`` only stops a hung child (the test's own
    limit is pytest-timeout's); ``stdin`` is written to the child's standard input.
    """
    return subprocess.run(facenet_argv(*args, python=python), capture_output=True, text=True,
                          check=False, timeout=timeout, cwd=cwd, env=python_env(env),
                          input=stdin, preexec_fn=preexec)


def invoke(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """Run the command line in-process; return (exit code, stdout, stderr), never a traceback."""
    from toolchain.cli.app import run

    try:
        code = run([str(a) for a in args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err
