"""``facenet inspect``: what a legacy Keras ``.h5`` holds, including its Lambda code, never run.

The whole ``model_config`` is walked (:mod:`toolchain.legacy.codewalk`): Lambdas inside nested
models and wrappers are reported by layer path, and every other reference to code (a custom class,
a serialized function, a ``module`` Keras would import) is listed and refused.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from toolchain.cli.app import app
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
    """Everything ``facenet inspect`` reports about one file."""

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


def _shape_text(shape: list[Any] | None) -> str:
    if shape is None:
        return "unknown"
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def _print_human(report: InspectReport) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=True)
    known = report.known or "unknown file (not the pinned FaceNet file)"
    console.print(f"[bold]{escape(report.file)}[/bold]")
    console.print(f"  sha256        {report.sha256} = {escape(known)}")
    console.print(
        f"  saved by      Keras {report.keras_version or '?'}, backend {report.backend or '?'}"
    )
    console.print(f"  model         {report.model_class} {escape(report.model_name or '')}")
    console.print(
        f"  layers        {report.layers} ({report.weighted_layers} with weights, "
        f"{report.tensors} tensors)"
    )
    console.print(f"  parameters    {report.parameters:,}")
    for label, entries in (("input", report.inputs), ("output", report.outputs)):
        for entry in entries:
            console.print(f"  {label:<13} {escape(entry['layer'])} {_shape_text(entry['shape'])}")
    table = Table("class", "layers", title="Layers by class", title_justify="left")
    for cls, count in report.layers_by_class.items():
        table.add_row(cls, str(count))
    console.print(table)

    if not report.executable_code:
        console.print("No Lambda layers: the file carries no executable Python code.")
        return
    if report.callables:
        console.print(
            f"[bold red]The file refers to code outside the file:[/bold red] "
            f"{len(report.callables)} reference(s) that are not Keras built-ins, each refused:"
        )
        for ref in report.callables:
            console.print(f"  {escape(ref.refusal)}")
    if not report.lambdas:
        return
    verdict = (
        "every one matches the vetted residual scaling "
        "`lambda inputs, scale: inputs[0] + inputs[1] * scale`"
        if all(lam.vetted for lam in report.lambdas)
        else "[bold red]NOT every one matches the vetted pattern: the file is refused[/bold red]"
    )
    console.print(
        f"[bold]The file carries executable code:[/bold] {len(report.lambdas)} Lambda layer(s) "
        f"with marshaled Python bytecode (never executed here); {verdict}."
    )
    groups: dict[str, list[LambdaReport]] = {}
    for lam in report.lambdas:
        console.print(
            f"  {escape(lam.layer)}: arguments {escape(json.dumps(lam.arguments))}, "
            f"Python {lam.python_version or '?'}, "
            f"{'vetted' if lam.vetted else '[red]REFUSED[/red]'}: "
            f"{escape(lam.source or lam.decompile_error or lam.refusal or '')}"
        )
        groups.setdefault(lam.disassembly or "", []).append(lam)
    for disassembly, members in groups.items():
        names = ", ".join(m.layer for m in members)
        console.print(f"\n[bold]Disassembly[/bold] ({len(members)} layer(s): {escape(names)})")
        console.print(escape(disassembly.rstrip() or "undecodable"), markup=True)
        if members[0].source:
            console.print(f"[bold]Recovered source:[/bold] {escape(members[0].source)}")


@app.command()
def inspect(
    h5: Annotated[Path, typer.Argument(help="A legacy Keras .h5 model file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")] = False,
) -> None:
    """Show what a legacy Keras .h5 holds (layers, parameters, decompiled Lambda code).

    Reads the file with h5py and decodes Lambda bytecode with xdis/uncompyle6: no TensorFlow,
    nothing executed. Walks nested models and wrappers too. Exits 5 if any Lambda is not the
    vetted residual scaling or the config refers to any other code.
    """
    from toolchain.core.errors import InputError

    if not h5.exists():
        raise InputError(f"{h5}: no such file")
    if not h5.is_file():
        raise InputError(f"{h5}: not a regular file, expected a legacy Keras .h5 file")
    report = inspect_file(h5)
    if as_json:
        print(json.dumps(asdict(report), indent=2, sort_keys=True))
    else:
        _print_human(report)
    refused = [lam.refusal or f"Lambda layer {lam.layer!r} refused" for lam in report.lambdas
               if not lam.vetted]
    refused += [ref.refusal for ref in report.callables]
    if refused:
        raise UnsafeCodeError(refused[0])
