"""One load session: the server and the shared people enrolled, then each phase in turn."""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

from toolchain.bench.loadtest.inputs import LoadConfig, people_in, photos_in
from toolchain.bench.loadtest.kill import run_kill
from toolchain.bench.loadtest.phases import run_burst, run_cli, run_load
from toolchain.bench.loadtest.report import LoadReport
from toolchain.bench.loadtest.server import serving
from toolchain.bench.machine import cpu_model
from toolchain.core.contracts import ONNX_FILE
from toolchain.core.errors import MissingArtifactError
from toolchain.core.paths import Layout

log = logging.getLogger(__name__)


def run_session(artifacts: Path, config: LoadConfig) -> LoadReport:
    """Start the server, enroll the shared people, then the load, CLI and kill phases."""
    model = Layout(artifacts).models_dir / ONNX_FILE
    if not model.is_file():
        raise MissingArtifactError(f"{model} missing: run `nox -s export` first")
    if not (config.examples / "people").is_dir() or not (config.examples / "photos").is_dir():
        raise MissingArtifactError(f"{config.examples} has no people/ and photos/: the shared "
                                   "examples belong next to the checkout")
    people = people_in(config.examples)
    photos = photos_in(config.examples / "photos")
    loadavg_before = [round(v, 2) for v in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="facenet-load-") as tmp:
        gallery = Path(tmp) / "gallery.db"
        options = ("--workers", str(config.workers), "--queue", str(config.queue))
        with serving(config.python, artifacts, gallery, *options) as server:
            for name, paths in people.items():
                status, payload, _ = server.call("POST", f"/v1/people/{name}/faces",
                                              [("image", p) for p in paths])
                if status != 201:
                    raise RuntimeError(f"enrolling {name} answered {status}: {payload}")
            log.info("load: %d clients, %d requests", config.clients, config.requests)
            load = run_load(server, config, people, photos, Path(tmp))
        log.info("burst: %d recognitions at once, --queue %d", config.burst, config.burst_queue)
        burst = run_burst(config, artifacts, gallery, photos)
        log.info("CLI: facenet recognize on %d photos", config.cli_photos)
        cli = run_cli(config.python, artifacts, gallery, photos, config.cli_photos)
        log.info("kill: SIGKILL during %d enrollments", config.kill_enrollments)
        kill = run_kill(config, artifacts, gallery, people, Path(tmp))
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}
    return LoadReport(cpu=cpu_model(), cores=os.cpu_count() or 0, loadavg_before=loadavg_before,
                      loadavg_after=[round(v, 2) for v in os.getloadavg()], config=settings,
                      load=load, burst=burst, cli=cli, kill=kill)
