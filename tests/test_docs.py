"""Every ``bash`` and ``python`` block of the README and the docs runs as written.

Each rendered document's blocks run in order (an ``enroll`` block, then the ``recognize`` block
after it) in a scratch copy of the checkout's layout: ``artifacts/`` holding the real models and
photos, ``../shared`` the shared real data, no ``FACENET_ARTIFACTS``, so a command reads exactly
what a reader's would. The ``doc-test`` comments before a block (``docs/tooling/blocks.py``) say
which ones need a server, PostgreSQL, a fresh install or the nox sessions; every block is its own
test item, so a block that cannot run here (a container build without a container engine, an
install for aarch64 on another CPU) is reported skipped with its reason, never dropped.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.allowances import NO_CONTAINER_ENGINE, NOT_AARCH64, no_container_engine, not_aarch64
from helpers.real import artifacts_root

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from docs.tooling.blocks import (  # noqa: E402
    NOT_CODE,
    RUNNABLE,
    Block,
    blocks,
    documents,
    nox_commands,
    nox_sessions,
)

ALL = [block for document in documents() for block in blocks(document)]
RUN = [block for block in ALL if block.lang in RUNNABLE]
DOC_POSTGRES = "postgresql://facenet@db.example/faces"
"""The example PostgreSQL URL of the docs, replaced by the test server's."""
DOC_PORT = "8000"
"""The port of the docs' server examples, replaced by a free one."""
BLOCK_TIMEOUT = 1200
READY_TIMEOUT = 300
ERR_TRAP = ("set -o pipefail\n"
            "trap 'rc=$?; case \" $DOC_EXITS \" in *\" $rc \"*) ;; "
            "*) echo \"doc-test: exit $rc from: $BASH_COMMAND\" >&2; exit $rc;; esac' ERR\n")
"""Every command of a bash block must end with one of its allowed exit codes."""


@dataclass(frozen=True)
class Outcome:
    """What running one block gave."""

    ok: bool
    output: str = ""
    skipped: str | None = None


def test_every_block_is_an_example_or_plainly_not_code() -> None:
    assert RUN, "no runnable block found in the docs"
    for block in ALL:
        assert block.lang in RUNNABLE + NOT_CODE, (
            f"{block.name}: a ```{block.lang or '(no language)'} block: examples are bash or "
            f"python (they run), output and fragments are {', '.join(NOT_CODE)}")
        assert not block.options or block.lang in RUNNABLE, (
            f"{block.name}: doc-test options on a block that does not run")


def test_the_readme_has_its_examples() -> None:
    langs = [b.lang for b in RUN if b.path.name == "README.md"]
    assert "python" in langs and langs.count("bash") >= 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _sandbox(base: Path) -> Path:
    """A checkout-shaped folder: ``artifacts/`` with the real models and photos, ``../shared``."""
    artifacts = artifacts_root().resolve()
    for name in ("facenet.onnx", "mtcnn_pnet.onnx", "mtcnn_rnet.onnx", "mtcnn_onet.onnx"):
        if not (artifacts / "models" / name).is_file():
            pytest.skip(f"{artifacts / 'models' / name} missing: run `nox -s export` first")
    checkout = base / "checkout"
    (checkout / "artifacts").mkdir(parents=True)
    for sub in ("models", "pack", "source", "weights", "reference"):
        if (artifacts / sub).exists():
            (checkout / "artifacts" / sub).symlink_to(artifacts / sub)
    if (artifacts / "SHA256SUMS").is_file():
        shutil.copy(artifacts / "SHA256SUMS", checkout / "artifacts" / "SHA256SUMS")
    shared = ROOT.parent / "shared"
    if shared.is_dir():
        (base / "shared").symlink_to(shared)
    return checkout


def _container_engine() -> bool:
    """Whether ``docker`` is installed and its engine answers."""
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=60,
                              check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _aarch64() -> bool:
    """Whether this machine runs aarch64 code natively (a Raspberry Pi, an ARM server)."""
    return platform.machine().lower() in ("aarch64", "arm64")


def _env_bin(block: Block) -> Path:
    if block.options.get("env") == "modern":
        return Path(sys.executable).parent
    value = os.environ.get("FACENET_RUNTIME_PYTHON", "")
    if not value or not Path(value).is_file():
        pytest.skip(f"FACENET_RUNTIME_PYTHON={value!r} is not the runtime environment's python")
    return Path(value).parent


class PageRun:
    """The blocks of one document, run in order in one sandbox."""

    def __init__(self, base: Path, postgres_url: Callable[[], str]):
        self.base = base
        self.checkout = _sandbox(base)
        self.postgres_url = postgres_url
        self.port = str(_free_port())
        self.server: subprocess.Popen[str] | None = None
        self.server_log = base / "server.log"

    def environment(self, bin_dir: Path, block: Block) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "FACENET_ARTIFACTS"}
        env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(ROOT),
                   DOC_EXITS=" ".join(str(code) for code in sorted(block.exits)),
                   TF_CPP_MIN_LOG_LEVEL="2")
        return env

    def code(self, block: Block) -> str:
        code = block.code.replace(f"127.0.0.1:{DOC_PORT}", f"127.0.0.1:{self.port}")
        code = code.replace(f"--port {DOC_PORT}", f"--port {self.port}")
        if "postgres" in block.options:
            url = self.postgres_url()
            code = code.replace(DOC_POSTGRES + "?", url + ("&" if "?" in url else "?"))
            code = code.replace(DOC_POSTGRES, url)
        return code

    def run(self, block: Block) -> Outcome:
        if "nox" in block.options:
            return self.check_nox(block)
        if block.options.get("needs") == "docker":
            if not _container_engine():
                return Outcome(True, skipped=f"{NO_CONTAINER_ENGINE} (`docker info` "
                               "fails); tests/test_service_container.py repeats the image's "
                               "build stage and CMD")
            try:
                return self.run_shell(block, ROOT, _env_bin(block))
            finally:
                for name in re.findall(r"--name\s+(\S+)", block.code):
                    subprocess.run(["docker", "rm", "-f", name], capture_output=True,
                                   check=False, timeout=120)
        if block.options.get("needs") == "aarch64" and not _aarch64():
            return Outcome(True, skipped=f"{NOT_AARCH64} ({platform.machine()}); "
                           "tests/test_deploy_arm64.py installs the same lock into an emulated "
                           "arm64 Python and runs the pipeline there")
        if "server" in block.options:
            return self.start_server(block)
        if block.lang == "python":
            return self.run_python(block)
        if "install" in block.options:
            venv = self.base / "install-venv"
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            return self.run_shell(block, ROOT, venv / "bin")
        return self.run_shell(block, self.checkout, _env_bin(block))

    def run_shell(self, block: Block, cwd: Path, bin_dir: Path) -> Outcome:
        result = subprocess.run(["bash", "-c", ERR_TRAP + self.code(block)], cwd=cwd,
                                env=self.environment(bin_dir, block), capture_output=True,
                                text=True, timeout=BLOCK_TIMEOUT, check=False)
        ok = result.returncode in block.exits
        if ok and "install" in block.options:
            check = subprocess.run([str(bin_dir / "facenet"), "--version"], capture_output=True,
                                   text=True, check=False, cwd=self.base)
            ok, result.stdout = check.returncode == 0, result.stdout + check.stdout + check.stderr
        return Outcome(ok, f"exit {result.returncode}\n{result.stdout[-4000:]}\n"
                           f"{result.stderr[-4000:]}")

    def run_python(self, block: Block) -> Outcome:
        script = self.base / f"block_{block.line}.py"
        script.write_text(block.code, encoding="utf-8")
        python = _env_bin(block) / "python"
        result = subprocess.run([str(python), str(script)], cwd=self.checkout,
                                env=self.environment(python.parent, block), capture_output=True,
                                text=True, timeout=BLOCK_TIMEOUT, check=False)
        return Outcome(result.returncode == 0, f"exit {result.returncode}\n"
                       f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")

    def check_nox(self, block: Block) -> Outcome:
        known = nox_sessions()
        commands = nox_commands(block.code)
        unknown = [s for sessions in commands for s in sessions if s not in known]
        ok = bool(commands) and not unknown
        return Outcome(ok, f"sessions {commands}; unknown: {unknown}; noxfile: {sorted(known)}")

    def start_server(self, block: Block) -> Outcome:
        self.stop_server()
        log = self.server_log.open("w", encoding="utf-8")
        self.server = subprocess.Popen(
            ["bash", "-c", "exec " + self.code(block).strip().split("#", 1)[0]],
            cwd=self.checkout, env=self.environment(_env_bin(block), block), stdout=log,
            stderr=subprocess.STDOUT, text=True, start_new_session=True)
        url = f"http://127.0.0.1:{self.port}/readyz"
        deadline = READY_TIMEOUT
        while deadline > 0:
            if self.server.poll() is not None:
                return Outcome(False, self.server_log.read_text(encoding="utf-8"))
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    if answer.status == 200:
                        return Outcome(True, f"ready at {url}")
            except OSError:
                pass
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.server.wait(timeout=1)  # wakes early if the server exits
            deadline -= 1
        return Outcome(False, f"not ready at {url}:\n" + self.server_log.read_text())

    def stop_server(self) -> None:
        if self.server is not None and self.server.poll() is None:
            os.killpg(self.server.pid, signal.SIGTERM)
            try:
                self.server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.server.pid, signal.SIGKILL)
                self.server.wait()
        self.server = None


@pytest.fixture(scope="session")
def page_outcomes(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
                  ) -> Iterator[Callable[[Path], dict[int, Outcome]]]:
    """Run a document's blocks once (the first time one of its blocks is tested)."""
    done: dict[Path, dict[int, Outcome]] = {}

    def postgres_url() -> str:
        server = request.getfixturevalue("postgres_server")
        return str(server.url)

    def outcomes(path: Path) -> dict[int, Outcome]:
        if path not in done:
            run = PageRun(tmp_path_factory.mktemp(path.stem), postgres_url)
            results: dict[int, Outcome] = {}
            try:
                for block in (b for b in RUN if b.path == path):
                    if "client" not in block.options and run.server is not None:
                        run.stop_server()
                    results[block.line] = run.run(block)
            finally:
                run.stop_server()
            done[path] = results
        return done[path]

    yield outcomes


@pytest.mark.real
@pytest.mark.slow
@no_container_engine
@not_aarch64
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("block", RUN, ids=[block.name for block in RUN])
def test_block_runs(block: Block, page_outcomes: Callable[[Path], dict[int, Outcome]]) -> None:
    outcome = page_outcomes(block.path)[block.line]
    if outcome.skipped:
        pytest.skip(outcome.skipped)
    assert outcome.ok, f"{block.name} ({block.lang}):\n{block.code}\n---\n{outcome.output}"
