"""The container recipe of ``facenet serve``, checked without a container daemon.

No machine here runs Docker, so the test does what can be done without one: it reads the
Dockerfile, repeats its build stage (each ``COPY`` into a private build folder, each ``RUN``,
with ``/opt/facenet`` a fresh virtualenv in a temporary folder), lays out the models the final
stage copies, starts the installed ``facenet`` with the image's ``CMD`` options (bound to
127.0.0.1 instead of 0.0.0.0, port 0) and checks ``/readyz``, the page and the docs assets, all
served from the installed wheel. The recipe's shape is checked too: two stages, a non-root
user, a health check on ``/healthz``, installs only from the pinned requirement files.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from service_server import ROOT, examples, models_artifacts, running_server

pytestmark = [pytest.mark.real, pytest.mark.slow]

CONTAINER = ROOT / "toolchain" / "service" / "container"
DOCKERFILE = CONTAINER / "Dockerfile"
VENV = "/opt/facenet"


def instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of the Dockerfile, continuation lines joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each ``FROM`` stage."""
    result: list[list[tuple[str, str]]] = []
    for word, rest in instructions():
        if word == "FROM":
            result.append([])
        if result:
            result[-1].append((word, rest))
    return result


def test_the_recipe_has_the_expected_shape() -> None:
    build, final = stages()
    assert build[0][1].endswith("AS build") and final[0][0] == "FROM"
    runs = [rest for word, rest in build if word == "RUN"]
    installs = [shlex.split(r) for r in runs if " install " in r]
    assert installs, runs
    for words in installs:
        options = [w for w in words[words.index("install") + 1:]]
        assert options in (["-r", "requirements/runtime.txt", "-r", "requirements/serve.txt"],
                           ["--no-deps", "."]), options
    user = next(rest for word, rest in final if word == "USER")
    assert user not in ("root", "0")
    health = next(rest for word, rest in final if word == "HEALTHCHECK")
    assert "127.0.0.1:8000/healthz" in health
    assert not any(word == "RUN" and "pip" in rest for word, rest in final)
    compose = (CONTAINER / "compose.yaml").read_text()
    assert "dockerfile: toolchain/service/container/Dockerfile" in compose
    assert '"127.0.0.1:8000:8000"' in compose and "--token-file" in compose


def copy_into(sources: list[str], destination: Path) -> None:
    """``COPY sources destination`` from the checkout (the build context)."""
    into_folder = len(sources) > 1 or str(destination).endswith("/")
    for source in sources:
        origin = ROOT / source
        target = destination / origin.name if into_folder else destination
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, target)


def test_the_build_steps_install_a_server_that_answers_readyz(tmp_path: Path) -> None:
    artifacts_models = models_artifacts() / "models"
    build, final = stages()
    venv = tmp_path / "venv"
    workdir = tmp_path / "src"
    workdir.mkdir()
    for word, rest in build:
        if word == "WORKDIR":
            continue
        if word == "COPY":
            *sources, target = rest.split()
            copy_into(sources, workdir / target if not target.startswith("/") else Path(target))
        elif word == "RUN":
            command = rest.replace(VENV, str(venv))
            if command.startswith("python "):
                command = f"{shlex.quote(sys.executable)} {command.removeprefix('python ')}"
            done = subprocess.run(command, shell=True, cwd=workdir, capture_output=True,
                                  text=True, timeout=900)
            assert done.returncode == 0, f"RUN {rest}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    models = tmp_path / "artifacts" / "models"
    models.mkdir(parents=True)
    for word, rest in final:
        if word == "COPY" and rest.startswith("artifacts/models/"):
            for name in rest.split()[:-1]:
                shutil.copy2(artifacts_models / Path(name).name, models / Path(name).name)
    assert sorted(p.name for p in models.iterdir()) == [
        "facenet.onnx", "mtcnn_onet.onnx", "mtcnn_pnet.onnx", "mtcnn_rnet.onnx"]

    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import toolchain, importlib.util as u; print(toolchain.__file__); "
         "print(u.find_spec('tensorflow') is None)"],
        cwd=tmp_path, capture_output=True, text=True, check=True, env={"PATH": "/usr/bin"})
    where, no_tensorflow = installed.stdout.split()
    assert where.startswith(str(venv)) and no_tensorflow == "True"

    cmd = json.loads(next(rest for word, rest in final if word == "CMD"))
    assert cmd[:2] == ["facenet", "serve"]
    options = dict(zip(cmd[2::2], cmd[3::2], strict=True))
    assert options.pop("--host") == "0.0.0.0" and options.pop("--port") == "8000"
    assert options.pop("--artifacts") == "/srv/facenet/artifacts"
    assert options.pop("--gallery").startswith("/data/")
    extra = [item for pair in options.items() for item in pair]
    data = tmp_path / "data"
    data.mkdir()
    with running_server(tmp_path, *extra, command=[str(venv / "bin" / "facenet")],
                        artifacts=models.parent, gallery=data / "gallery.db") as server:
        ready = server.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.text
        assert server.get("/healthz").json() == {"status": "ok"}
        assert "/static/app.js" in server.get("/").text
        assert server.get("/static/app.js").status_code == 200
        assert server.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
        photo = examples() / "photos" / "obama1.jpg"
        assert server.enroll("obama", photo).status_code == 201
        assert [f["name"] for f in server.recognize(photo).json()["faces"]] == ["obama"]
