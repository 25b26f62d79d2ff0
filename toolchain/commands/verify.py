"""``facenet verify`` and ``facenet checksums``: the integrity of every artifact."""

from __future__ import annotations

import logging

from toolchain.app import DEFAULT_ARTIFACTS_PATH, ArtifactsOption, app, layout_for
from toolchain.errors import IntegrityError

log = logging.getLogger(__name__)


@app.command()
def verify(artifacts: ArtifactsOption = DEFAULT_ARTIFACTS_PATH) -> None:
    """Re-hash every artifact: pinned source files, weights vs manifest, SHA256SUMS, gallery.

    Prints one line per problem and exits 4 naming every mismatching, missing or unlisted file.
    """
    from toolchain.integrity import verify_artifacts

    report = verify_artifacts(layout_for(artifacts))
    for warning in report.warnings:
        log.warning("%s", warning)
    for problem in report.problems:
        print(f"[x] {problem}")
    checked = ", ".join(f"{name} {count} ok" for name, count in report.checked.items())
    if not report.ok:
        noun = "problem" if len(report.problems) == 1 else "problems"
        raise IntegrityError(
            f"{len(report.problems)} integrity {noun} in {artifacts}: "
            + "; ".join(report.problems)
        )
    print(f"verified {artifacts}: {checked}")


@app.command()
def checksums(artifacts: ArtifactsOption = DEFAULT_ARTIFACTS_PATH) -> None:
    """Write <artifacts>/SHA256SUMS listing every generated file (run at the end of the main job).

    The fetched source files are pinned in the code instead; the gallery is user data. Refuses
    (exit 4) if an npz does not match the weights manifest.
    """
    from toolchain.integrity import write_checksums

    result = write_checksums(layout_for(artifacts))
    print(f"wrote {result.path} ({result.files} files)")
