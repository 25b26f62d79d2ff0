"""``facenet model parity``: run every exported FaceNet format on the reference crops, compare."""

from __future__ import annotations

import time

import typer

from toolchain.cli.common import ArtifactsOption, console
from toolchain.core.paths import DEFAULT_ARTIFACTS, Layout

app = typer.Typer()
"""``facenet model parity`` (added to the ``model`` group by :mod:`toolchain.cli.model`)."""


@app.command()
def parity(artifacts: ArtifactsOption = DEFAULT_ARTIFACTS) -> None:
    """Run every exported FaceNet format on all reference crops and compare with the original.

    Prints one ``[ok]`` / ``[x]`` line per format and check; exits 7 if any check fails.
    """
    from toolchain.convert.formats import model_paths
    from toolchain.convert.parity import REPORT_NAMES, run_parity
    from toolchain.core.integrity import record_files, verify_file

    start = time.perf_counter()
    layout = Layout(artifacts)
    models = model_paths(layout.models_dir)
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
        f"default threshold {report.model_defaults.get('default_threshold', 'not checked')} "
        f"({time.perf_counter() - start:.1f} s); reports in {layout.reports_dir}"
    )
