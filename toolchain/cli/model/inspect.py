"""``facenet model inspect``: what a legacy Keras ``.h5`` holds, without running it.

Rendering only: the report is built by :func:`toolchain.legacy.inspect.inspect_file`, printed as
text or JSON here; the legacy parser is imported inside the command, so ``--help`` stays instant.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from toolchain.core.errors import InputError, UnsafeCodeError

if TYPE_CHECKING:
    from toolchain.legacy.inspect import InspectReport, LambdaReport

app = typer.Typer()
"""``facenet model inspect`` (added to the ``model`` group by :mod:`toolchain.cli.model`)."""


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
    from toolchain.legacy.inspect import inspect_file, refusals

    if not h5.exists():
        raise InputError(f"{h5}: no such file")
    if not h5.is_file():
        raise InputError(f"{h5}: not a regular file, expected a legacy Keras .h5 file")
    report = inspect_file(h5)
    if as_json:
        print(json.dumps(asdict(report), indent=2, sort_keys=True))
    else:
        _print_human(report)
    refused = refusals(report)
    if refused:
        raise UnsafeCodeError(refused[0])
