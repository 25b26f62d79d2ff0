"""``facenet model verify`` and ``facenet model checksums``: the integrity of every artifact."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from toolchain.cli.common import ArtifactsOption
from toolchain.core.errors import IntegrityError
from toolchain.core.paths import DEFAULT_ARTIFACTS, Layout

log = logging.getLogger(__name__)

app = typer.Typer()
"""``facenet model verify`` and ``facenet model checksums`` (added to the ``model`` group by
:mod:`toolchain.cli.model`)."""


@app.command()
def verify(
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
    gallery: Annotated[Path | None, typer.Option(
        "--gallery", dir_okay=False, show_default=False,
        help="Check only this gallery file (read-only): SQLite integrity, schema, vectors, and "
             "its model fingerprint against <artifacts>/models/facenet.onnx.")] = None,
) -> None:
    """Re-hash every artifact: pinned source files, weights vs manifest, SHA256SUMS, galleries.

    Prints one line per problem and exits 4 naming every mismatching, missing or unlisted file
    (3 when --gallery is not a regular file).
    """
    from toolchain.core.integrity import verify_artifacts, verify_gallery

    layout = Layout(artifacts)
    report = verify_artifacts(layout) if gallery is None else verify_gallery(gallery, layout)
    subject = artifacts if gallery is None else gallery
    for warning in report.warnings:
        log.warning("%s", warning)
    for problem in report.problems:
        print(f"[x] {problem}")
    checked = ", ".join(f"{name} {count} ok" for name, count in report.checked.items())
    if not report.ok:
        noun = "problem" if len(report.problems) == 1 else "problems"
        raise IntegrityError(
            f"{len(report.problems)} integrity {noun} in {subject}: " + "; ".join(report.problems)
        )
    print(f"verified {subject}: {checked}")


@app.command()
def checksums(artifacts: ArtifactsOption = DEFAULT_ARTIFACTS) -> None:
    """Write <artifacts>/SHA256SUMS listing every generated file (run at the end of the main job).

    The fetched source files are pinned in the code instead; galleries (*.db) are user data.
    Refuses (exit 4, nothing written) to bless a file that fails its own validation: an npz
    that does not match the weights manifest, a stale SavedModel, or a model, weights or
    reference file changed since the existing SHA256SUMS recorded it (regenerate it instead).
    """
    from toolchain.core.integrity import write_checksums

    result = write_checksums(Layout(artifacts))
    print(f"wrote {result.path} ({result.files} files)")
