"""``facenet model convert``: any legacy Keras ``.h5`` to ONNX, Keras, SavedModel, TFLite, OpenVINO,
parity against its original graph (:func:`toolchain.convert.generic.pipeline.convert_file`).

A thin command: it parses the options, shows the current step, and renders the result; the work
and every check live in the library. Heavy imports stay inside the command body.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from toolchain.cli.common import console, display_text

app = typer.Typer()
"""``facenet model convert`` (added to the ``model`` group by :mod:`toolchain.cli.model`)."""

FORMAT_NAMES = ("keras", "savedmodel", "onnx", "tflite", "openvino", "all")


def _range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not LOW,HIGH", param_hint="--input-range"
                                 ) from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise typer.BadParameter(f"{text!r}: need finite LOW < HIGH", param_hint="--input-range")
    return low, high


@app.command()
def convert(
    model: Annotated[Path | None, typer.Argument(
        help="A legacy Keras .h5 (model.save or model.save_weights of Keras 2.0 to 2.15).",
        show_default=False)] = None,
    to: Annotated[list[str] | None, typer.Option(
        "--to", "-t", help=f"Format(s), repeatable: {', '.join(FORMAT_NAMES)}.",
        show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Output directory: new, empty, or an earlier convert output "
                            "(replaced whole).", show_default=False)] = None,
    lambdas: Annotated[list[str] | None, typer.Option(
        "--lambda", help="LAYER=FILE.py:FUNCTION: your function stands for that Lambda layer "
                         "(its bytecode is never run). Repeatable.", show_default=False)] = None,
    inputs: Annotated[list[str] | None, typer.Option(
        "--inputs", help="FILE.npy (or NAME=FILE.npy for a multi-input model): rows added to the "
                         "parity inputs. Repeatable.", show_default=False)] = None,
    input_range: Annotated[str, typer.Option(
        "--input-range", help="LOW,HIGH of the seeded uniform parity inputs (the model's input "
                              "range).")] = "-1,1",
    samples: Annotated[int, typer.Option(
        "--samples", min=1, max=10_000, help="Seeded random parity rows.")] = 16,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random parity rows.")] = 0,
    atol: Annotated[float | None, typer.Option(
        "--atol", min=0.0, show_default=False,
        help="Largest accepted |format - original| of any output element [default: the "
             "float32 tolerance of the format table, 1e-05].")] = None,
    legacy_python: Annotated[Path | None, typer.Option(
        "--legacy-python", help="Python of the legacy Keras 2.15 environment [default: "
                                "FACENET_LEGACY_PYTHON, or .nox/_envs/legacy].",
        show_default=False)] = None,
    layers: Annotated[bool, typer.Option(
        "--layers", help="Print the table of supported layer classes and exit.")] = False,
) -> None:
    """Convert a legacy Keras .h5 (not only FaceNet) without running its code; prove parity.

    Vets every Lambda (catalogue-vetted bytecode or --lambda), rebuilds the file's own config in
    Keras 3 from the layer table, loads the weights strictly, exports and validates each format,
    and compares every format with the original graph run by Keras 2.15 (never load_model on the
    file). Writes OUT/weights (deterministic npz + manifest), the models, parity.json, parity.md
    and convert.json. Exit codes: 3 bad input or unsupported layer, 4 weights do not fit, 5 code
    refused, 6 no legacy environment, 7 beyond tolerance, 8 a converter failed.
    """
    if layers:
        from toolchain.convert.generic.table import render_markdown

        print(render_markdown(), end="")
        return
    if model is None or out is None or not to:
        missing = [n for n, v in (("MODEL", model), ("--out", out), ("--to", to)) if not v]
        raise typer.BadParameter(f"missing {', '.join(missing)}", param_hint="convert")
    bad = [name for name in to if name not in FORMAT_NAMES]
    if bad:
        raise typer.BadParameter(f"unknown format(s) {bad}; choose from "
                                 f"{', '.join(FORMAT_NAMES)}", param_hint="--to")
    from toolchain.convert.generic.pipeline import ConvertRequest, convert_file

    request = ConvertRequest(
        h5=model, out=out, formats=tuple(to), lambdas=tuple(lambdas or ()),
        inputs=tuple(inputs or ()), samples=samples, input_range=_range(input_range), seed=seed,
        legacy_python=legacy_python)
    if atol is not None:
        request = replace(request, atol=atol)
    with console(stderr=True).status("convert…") as status:
        result = convert_file(request, on_step=lambda step: status.update(f"convert: {step}…"))
    _print(result.report, out)


def _print(report: dict[str, object], out: Path) -> None:
    from rich.table import Table

    if report.get("weights_only"):
        weights = report["weights"]
        assert isinstance(weights, dict)
        print(f"weights-only file (no model_config): dumped {weights['npz']} npz + manifest "
              f"({weights['parameters']:,} parameters) to {display_text(out / 'weights')}; "
              "nothing to rebuild or export")
        return
    parity = report["parity"]
    formats = report["formats"]
    assert isinstance(parity, dict) and isinstance(formats, list)
    worst = parity["worst_max_abs"]
    table = Table(title=f"convert ({report['total_seconds']} s)")
    for column in ("format", "written", "size MB", "export s", "max |d| vs original"):
        table.add_column(column)
    for entry in formats:
        if entry["kept"]:
            table.add_row(entry["name"], display_text(out / entry["path"]),
                          f"{entry['size_bytes'] / 1e6:.1f}", f"{entry['seconds']:.1f}",
                          f"{worst.get(entry['name'], float('nan')):.2e}")
    console().print(table)
    print(f"parity OK: {parity['rows']} rows, every output within {parity['tolerance']:g} of the "
          f"original graph (rebuild {worst['rebuild']:.2e}); {display_text(out / 'parity.md')}")
