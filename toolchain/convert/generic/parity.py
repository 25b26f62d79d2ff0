"""Parity of a converted model with its ORIGINAL graph, run by Keras 2.15 in the legacy env.

:func:`make_inputs` draws seeded uniform inputs in the model's input range and adds the user's
``.npy`` files; :class:`LegacyRun` runs ``legacy_env/legacy_graph.py`` on them in the legacy
environment (in the background, while the formats are exported); :func:`compare` checks every
format output by output: the largest absolute difference (the verdict, against the tolerance) and,
for vector outputs, the cosine of each row. :func:`write_reports` writes ``parity.json`` and
``parity.md``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

import toolchain
from toolchain.convert.parity.checks import cosines
from toolchain.core.atomic import sha256_file
from toolchain.core.errors import (
    EnvironmentToolError,
    InputError,
    IntegrityError,
    MissingArtifactError,
    ParityError,
    ToolchainError,
    UnsafeCodeError,
)

UNKNOWN_DIM = 32
"""Size given to an input axis the model leaves open (``None`` besides the batch axis) when the
random inputs are drawn and no ``--inputs`` file fixes it."""

ROOT = Path(toolchain.__file__).resolve().parents[1]
LEGACY_SCRIPT = ROOT / "legacy_env" / "legacy_graph.py"
LEGACY_ENV_PYTHON = ROOT / ".nox" / "_envs" / "legacy" / "bin" / "python"

ERRORS: dict[int, type[ToolchainError]] = {
    cls.exit_code: cls
    for cls in (InputError, IntegrityError, UnsafeCodeError, MissingArtifactError)
}


@dataclass(frozen=True)
class InputSet:
    """The rows every format and the original graph run on.

    Attributes:
        feeds: input name -> float32 array, rows first.
        random_rows: how many rows are seeded random draws (they come first).
        low, high, seed: the uniform range and the seed of those draws.
        files: the ``--inputs`` files (input, path, sha256, rows), in order.
    """

    feeds: dict[str, np.ndarray]
    random_rows: int
    low: float
    high: float
    seed: int
    files: tuple[dict[str, Any], ...]

    @property
    def rows(self) -> int:
        """Number of rows."""
        return len(next(iter(self.feeds.values())))


def _user_files(specs: list[str], names: tuple[str, ...]) -> dict[str, list[Path]]:
    by_input: dict[str, list[Path]] = {}
    for spec in specs:
        name, sep, file = spec.rpartition("=")
        if not sep:
            if len(names) != 1:
                raise InputError(f"--inputs {spec!r}: the model has inputs {list(names)}; "
                                 "give NAME=FILE.npy")
            name, file = names[0], spec
        if name not in names:
            raise InputError(f"--inputs {spec!r}: the model has no input {name!r} "
                             f"(its inputs: {list(names)})")
        by_input.setdefault(name, []).append(Path(file))
    missing = [n for n in names if by_input and n not in by_input]
    if missing:
        raise InputError(f"--inputs gives no file for input(s) {missing}")
    return by_input


def _load_npy(path: Path, name: str, shape: tuple[int | None, ...]) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy array ({exc})") from exc
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiub":
        raise InputError(f"{path}: not a numeric .npy array")
    fits = array.ndim == len(shape) and all(
        want is None or got == want for got, want in zip(array.shape[1:], shape[1:], strict=True))
    if not fits or len(array) == 0:
        want_text = "(rows, " + ", ".join("?" if d is None else str(d) for d in shape[1:]) + ")"
        raise InputError(f"{path}: shape {array.shape} does not fit input {name!r} {want_text}")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise InputError(f"{path}: holds NaN or infinite values")
    return array


def make_inputs(inputs: tuple[tuple[str, tuple[int | None, ...]], ...], samples: int,
                low: float, high: float, seed: int, files: list[str]) -> InputSet:
    """Seeded uniform rows in ``[low, high)`` for every input, then the user's ``.npy`` rows.

    Raises:
        InputError: an input file is unreadable, not numeric, of the wrong shape, or names no
            input; inputs given for some inputs only, or with different row counts.
    """
    names = tuple(name for name, _ in inputs)
    shapes = dict(inputs)
    by_input = _user_files(files, names)
    loaded = {name: [_load_npy(p, name, shapes[name]) for p in paths]
              for name, paths in by_input.items()}
    records = tuple({"input": name, "file": str(p), "sha256": sha256_file(p), "rows": len(a)}
                    for name, paths in by_input.items()
                    for p, a in zip(paths, loaded[name], strict=True))
    user: dict[str, np.ndarray] = {}
    for name, arrays in loaded.items():
        try:
            user[name] = np.concatenate(arrays)
        except ValueError as exc:
            raise InputError(f"--inputs for {name!r} have different shapes ({exc})") from exc
    if len({len(a) for a in user.values()}) > 1:
        raise InputError(f"--inputs give different row counts per input: "
                         f"{ {k: len(v) for k, v in user.items()} }")
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, shape in inputs:
        dims = user[name].shape[1:] if name in user else tuple(
            UNKNOWN_DIM if d is None else d for d in shape[1:])
        drawn = rng.uniform(low, high, size=(samples, *dims)).astype(np.float32)
        feeds[name] = np.concatenate([drawn, user[name]]) if name in user else drawn
    return InputSet(feeds, samples, low, high, seed, records)


def legacy_python(given: Path | None) -> Path:
    """The legacy (Keras 2.15) environment's python: ``given``, ``FACENET_LEGACY_PYTHON``, or the
    nox environment beside the checkout.

    Raises:
        MissingArtifactError: none of them exists.
    """
    candidates = [given] if given is not None else [
        Path(os.environ["FACENET_LEGACY_PYTHON"]) if os.environ.get("FACENET_LEGACY_PYTHON")
        else None, LEGACY_ENV_PYTHON]
    for candidate in candidates:
        if candidate is not None and candidate.is_file():
            return candidate
    raise MissingArtifactError(
        "the original graph runs in the legacy Keras 2.15 environment for parity, and it was not "
        f"found ({given or 'FACENET_LEGACY_PYTHON unset, ' + str(LEGACY_ENV_PYTHON)}): pass "
        "--legacy-python or set FACENET_LEGACY_PYTHON (run `nox -s recover` to build it)")


class LegacyRun:
    """``legacy_graph.py`` running in the background; :meth:`outputs` waits for it."""

    def __init__(self, python: Path, h5: Path, mappings: list[str], inputs: InputSet,
                 workdir: Path) -> None:
        from toolchain.legacy.npzfile import npz_bytes

        if not LEGACY_SCRIPT.is_file():
            raise MissingArtifactError(f"{LEGACY_SCRIPT} is missing (it comes with the source "
                                       "checkout of the toolchain)")
        self.inputs_path = workdir / "inputs.npz"
        self.out_path = workdir / "legacy_outputs.npz"
        self.inputs_path.write_bytes(npz_bytes(inputs.feeds))
        self._log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115  (closed in outputs())
        argv = [str(python), str(LEGACY_SCRIPT), "--h5", str(h5), "--inputs",
                str(self.inputs_path), "--out", str(self.out_path)]
        for mapping in mappings:
            argv += ["--lambda", mapping]
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "3",
               "CUDA_VISIBLE_DEVICES": ""}
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     cwd=ROOT)

    def outputs(self, timeout: float = 1800) -> dict[str, np.ndarray]:
        """Wait for the original graph's outputs.

        Raises:
            ToolchainError: the legacy run refused the file or failed (its own error line and
                exit code; an unexpected failure is exit 8).
        """
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self.proc.kill()
            self.proc.wait()
            raise EnvironmentToolError(f"the legacy Keras 2.15 graph did not finish in "
                                       f"{timeout:.0f} s") from exc
        self._log.seek(0)
        text = self._log.read().decode("utf-8", "replace")
        self._log.close()
        if code != 0:
            lines = [line for line in text.splitlines() if line.strip()]
            said = next((line.partition("error: ")[2] for line in reversed(lines)
                         if line.startswith("legacy_graph: error: ")), None)
            error = ERRORS.get(code, EnvironmentToolError) if said else EnvironmentToolError
            raise error(f"the legacy Keras 2.15 graph failed: "
                        f"{said or (lines[-1] if lines else f'exit {code}')}")
        with np.load(self.out_path, allow_pickle=False) as npz:
            return {k: np.asarray(npz[k]) for k in npz.files}

    def stop(self) -> None:
        """Stop it (when the conversion failed before its outputs were needed)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self._log.closed:
            self._log.close()


@dataclass(frozen=True)
class OutputCheck:
    """One output of one format against the original graph."""

    fmt: str
    output: str
    shape: tuple[int, ...]
    max_abs: float
    min_cos: float | None
    mean_cos: float | None
    original_max: float
    ok: bool


def compare(fmt: str, got: dict[str, np.ndarray], want: dict[str, np.ndarray], atol: float,
            order: tuple[str, ...]) -> list[OutputCheck]:
    """Every output of ``fmt`` (in the model's ``order``) against the original's: max abs
    difference (the verdict) and, for outputs with more than one value per row, the row
    cosines."""
    checks = []
    for name in order:
        expected = want[name]
        value = got.get(name)
        scale = float(np.max(np.abs(expected))) if expected.size else 0.0
        if value is None or value.shape != expected.shape or not np.all(np.isfinite(value)):
            checks.append(OutputCheck(fmt, name, tuple(expected.shape), float("inf"), None, None,
                                      scale, False))
            continue
        diff = float(np.max(np.abs(value.astype(np.float64) - expected))) if value.size else 0.0
        rows = value.reshape(len(value), -1)
        cos = cosines(rows, expected.reshape(len(expected), -1)) if rows.shape[1] > 1 else None
        checks.append(OutputCheck(
            fmt, name, tuple(value.shape), diff,
            None if cos is None else float(cos.min()), None if cos is None else float(cos.mean()),
            scale, diff <= atol))
    return checks


def report_json(checks: list[OutputCheck], inputs: InputSet, atol: float,
                legacy: dict[str, Any]) -> dict[str, Any]:
    """``parity.json``."""
    failed = [c for c in checks if not c.ok]
    return {
        "ok": not failed,
        "tolerance": {"max_abs": atol, "applies_to": "every element of every output"},
        "original": legacy,
        "inputs": {"rows": inputs.rows, "random_rows": inputs.random_rows,
                   "random": {"distribution": "uniform", "low": inputs.low, "high": inputs.high,
                              "seed": inputs.seed},
                   "files": list(inputs.files)},
        "checks": [asdict(c) for c in checks],
        "failed": [f"{c.fmt} {c.output}: max|d| {c.max_abs:.3g} > {atol:g}" for c in failed],
    }


def report_md(report: dict[str, Any]) -> str:
    """``parity.md``: the table of every format and output."""
    inputs = report["inputs"]
    lines = [
        "# Parity with the original graph", "",
        f"Every exported format and the in-memory rebuild ran on {inputs['rows']} input rows "
        f"({inputs['random_rows']} seeded uniform in [{inputs['random']['low']:g}, "
        f"{inputs['random']['high']:g}), seed {inputs['random']['seed']}; "
        f"{len(inputs['files'])} input file(s)), compared with the ORIGINAL graph built by "
        f"{report['original'].get('runtime', 'Keras 2.15')} from the file's own config.", "",
        f"**Result: {'PASS' if report['ok'] else 'FAIL'}** (max abs difference <= "
        f"{report['tolerance']['max_abs']:g})", "",
        "| format | output | shape | max abs diff | max abs original | min cosine | ok |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in report["checks"]:
        cos = "-" if c["min_cos"] is None else f"{c['min_cos']:.10f}"
        lines.append(f"| {c['fmt']} | {c['output']} | {tuple(c['shape'])} | {c['max_abs']:.2e} "
                     f"| {c['original_max']:.3g} | {cos} | {'yes' if c['ok'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def raise_if_failed(report: dict[str, Any], where: Path) -> None:
    """Exit 7 (after the reports are written) when any output missed the tolerance."""
    if not report["ok"]:
        raise ParityError(f"{len(report['failed'])} output(s) beyond tolerance: "
                          + "; ".join(report["failed"][:5]) + f" (see {where})")
