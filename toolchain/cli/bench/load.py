"""``facenet bench load``: ``facenet serve`` under load and a burst, the CLI beside, a SIGKILL.

A thin adapter over :func:`toolchain.bench.loadtest.run_session`; the server and the CLI run as
subprocesses of this interpreter on 127.0.0.1.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from toolchain.cli.common import ArtifactsOption
from toolchain.core.paths import DEFAULT_ARTIFACTS, Layout

log = logging.getLogger(__name__)

app = typer.Typer()
"""``facenet bench load`` (added to the ``bench`` group by :mod:`toolchain.cli.bench`)."""


@app.command("load")
def load(
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
    clients: Annotated[int, typer.Option(min=1, max=64, help="Concurrent clients.")] = 16,
    requests: Annotated[int, typer.Option(
        min=1, max=10_000, help="Requests of the load phase, all clients together.")] = 160,
    enroll_every: Annotated[int, typer.Option(
        min=1, help="One request in this many is an enrollment, the rest recognitions.")] = 8,
    workers: Annotated[int, typer.Option(min=1, help="The server's --workers.")] = 2,
    queue: Annotated[int, typer.Option(min=0, help="The server's --queue.")] = 16,
    kill_enrollments: Annotated[int, typer.Option(
        min=2, max=64, help="Simultaneous enrollments the server is SIGKILLed during.")] = 12,
    burst: Annotated[int, typer.Option(
        min=2, max=64, help="Recognitions released together in the burst phase.")] = 20,
    burst_queue: Annotated[int, typer.Option(
        min=0, help="The server's --queue in the burst phase.")] = 4,
    cli_photos: Annotated[int, typer.Option(
        min=2, max=1000, help="Photos of the CLI's batch (the load's photos, cycled).")] = 40,
    examples: Annotated[Path | None, typer.Option(
        file_okay=False, show_default=False,
        help="Folder with people/<name>/ and photos/ [default: the shared examples next to "
             "the checkout].")] = None,
) -> None:
    """Load facenet serve on loopback (clients, burst, CLI batch, SIGKILL); reports/loadtest.*."""
    from toolchain.bench.config import SHARED_EXAMPLES
    from toolchain.bench.loadtest import LoadConfig, markdown, run_session, write_report
    from toolchain.core.errors import IntegrityError
    from toolchain.core.integrity import record_files

    config = LoadConfig(clients=clients, requests=requests, enroll_every=enroll_every,
                        workers=workers, queue=queue, kill_enrollments=kill_enrollments,
                        burst=burst, burst_queue=burst_queue, cli_photos=cli_photos,
                        examples=examples or SHARED_EXAMPLES)
    layout = Layout(artifacts)
    report = run_session(artifacts, config)
    print(markdown(report))
    written = write_report(report, layout.reports_dir)
    record_files(layout, written)
    log.info("wrote %s", ", ".join(str(p) for p in written))
    if not report.kill_intact:
        raise IntegrityError("the gallery was not intact after the SIGKILL (see "
                             f"{written[1]})")
