"""``facenet model export``: rebuild InceptionResNetV1 from the recovered weights, export all."""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperOption

from toolchain.cli.common import ArtifactsOption, console, display_text
from toolchain.core.errors import InputError
from toolchain.core.paths import DEFAULT_ARTIFACTS, Layout

log = logging.getLogger(__name__)

app = typer.Typer()
"""``facenet model export`` (added to the ``model`` group by :mod:`toolchain.cli.model`)."""


def format_help() -> str:
    """``--format``'s help: every format of :data:`toolchain.convert.formats.FORMATS`."""
    from toolchain.convert.formats import FORMATS

    exporters = FORMATS.values()
    listed = ", ".join(e.name for e in exporters)
    left_out = ", ".join(e.name for e in exporters if not e.in_all)
    return (f"Format(s) to export, repeatable: {listed}, or all"
            + (f" (all but {left_out})." if left_out else "."))


class ExportCommand(TyperCommand):
    """``facenet model export``: ``--format``'s help is read from the exporter registry when help is
    shown (importing the registry for every other command would slow them all down)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """Fill in the list of formats, then format the help as usual."""
        for param in self.params:
            if param.name == "formats" and isinstance(param, TyperOption):
                param.help = format_help()
        super().format_help(ctx, formatter)


@app.command(cls=ExportCommand)
def export(
    formats: Annotated[
        list[str], typer.Option("--format", "-f", help="Format(s) to export (see --help).")
    ] = ["all"],  # noqa: B006  (typer reads the default list, never mutates it)
    calibration_sets: Annotated[list[str] | None, typer.Option(
        "--calibration-set", show_default=False,
        help="A labelled set the ONNX default threshold is calibrated on (FAR <= 1e-3 over its "
             "impostor pairs): DIR of <person>/ photo folders, or LABELS.csv@DIR. Repeat for "
             "several [default: the 5-celebrity photos of the artifacts].")] = None,
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
) -> None:
    """Rebuild InceptionResNetV1, load the recovered npz strictly and export the chosen formats."""
    from rich.table import Table

    from toolchain.convert.exporters import (
        ExportContext,
        resolve,
        run_exporters,
        write_export_report,
    )
    from toolchain.core.integrity import record_files

    start = time.perf_counter()
    layout = Layout(artifacts)
    try:
        plan = resolve(formats)
    except InputError as exc:
        raise typer.BadParameter(str(exc), param_hint="--format") from exc
    log.info("export plan: %s", " -> ".join(e.name for e in plan))
    context = ExportContext(layout, calibration_sets=tuple(calibration_sets or ()))
    if calibration_sets:
        context.labelled_sets  # noqa: B018  (a bad set fails now, not after the conversion)
    with console(stderr=True).status("exporting…"):
        results = run_exporters(context, [e.name for e in plan])
    report = write_export_report(layout, results)
    record_files(layout, [report])  # each model was recorded as it was written
    table = Table(title=f"export ({time.perf_counter() - start:.1f} s total)")
    for column in ("format", "seconds", "size MB", "written"):
        table.add_column(column)
    for r in results:
        table.add_row(
            r.name,
            f"{r.seconds:.1f}",
            f"{r.size_bytes / 1e6:.1f}",
            "\n".join(display_text(p) for p in r.paths),
        )
    console().print(table)
    log.info("wrote %s", report)
