"""``facenet export`` and ``facenet parity``: rebuild, export every format, prove parity."""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperOption

from toolchain.cli.app import (
    DEFAULT_ARTIFACTS_PATH,
    ArtifactsOption,
    app,
    console,
    display_text,
    layout_for,
)
from toolchain.core.errors import InputError

log = logging.getLogger(__name__)


def format_help() -> str:
    """``--format``'s help: every exporter of the registry (:mod:`toolchain.convert.exporters`)."""
    from toolchain.convert.exporters import load_exporters

    exporters = load_exporters().values()
    listed = ", ".join(e.name for e in exporters)
    left_out = ", ".join(e.name for e in exporters if not e.in_all)
    return (f"Format(s) to export, repeatable: {listed}, or all"
            + (f" (all but {left_out})." if left_out else "."))


class ExportCommand(TyperCommand):
    """``facenet export``: ``--format``'s help is read from the exporter registry when help is
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
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS_PATH,
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
    layout = layout_for(artifacts)
    try:
        plan = resolve(formats)
    except InputError as exc:
        raise typer.BadParameter(str(exc), param_hint="--format") from exc
    log.info("export plan: %s", " -> ".join(e.name for e in plan))
    context = ExportContext(layout)
    with console(stderr=True).status("exporting…"):
        results = run_exporters(context, [e.name for e in plan])
    report = write_export_report(layout, results)
    record_files(layout, [*(p for r in results for p in r.paths), report])
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


@app.command()
def parity(artifacts: ArtifactsOption = DEFAULT_ARTIFACTS_PATH) -> None:
    """Run every exported FaceNet format on all reference crops and compare with the original.

    Prints one ``[ok]`` / ``[x]`` line per format and check; exits 7 if any check fails.
    """
    from toolchain.convert.exporters import facenet_model_paths
    from toolchain.convert.parity import REPORT_NAMES, run_parity
    from toolchain.core.integrity import record_files, verify_file

    start = time.perf_counter()
    layout = layout_for(artifacts)
    models = facenet_model_paths(layout)
    for path in models.values():
        if path.exists():
            verify_file(path, layout)
    try:
        with console(stderr=True).status("parity: running every format…") as status:
            report = run_parity(
                layout,
                models,
                emit=print,
                on_result=lambda fmt: status.update(f"parity: {fmt} done"),
            )
    finally:
        record_files(layout, [p for n in REPORT_NAMES if (p := layout.reports_dir / n).exists()])
    print(
        f"parity OK: {len(report.checks)} checks on {report.reference_rows} crops, "
        f"default threshold {report.threshold.value} "
        f"({time.perf_counter() - start:.1f} s); reports in {layout.reports_dir}"
    )
