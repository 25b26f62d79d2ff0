"""What a legacy Keras ``.h5`` holds, including its Lambda code, read and decoded but never run.

The whole ``model_config`` is walked (:mod:`toolchain.legacy.codewalk`): Lambdas inside nested
models and wrappers are reported by layer path, and every other reference to code (a custom class,
a serialized function, a ``module`` Keras would import) is listed with why it is refused. The
report is data (``facenet model inspect`` renders it as text or JSON); no TensorFlow is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolchain.core.errors import UnsafeCodeError

if TYPE_CHECKING:
    from toolchain.legacy.codewalk import CallableSite, LambdaSite


@dataclass(frozen=True)
class LambdaReport:
    """One Lambda layer: its decoded code and whether it is the vetted residual scaling."""

    layer: str
    """Layer path from the file's model, e.g. ``Block35_1_ScaleSum`` or ``inner/evil_lambda``."""
    arguments: Any
    python_version: str | None
    disassembly: str | None
    source: str | None
    decompile_error: str | None
    vetted: bool
    refusal: str | None


@dataclass(frozen=True)
class CallableReport:
    """A reference to code other than a Lambda (custom class, serialized function, module)."""

    path: str
    """Layer path, then the config key holding it, e.g. ``dense/kernel_initializer``."""
    refusal: str


@dataclass(frozen=True)
class InspectReport:
    """Everything ``facenet model inspect`` reports about one file."""

    file: str
    size: int
    sha256: str
    known: str | None
    keras_version: str | None
    backend: str | None
    model_class: str
    model_name: str | None
    layers: int
    layers_by_class: dict[str, int]
    weighted_layers: int
    tensors: int
    parameters: int
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    executable_code: bool
    """The config carries a Lambda or refers to any other code."""
    all_lambdas_vetted: bool
    """Every Lambda is the vetted residual scaling AND there is no other code: safe to recover."""
    lambdas: list[LambdaReport]
    callables: list[CallableReport]


def _lambda_report(site: LambdaSite) -> LambdaReport:
    from toolchain.legacy.lambdas import decode_lambda, vet_lambda

    name, config = site.path, site.config

    try:
        decoded = decode_lambda(name, config.get("function"))
    except UnsafeCodeError as exc:
        return LambdaReport(name, config.get("arguments"), None, None, None, None, False, str(exc))
    refusal = None
    try:
        vet_lambda(name, config)
    except UnsafeCodeError as exc:
        refusal = str(exc)
    return LambdaReport(
        layer=name,
        arguments=config.get("arguments"),
        python_version=decoded.version_text,
        disassembly=decoded.disassembly,
        source=decoded.source,
        decompile_error=decoded.decompile_error,
        vetted=refusal is None,
        refusal=refusal,
    )


def inspect_file(path: Path) -> InspectReport:
    """Read ``path`` with h5py and decode its Lambdas; nothing in the file is executed."""
    from toolchain.core.atomic import sha256_file
    from toolchain.core.source import identify_h5
    from toolchain.legacy.h5file import read_legacy

    model = read_legacy(path)
    lambdas = [_lambda_report(site) for site in model.lambdas]
    callables = [_callable_report(site) for site in model.code.callables]

    def shapes(names: tuple[str, ...], values: tuple[Any, ...]) -> list[dict[str, Any]]:
        return [
            {"layer": n, "shape": list(s) if s is not None else None}
            for n, s in zip(names, values, strict=False)
        ]

    return InspectReport(
        file=str(path),
        size=path.stat().st_size,
        sha256=sha256_file(path),
        known=identify_h5(path),
        keras_version=model.keras_version,
        backend=model.backend,
        model_class=model.model_class,
        model_name=model.name,
        layers=len(model.layers),
        layers_by_class=model.class_counts(),
        weighted_layers=len(model.weighted_layers),
        tensors=model.tensors,
        parameters=model.parameters,
        inputs=shapes(model.input_layers, model.input_shapes),
        outputs=shapes(model.output_layers, model.output_shapes),
        executable_code=bool(lambdas or callables),
        all_lambdas_vetted=all(lam.vetted for lam in lambdas) and not callables,
        lambdas=lambdas,
        callables=callables,
    )


def _callable_report(site: CallableSite) -> CallableReport:
    return CallableReport(path=site.path, refusal=site.refusal)


def refusals(report: InspectReport) -> list[str]:
    """Why the file is refused, one message per Lambda or code reference (empty: safe)."""
    refused = [lam.refusal or f"Lambda layer {lam.layer!r} refused" for lam in report.lambdas
               if not lam.vetted]
    return refused + [ref.refusal for ref in report.callables]
