"""``facenet bench``: every runtime side by side, in one run, on this machine.

Each measured runtime runs in its own child process (``python -m toolchain.bench SPEC RESULT``),
so its peak RSS (``ru_maxrss`` from ``os.wait4``) is its own and no runtime warms another's
caches. Every timing has a warm-up first and several repetitions; the report gives the median,
min and max, and ratios against baselines measured in the same run:

* sgemm: a large float32 numpy matmul, measured at the start and at the end of the run (the
  spread shows how much the machine's load moved during the run); on AVX-512 CPUs also with
  OpenBLAS forced onto its AVX-512 kernel (numpy's OpenBLAS may pick its AVX2 Haswell kernel
  for CPUs it does not know, such as recent AMD cores). The machine's sgemm rate is the fastest
  of these rows' medians, so "fraction of sgemm" never flatters a runtime;
* embedding throughput at batch 1 and 16: Keras 3 in a ``tf.function``, TF SavedModel, ONNX
  Runtime fp32 and int8, LiteRT fp32 / fp16 / int8 (``num_threads`` = cores), with achieved
  GFLOP/s (:data:`GFLOP_PER_FACE`) against the sgemm rate;
* ONNX Runtime fp32 vs int8 again, in one process with their runs alternated: a ratio that holds
  when the machine's load changes between the per-runtime processes;
* ONNX Runtime session options (threads, optimization levels, spinning, the cached optimized
  graph of :mod:`toolchain.runtime.ort_options`), including session creation in a fresh process;
* face detection ms/image: the ONNX MTCNN vs the ``mtcnn`` package, same photos;
* end to end images/s over the dataset photos: the ``recognize`` pipeline vs a seed-style
  pipeline (``mtcnn`` package + the Keras model's ``predict`` per face);
* cold start: wall time and peak RSS of ``facenet recognize one.jpg`` as a fresh process vs the
  same job in a fresh TensorFlow process;
* real-size photos (:data:`SHARED_EXAMPLES`, 0.1-3.4 MP, when that folder exists): recognize
  images/s with the default detection and with full-resolution detection, against the
  ``face_recognition`` CLI's per-photo code (dlib HOG, in its own environment given by
  ``--face-recognition-python``), galleries enrolled from the same ``people/`` folders; and wall
  time and peak RSS of ``facenet recognize`` on a 24 MP photo (a shared photo upscaled to
  6000x4000) in a fresh process.

Outputs ``reports/bench.json``, ``bench.md`` and ``bench.png``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.core.atomic import atomic_file, write_json, write_text
from toolchain.core.errors import EnvironmentToolError, MissingArtifactError
from toolchain.core.paths import Layout

log = logging.getLogger(__name__)

GFLOP_PER_FACE = 2.83
"""Floating-point operations of one 160x160 forward pass (2 x 1.417 G multiply-adds)."""

REPORT_NAMES = ("bench.json", "bench.md", "bench.png")

MODEL_FILES: dict[str, str] = {
    "keras": "facenet.keras",
    "savedmodel": "facenet_savedmodel",
    "ort-fp32": "facenet.onnx",
    "ort-int8": "facenet_int8.onnx",
    "litert-fp32": "facenet.tflite",
    "litert-fp16": "facenet_fp16.tflite",
    "litert-int8": "facenet_int8.tflite",
}
"""Embedding runtime -> model under ``artifacts/models`` (in report order)."""

MTCNN_FILES = ("mtcnn_pnet.onnx", "mtcnn_rnet.onnx", "mtcnn_onet.onnx")
EMBED_BASELINE = "savedmodel"
AVX512_CORETYPE = "COOPERLAKE"
"""OpenBLAS kernel forced for the AVX-512 sgemm row (AVX-512 FMA; runs on any AVX-512F CPU)."""
WORKER_TIMEOUT_S = 3600.0
SHARED_EXAMPLES = (Path(__file__).resolve().parents[2] / "shared" / "data"
                   / "face_recognition_examples")
"""Real photos of six people next to the checkout (``photos/`` queries, ``people/<name>/``)."""
LARGE_SOURCE = "obama-1080p.jpg"
LARGE_SIZE = (6000, 4000)
"""The 24 MP photo of the bench: :data:`LARGE_SOURCE` from the shared photos, upscaled."""
REAL_SECTION = "real_size"
OURS_REAL = "facenet recognize pipeline, default detection"
FULL_REAL = "facenet recognize pipeline, full-resolution detection"
DLIB_REAL = "face_recognition CLI per photo (dlib HOG)"
LARGE_ROW = f"facenet recognize one {LARGE_SIZE[0]}x{LARGE_SIZE[1]} photo, fresh process"


@dataclass(frozen=True)
class BenchConfig:
    """How much to measure.

    Attributes:
        repeats: timed repetitions of each measurement (after the warm-up).
        quick: the tiny setting for tests (few photos, tiny matmul, one run each).
        recognize_python: interpreter that runs ``-m toolchain recognize`` for the cold start
            (e.g. the runtime environment's, which has no TensorFlow); default: this one.
        face_recognition_python: interpreter of an environment with the ``face_recognition``
            package (``requirements/baseline.txt``); without it that baseline is not measured.
        real_photos: folder with ``photos/`` and ``people/<name>/`` (real-size photos); the
            real-size rows are skipped when it is missing.
    """

    repeats: int = 5
    quick: bool = False
    recognize_python: Path | None = None
    face_recognition_python: Path | None = None
    real_photos: Path = SHARED_EXAMPLES

    @property
    def sgemm_n(self) -> int:
        """Side of the square sgemm matrices."""
        return 256 if self.quick else 3072

    @property
    def b1_calls(self) -> int:
        """Batch-1 calls per timed repetition."""
        return 2 if self.quick else 16

    @property
    def b16_calls(self) -> int:
        """Batch-16 calls per timed repetition."""
        return 1 if self.quick else 2

    @property
    def detect_photos(self) -> int | None:
        """Photos per detection repetition (``None``: all)."""
        return 2 if self.quick else None

    @property
    def e2e_photos(self) -> int | None:
        """Photos per end-to-end repetition (``None``: all)."""
        return 2 if self.quick else None

    @property
    def e2e_repeats(self) -> int:
        """End-to-end repetitions (a seed-style pass over all photos takes minutes)."""
        return min(self.repeats, 3)

    @property
    def cold_runs(self) -> int:
        """Fresh processes per cold-start measurement."""
        return 1 if self.quick else max(3, self.repeats)

    @property
    def enroll_per_person(self) -> int | None:
        """Train photos per person enrolled into the bench gallery (``None``: all)."""
        return 1 if self.quick else None


@dataclass
class Row:
    """One measurement.

    Attributes:
        section: ``sgemm``, ``embedding``, ``paired``, ``ort_options``, ``detection``,
            ``end_to_end`` or ``cold_start``.
        name: what was measured.
        unit: unit of ``samples``.
        samples: one value per timed repetition.
        higher_is_better: whether larger samples are faster.
        baseline: the row this one's ``ratio`` is against.
        ratio: speed relative to ``baseline`` (> 1: faster), medians of both.
        gflops: achieved GFLOP/s (embedding rows).
        sgemm_fraction: ``gflops`` over the machine's sgemm rate (:func:`sgemm_rate`).
        peak_rss_mb: peak RSS of the process that measured it.
        detail: anything else worth keeping (load time, faces found, ...).
    """

    section: str
    name: str
    unit: str
    samples: list[float]
    higher_is_better: bool = True
    baseline: str | None = None
    ratio: float | None = None
    gflops: float | None = None
    sgemm_fraction: float | None = None
    peak_rss_mb: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        """Median of the samples."""
        return float(np.median(self.samples))

    @property
    def low(self) -> float:
        """Smallest sample."""
        return float(np.min(self.samples))

    @property
    def high(self) -> float:
        """Largest sample."""
        return float(np.max(self.samples))

    def as_json(self) -> dict[str, Any]:
        """The row with its statistics."""
        out = asdict(self)
        out.update(median=self.median, min=self.low, max=self.high)
        return out


@dataclass
class Target:
    """One target of the issue, as a ratio measured in this run."""

    name: str
    value: float | None
    goal: str
    met: bool
    detail: str


@dataclass
class BenchReport:
    """Everything one bench run measured."""

    rows: list[Row]
    targets: list[Target]
    meta: dict[str, Any]

    def row(self, section: str, name: str) -> Row | None:
        """The row called ``name`` in ``section``."""
        return next((r for r in self.rows if r.section == section and r.name == name), None)

    def as_json(self) -> dict[str, Any]:
        """The JSON document."""
        return {
            "meta": self.meta,
            "rows": [r.as_json() for r in self.rows],
            "targets": [asdict(t) for t in self.targets],
        }


# --------------------------------------------------------------------------------------------
# Worker side: one measurement per child process.
# --------------------------------------------------------------------------------------------


def _crops(artifacts: Path, count: int) -> np.ndarray:
    from toolchain.convert.parity import load_reference
    from toolchain.core.preprocess import prewhiten

    crops = load_reference(Layout(artifacts)).crops
    reps = -(-count // len(crops))
    return prewhiten(np.concatenate([crops] * reps)[:count])


def _core_count() -> int:
    from toolchain.runtime.ort_options import core_count

    return core_count()


def _repeat(fn: Callable[[], object], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def _timed(fn: Callable[[], object], repeats: int) -> list[float]:
    """One warm-up call, then ``repeats`` timed calls."""
    fn()
    return _repeat(fn, repeats)


def _embed_runner(runtime: str, path: Path, batch: int) -> Callable[[np.ndarray], np.ndarray]:
    """Load ``path`` in ``runtime``; return ``f(prewhitened batch) -> raw embeddings``."""
    if runtime == "keras":
        import keras
        import tensorflow as tf

        import toolchain.convert.architecture  # noqa: F401  (registers the custom layers)

        model = keras.saving.load_model(path, safe_mode=True, compile=False)
        fn = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec([None, 160, 160, 3], tf.float32)],
            autograph=False,
        )

        def run_keras(x: np.ndarray) -> np.ndarray:
            out = fn(tf.constant(x))
            return np.asarray((out[0] if isinstance(out, list | tuple) else out).numpy())

        return run_keras
    if runtime == "savedmodel":
        import tensorflow as tf

        signature = tf.saved_model.load(str(path)).signatures["serving_default"]
        input_name = next(iter(signature.structured_input_signature[1]))

        def run_savedmodel(x: np.ndarray) -> np.ndarray:
            out = signature(**{input_name: tf.constant(x)})
            key = "embedding" if "embedding" in out else sorted(out)[0]
            return np.asarray(out[key].numpy())

        return run_savedmodel
    if runtime.startswith("ort-"):
        from toolchain.runtime.ort_options import create_session

        session = create_session(path)
        feed_name = session.get_inputs()[0].name
        first_output = session.get_outputs()[0].name
        return lambda x: np.asarray(session.run([first_output], {feed_name: x})[0])
    if runtime.startswith("litert-"):
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path), num_threads=_core_count())
        inp = interpreter.get_input_details()[0]
        outputs = interpreter.get_output_details()
        interpreter.resize_tensor_input(inp["index"], [batch, 160, 160, 3])
        interpreter.allocate_tensors()
        named = [o for o in outputs if "embedding" in o["name"] and "l2" not in o["name"]]
        out_index = (named or outputs)[0]["index"]

        def run_litert(x: np.ndarray) -> np.ndarray:
            interpreter.set_tensor(inp["index"], x)
            interpreter.invoke()
            return np.asarray(interpreter.get_tensor(out_index))

        return run_litert
    raise ValueError(f"unknown runtime {runtime!r}")


def _task_sgemm(spec: dict[str, Any]) -> dict[str, Any]:
    n, repeats = int(spec["n"]), int(spec["repeats"])
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    times = _timed(lambda: a @ b, repeats)
    return {"samples": [2.0 * n**3 / t / 1e9 for t in times]}


def _task_embed(spec: dict[str, Any]) -> dict[str, Any]:
    runtime, path = spec["runtime"], Path(spec["path"])
    x = _crops(Path(spec["artifacts"]), 16)
    result: dict[str, Any] = {}
    shared: Callable[[np.ndarray], np.ndarray] | None = None
    for batch, calls in ((1, int(spec["b1_calls"])), (16, int(spec["b16_calls"]))):
        start = time.perf_counter()
        run = shared or _embed_runner(runtime, path, batch)
        if not runtime.startswith("litert-"):
            shared = run  # one model serves every batch size; LiteRT is resized per batch
        load = time.perf_counter() - start
        feeds = [x[(i * batch) % 16 : (i * batch) % 16 + batch] for i in range(calls)]
        first = time.perf_counter()
        out = run(feeds[0])
        first_call = time.perf_counter() - first
        if out.shape != (batch, 128) or not np.all(np.isfinite(out)):
            raise EnvironmentToolError(f"{runtime}: bad output {out.shape} at batch {batch}")

        def rep(feeds: list[np.ndarray] = feeds, run: Callable[..., np.ndarray] = run) -> None:
            for feed in feeds:
                run(feed)

        times = _timed(rep, int(spec["repeats"]))
        result[f"b{batch}"] = {
            "samples": [batch * calls / t for t in times],
            "load_s": load,
            "first_call_s": first_call,
        }
    return result


ORT_SETTINGS: dict[str, dict[str, Any]] = {
    "default: all + cached optimized graph": {},
    "all, no cache": {"cache_optimized": False},
    "extended": {"graph_optimization": "extended", "cache_optimized": False},
    "basic": {"graph_optimization": "basic", "cache_optimized": False},
    "disabled": {"graph_optimization": "disabled"},
    "1 intra-op thread": {"intra_op_threads": 1},
    "no spinning": {"allow_spinning": False},
    "parallel, 2 inter-op threads": {"execution_mode": "parallel", "inter_op_threads": 2},
}
"""Session settings the bench compares (overrides of ``ort_options.DEFAULT_SETTINGS``)."""


def _ort_calls(session: Any, x: np.ndarray, calls: int) -> Callable[[], None]:
    feed = {session.get_inputs()[0].name: x}
    output = [session.get_outputs()[0].name]

    def run() -> None:
        for _ in range(calls):
            session.run(output, feed)

    return run


def _task_ort_options(spec: dict[str, Any]) -> dict[str, Any]:
    from toolchain.runtime.ort_options import OrtSettings, create_session

    path = Path(spec["path"])
    x = _crops(Path(spec["artifacts"]), 16)
    create_session(path)  # the cached graph exists before its creation time is measured
    results = {}
    for label, overrides in ORT_SETTINGS.items():
        settings = OrtSettings(**overrides)
        start = time.perf_counter()
        session = create_session(path, settings)
        created = time.perf_counter() - start
        b1 = _timed(_ort_calls(session, x[:1], int(spec["b1_calls"])), int(spec["repeats"]))
        b16 = _timed(_ort_calls(session, x, 1), int(spec["repeats"]))
        results[label] = {
            "settings": settings.describe(),
            "create_s": created,
            "b1": [int(spec["b1_calls"]) / t for t in b1],
            "b16": [16 / t for t in b16],
        }
        del session
    return results


def _task_paired(spec: dict[str, Any]) -> dict[str, Any]:
    """ORT fp32 and int8 in one process, runs alternated (a load-robust ratio)."""
    from toolchain.runtime.ort_options import create_session

    x = _crops(Path(spec["artifacts"]), 16)
    sessions = {name: create_session(Path(path)) for name, path in spec["models"].items()}
    result: dict[str, Any] = {}
    for batch, calls in ((1, int(spec["b1_calls"])), (16, int(spec["b16_calls"]))):
        runs = {name: _ort_calls(s, x[:batch], calls) for name, s in sessions.items()}
        for run in runs.values():
            run()
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(int(spec["repeats"])):
            for name, run in runs.items():
                times[name] += _repeat(run, 1)
        for name in runs:
            result[f"{name} b{batch}"] = [batch * calls / t for t in times[name]]
    return result


def _task_ort_session(spec: dict[str, Any]) -> dict[str, Any]:
    """Import ONNX Runtime and create one session (a fresh process measures its cold cost)."""
    from toolchain.runtime.ort_options import OrtSettings, create_session

    session = create_session(Path(spec["path"]), OrtSettings(cache_optimized=spec["cached"]))
    return {"inputs": len(session.get_inputs())}


def _photos(spec: dict[str, Any]) -> list[Path]:
    return [Path(p) for p in spec["photos"]]


def _task_detect(spec: dict[str, Any]) -> dict[str, Any]:
    from toolchain.runtime.images import read_image

    images = [read_image(p).pixels for p in _photos(spec)]
    detect: Callable[[np.ndarray], int]
    if spec["impl"] == "ours":
        from toolchain.runtime.mtcnn import MTCNNDetector

        ours = MTCNNDetector(Path(spec["models_dir"]))

        def detect(image: np.ndarray) -> int:
            return len(ours.detect(image))
    else:
        from toolchain.convert.mtcnn_weights import package_detector

        package = package_detector()

        def detect(image: np.ndarray) -> int:
            return len(package.detect_faces(image))

    faces = [detect(image) for image in images]  # warm-up pass, also the face counts
    times = _repeat(lambda: [detect(image) for image in images], int(spec["repeats"]))
    return {"samples": [t / len(images) * 1e3 for t in times], "faces": faces}


def _task_e2e(spec: dict[str, Any]) -> dict[str, Any]:
    photos = _photos(spec)
    if spec["impl"] == "ours":
        from toolchain.runtime.recognizer import Recognizer

        rec = Recognizer.from_artifacts(Path(spec["artifacts"]), gallery=Path(spec["gallery"]))
        if "max_side" in spec:
            from toolchain.runtime.mtcnn import MTCNNDetector

            rec.detector = MTCNNDetector(Layout(Path(spec["artifacts"])).models_dir,
                                         max_side=spec["max_side"])
        rec.recognize(photos[0])

        def job() -> list[str | None]:
            return [m.name for photo in rec.recognize_many(photos) for m in photo.matches]
    else:
        seed = _SeedPipeline(Path(spec["keras"]), Path(spec["gallery_npz"]))
        seed.recognize(photos[0])

        def job() -> list[str | None]:
            return [name for p in photos for name in seed.recognize(p)]

    names: list[str | None] = []
    times = []
    for _ in range(int(spec["repeats"])):
        start = time.perf_counter()
        names = job()
        times.append(time.perf_counter() - start)
    return {
        "samples": [len(photos) / t for t in times],
        "faces": len(names),
        "named": sum(1 for n in names if n),
    }


class _SeedPipeline:
    """The seed's recognition (``utils/fmkf.py``): mtcnn package, abs() crop, Keras predict.

    Differences from the seed, all in its favour: the detector and model are built once (the
    seed builds a new ``MTCNN()`` per photo), every face is embedded (the seed takes the first
    one) and matching is nearest-neighbour on L2-normalized vectors (the seed fits an SVC on
    each call).
    """

    def __init__(self, keras_path: Path, gallery_npz: Path):
        import keras

        import toolchain.convert.architecture  # noqa: F401  (registers the custom layers)
        from toolchain.convert.mtcnn_weights import package_detector

        self.detector = package_detector()
        self.model = keras.saving.load_model(keras_path, safe_mode=True, compile=False)
        with np.load(gallery_npz, allow_pickle=False) as npz:
            vectors, self.names = npz["vectors"], [str(n) for n in npz["names"]]
        self.gallery = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def recognize(self, photo: Path) -> list[str | None]:
        from PIL import Image

        pixels = np.asarray(Image.open(photo).convert("RGB"))
        names: list[str | None] = []
        for result in self.detector.detect_faces(pixels):
            x1, y1, width, height = result["box"]
            x1, y1 = abs(x1), abs(y1)
            face = pixels[y1 : y1 + height, x1 : x1 + width]
            if face.size == 0:
                continue
            face = np.asarray(Image.fromarray(face).resize((160, 160))).astype("float32")
            face = (face - face.mean()) / face.std()
            emb = self.model.predict(face[None], verbose=0)
            vector = np.asarray(emb[0] if isinstance(emb, list | tuple) else emb)[0]
            vector = vector / np.linalg.norm(vector)
            names.append(self.names[int(np.argmax(self.gallery @ vector))])
        return names


FACE_RECOGNITION_SCRIPT = """
import contextlib, io, json, sys, time
from pathlib import Path

import face_recognition
from face_recognition import face_recognition_cli as cli

spec = json.loads(Path(sys.argv[1]).read_text())
names, known = [], []
for name, path in spec["people"]:
    found = face_recognition.face_encodings(face_recognition.load_image_file(path))
    if found:
        names.append(name)
        known.append(found[0])

def job():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for photo in spec["photos"]:
            cli.test_image(photo, names, known)
    return out.getvalue().splitlines()

job()
times = []
for _ in range(spec["repeats"]):
    start = time.perf_counter()
    lines = job()
    times.append(time.perf_counter() - start)
Path(sys.argv[2]).write_text(json.dumps({
    "samples": [len(spec["photos"]) / t for t in times], "known": len(names),
    "lines": len(lines), "no_face": sum(ln.endswith(",no_persons_found") for ln in lines)}))
"""
"""The ``face_recognition`` CLI's own per-photo code (``face_recognition_cli.test_image``: photos
wider than 1600 px thumbnailed, HOG detection upsampled once, 5-point landmarks, 128-d dlib
encodings, tolerance 0.6) on the bench's photos, known people scanned once like the CLI does, one
warm-up pass; run as ``python -c`` in the baseline environment (no toolchain there)."""


def _task_seed_recognize(spec: dict[str, Any]) -> dict[str, Any]:
    seed = _SeedPipeline(Path(spec["keras"]), Path(spec["gallery_npz"]))
    return {"names": seed.recognize(Path(spec["photo"]))}


def _task_enroll(spec: dict[str, Any]) -> dict[str, Any]:
    from toolchain.runtime.recognizer import Recognizer

    items = [(name, Path(p)) for name, p in spec["items"]]
    with Recognizer.from_artifacts(Path(spec["artifacts"]), gallery=Path(spec["gallery"])) as rec:
        outcomes = rec.enroll_many(items, largest=True)
    return {"added": sum(1 for o in outcomes if o.ok)}


TASKS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "sgemm": _task_sgemm,
    "embed": _task_embed,
    "ort_options": _task_ort_options,
    "ort_session": _task_ort_session,
    "paired": _task_paired,
    "detect": _task_detect,
    "e2e": _task_e2e,
    "seed_recognize": _task_seed_recognize,
    "enroll": _task_enroll,
}


def worker_main(argv: Sequence[str]) -> int:
    """Child entry point: run the task in ``argv[0]`` (JSON), write its result to ``argv[1]``."""
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    result = TASKS[spec["task"]](spec)
    Path(argv[1]).write_text(json.dumps(result), encoding="utf-8")
    return 0


# --------------------------------------------------------------------------------------------
# Parent side.
# --------------------------------------------------------------------------------------------


@dataclass
class ProcessRun:
    """One child process: its wall time, peak RSS and (for workers) result."""

    wall_s: float
    peak_rss_mb: float
    result: dict[str, Any]


def run_process(cmd: Sequence[str], env: dict[str, str] | None = None) -> ProcessRun:
    """Run ``cmd`` to completion; wall time and the child's own peak RSS (``os.wait4``).

    Raises:
        EnvironmentToolError: non-zero exit (the tail of its stderr is in the message).
    """
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd), stdout=subprocess.DEVNULL, stderr=err, env=env, start_new_session=False
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            tail = err.read().decode("utf-8", "replace").strip().splitlines()[-5:]
            raise EnvironmentToolError(
                f"{' '.join(cmd[:4])} ... exited {proc.returncode}: " + " | ".join(tail)
            )
    return ProcessRun(wall, usage.ru_maxrss / 1024.0, {})


def run_worker(
    spec: dict[str, Any], work: Path, env: dict[str, str] | None = None
) -> ProcessRun:
    """Run one bench task in a fresh ``python -m toolchain.bench.runner`` process."""
    tag = f"{spec['task']}-{time.monotonic_ns()}"
    spec_path, result_path = work / f"{tag}.spec.json", work / f"{tag}.result.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    log.info("bench: %s %s", spec["task"], spec.get("runtime") or spec.get("impl") or "")
    run = run_process(
        [sys.executable, "-m", "toolchain.bench", str(spec_path), str(result_path)], env
    )
    run.result = json.loads(result_path.read_text(encoding="utf-8"))
    return run


def required_artifacts(layout: Layout) -> dict[str, list[Path]]:
    """What the bench reads, by the nox session that makes it."""
    models = layout.models_dir
    return {
        "nox -s fetch": [layout.dataset_dir],
        "nox -s recover": [layout.reference_dir / "reference.npz",
                           layout.reference_dir / "index.json"],
        "nox -s export": [models / f for f in (*MODEL_FILES.values(), *MTCNN_FILES)],
    }


def check_artifacts(layout: Layout) -> None:
    """Raise :class:`MissingArtifactError` naming the nox session of the first missing group."""
    for session, paths in required_artifacts(layout).items():
        missing = [p for p in paths if not p.exists()]
        if missing:
            names = ", ".join(str(p) for p in missing)
            raise MissingArtifactError(f"the bench needs {names}; run `{session}` to create it")


def dataset_photos(layout: Layout) -> list[tuple[str, str, Path]]:
    """``(split, person, path)`` of every dataset photo, sorted."""
    from toolchain.runtime.images import IMAGE_SUFFIXES

    out = []
    for split in ("train", "val"):
        for path in sorted((layout.dataset_dir / split).glob("*/*")):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                out.append((split, path.parent.name, path))
    if not out:
        raise MissingArtifactError(f"no photos under {layout.dataset_dir}; run `nox -s fetch`")
    return out


def _spread(items: Sequence[Path], count: int) -> list[Path]:
    """``count`` items spread evenly over ``items``."""
    if count >= len(items):
        return list(items)
    idx = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in idx]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _isa() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return []
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines()
                  if ln.startswith("flags")), [])
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
    return [f for f in wanted if f in flags]


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("numpy", "onnxruntime", "tensorflow-cpu", "tensorflow", "keras",
                 "ai-edge-litert", "mtcnn"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


class _Runner:
    """Runs the bench's children and collects :class:`Row` objects."""

    def __init__(self, layout: Layout, config: BenchConfig, work: Path):
        self.layout, self.config, self.work = layout, config, work
        self.rows: list[Row] = []
        self.art = str(layout.root.resolve())

    def worker(self, spec: dict[str, Any], env: dict[str, str] | None = None) -> ProcessRun:
        return run_worker(spec, self.work, env)

    def sgemm(self, when: str, coretype: str | None = None) -> None:
        env = None if coretype is None else {**os.environ, "OPENBLAS_CORETYPE": coretype}
        run = self.worker({"task": "sgemm", "n": self.config.sgemm_n,
                           "repeats": self.config.repeats}, env)
        kernel = "" if coretype is None else f", OPENBLAS_CORETYPE={coretype}"
        self.rows.append(Row(
            "sgemm", f"numpy float32 matmul {self.config.sgemm_n}^3{kernel} ({when})",
            "GFLOP/s", run.result["samples"], peak_rss_mb=run.peak_rss_mb,
        ))

    def embedding(self) -> None:
        for runtime, name in MODEL_FILES.items():
            run = self.worker({
                "task": "embed", "runtime": runtime, "artifacts": self.art,
                "path": str((self.layout.models_dir / name).resolve()),
                "repeats": self.config.repeats, "b1_calls": self.config.b1_calls,
                "b16_calls": self.config.b16_calls,
            })
            for batch in ("b1", "b16"):
                got = run.result[batch]
                self.rows.append(Row(
                    "embedding", f"{runtime} {batch}", "faces/s", got["samples"],
                    peak_rss_mb=run.peak_rss_mb,
                    detail={"load_s": got["load_s"], "first_call_s": got["first_call_s"],
                            "model": name},
                ))

    def paired(self) -> None:
        models = {rt: str((self.layout.models_dir / MODEL_FILES[rt]).resolve())
                  for rt in ("ort-fp32", "ort-int8")}
        run = self.worker({"task": "paired", "artifacts": self.art, "models": models,
                           "repeats": self.config.repeats, "b1_calls": self.config.b1_calls,
                           "b16_calls": self.config.b16_calls})
        for name, samples in run.result.items():
            batch = name.rsplit(" ", 1)[1]
            self.rows.append(Row("paired", f"{name} (alternated)", "faces/s", samples,
                                 baseline=f"ort-fp32 {batch} (alternated)",
                                 peak_rss_mb=run.peak_rss_mb))

    def ort_options(self) -> None:
        onnx = str((self.layout.models_dir / MODEL_FILES["ort-fp32"]).resolve())
        run = self.worker({"task": "ort_options", "artifacts": self.art, "path": onnx,
                           "repeats": self.config.repeats, "b1_calls": self.config.b1_calls})
        for label, got in run.result.items():
            for batch in ("b1", "b16"):
                self.rows.append(Row(
                    "ort_options", f"{label} {batch}", "faces/s", got[batch],
                    baseline=f"{next(iter(ORT_SETTINGS))} {batch}",
                    detail={"settings": got["settings"], "create_s": got["create_s"]},
                ))
        for cached in (True, False):
            label = "cached optimized graph" if cached else "optimized at load"
            runs = [self.worker({"task": "ort_session", "path": onnx, "cached": cached})
                    for _ in range(self.config.cold_runs)]
            self.rows.append(Row(
                "ort_options", f"fresh process: import + session, {label}", "s",
                [r.wall_s for r in runs], higher_is_better=False,
                baseline="fresh process: import + session, optimized at load",
                peak_rss_mb=max(r.peak_rss_mb for r in runs),
            ))

    def detection(self, photos: list[Path]) -> None:
        count = self.config.detect_photos
        chosen = [str(p) for p in (photos if count is None else _spread(photos, count))]
        for impl, label in (("package", "mtcnn package"), ("ours", "onnx mtcnn")):
            run = self.worker({"task": "detect", "impl": impl, "photos": chosen,
                               "models_dir": str(self.layout.models_dir.resolve()),
                               "repeats": self.config.repeats})
            self.rows.append(Row(
                "detection", label, "ms/image", run.result["samples"], higher_is_better=False,
                baseline="mtcnn package", peak_rss_mb=run.peak_rss_mb,
                detail={"photos": len(chosen), "faces": run.result["faces"]},
            ))

    def end_to_end(self, photos: list[Path], gallery: Path, gallery_npz: Path) -> None:
        count = self.config.e2e_photos
        chosen = [str(p) for p in (photos if count is None else _spread(photos, count))]
        common = {"task": "e2e", "photos": chosen, "artifacts": self.art,
                  "repeats": self.config.e2e_repeats}
        for impl, label, extra in (
            ("seed", "seed-style (mtcnn package + Keras predict per face)",
             {"keras": str(self.layout.models_dir / MODEL_FILES["keras"]),
              "gallery_npz": str(gallery_npz)}),
            ("ours", "facenet recognize pipeline (onnx mtcnn + ort)", {"gallery": str(gallery)}),
        ):
            run = self.worker({**common, "impl": impl, **extra})
            self.rows.append(Row(
                "end_to_end", label, "images/s", run.result["samples"],
                baseline="seed-style (mtcnn package + Keras predict per face)",
                peak_rss_mb=run.peak_rss_mb,
                detail={"photos": len(chosen), "faces": run.result["faces"],
                        "named": run.result["named"]},
            ))

    def cold_start(self, photo: Path, gallery: Path, gallery_npz: Path) -> None:
        python = str(self.config.recognize_python or sys.executable)
        ours_cmd = [python, "-m", "toolchain", "-q", "recognize", str(photo),
                    "--gallery", str(gallery), "--artifacts", self.art]
        seed_spec = {"task": "seed_recognize", "photo": str(photo),
                     "keras": str(self.layout.models_dir / MODEL_FILES["keras"]),
                     "gallery_npz": str(gallery_npz)}
        ours, seed = [], []
        for _ in range(self.config.cold_runs):
            ours.append(run_process(ours_cmd))
            seed.append(self.worker(seed_spec))
        baseline = "TF pipeline (mtcnn package + Keras) recognize one.jpg"
        for label, runs, detail in (
            (baseline, seed, {"process": "python -m toolchain.bench.runner (seed_recognize)"}),
            ("facenet recognize one.jpg", ours, {"command": " ".join(ours_cmd[1:5])}),
        ):
            self.rows.append(Row(
                "cold_start", label, "s", [r.wall_s for r in runs], higher_is_better=False,
                baseline=baseline, peak_rss_mb=max(r.peak_rss_mb for r in runs),
                detail={**detail, "photo": photo.name, "python": python},
            ))

    def real_size(self, photos: list[Path], people: list[tuple[str, Path]]) -> None:
        """Real-size rows: ours (default and full-resolution detection) vs face_recognition."""
        gallery = self.work / "people_gallery.db"
        self.worker({"task": "enroll", "artifacts": self.art, "gallery": str(gallery),
                     "items": [[name, str(p)] for name, p in people]})
        chosen = [str(p) for p in (photos if self.config.e2e_photos is None
                                   else _spread(photos, self.config.e2e_photos))]
        common = {"task": "e2e", "impl": "ours", "photos": chosen, "artifacts": self.art,
                  "gallery": str(gallery), "repeats": self.config.e2e_repeats}
        detail = {"photos": len(chosen), "megapixels": _megapixels([Path(p) for p in chosen])}
        baseline = DLIB_REAL if self.config.face_recognition_python else None
        for label, extra in ((OURS_REAL, {}), (FULL_REAL, {"max_side": None})):
            run = self.worker({**common, **extra})
            self.rows.append(Row(
                REAL_SECTION, label, "images/s", run.result["samples"], baseline=baseline,
                peak_rss_mb=run.peak_rss_mb,
                detail={**detail, "faces": run.result["faces"], "named": run.result["named"]},
            ))
        if self.config.face_recognition_python is not None:
            spec_path = self.work / "face_recognition.spec.json"
            result_path = self.work / "face_recognition.result.json"
            spec_path.write_text(json.dumps({
                "photos": chosen, "people": [[name, str(p)] for name, p in people],
                "repeats": self.config.e2e_repeats}), encoding="utf-8")
            run = run_process([str(self.config.face_recognition_python), "-c",
                               FACE_RECOGNITION_SCRIPT, str(spec_path), str(result_path)])
            got = json.loads(result_path.read_text(encoding="utf-8"))
            self.rows.append(Row(
                REAL_SECTION, DLIB_REAL, "images/s", got["samples"], baseline=baseline,
                peak_rss_mb=run.peak_rss_mb,
                detail={**detail, "known": got["known"], "printed": got["lines"],
                        "no_face": got["no_face"],
                        "python": str(self.config.face_recognition_python)},
            ))
        source = next((p for p in photos if p.name == LARGE_SOURCE), photos[0])
        large = self.work / f"large_{LARGE_SIZE[0]}x{LARGE_SIZE[1]}.jpg"
        from PIL import Image

        with Image.open(source) as image:
            image.convert("RGB").resize(LARGE_SIZE, Image.Resampling.BICUBIC).save(large,
                                                                                   quality=92)
        python = str(self.config.recognize_python or sys.executable)
        cmd = [python, "-m", "toolchain", "-q", "recognize", str(large), "--gallery",
               str(gallery), "--artifacts", self.art]
        runs = [run_process(cmd) for _ in range(self.config.cold_runs)]
        self.rows.append(Row(
            REAL_SECTION, LARGE_ROW, "s", [r.wall_s for r in runs], higher_is_better=False,
            peak_rss_mb=max(r.peak_rss_mb for r in runs),
            detail={"source": source.name, "megapixels": LARGE_SIZE[0] * LARGE_SIZE[1] / 1e6,
                    "python": python},
        ))

    def prepare_galleries(self, photos: list[tuple[str, str, Path]]) -> tuple[Path, Path]:
        """Enroll the train photos into a fresh gallery; write the seed pipeline's npz."""
        from toolchain.convert.parity import load_reference

        per_person: dict[str, list[Path]] = {}
        for split, person, path in photos:
            if split == "train":
                per_person.setdefault(person, []).append(path)
        keep = self.config.enroll_per_person
        items = [[person, str(p)] for person, paths in per_person.items()
                 for p in (paths if keep is None else paths[:keep])]
        gallery = self.work / "bench_gallery.db"
        self.worker({"task": "enroll", "artifacts": self.art, "gallery": str(gallery),
                     "items": items})
        reference = load_reference(self.layout)
        train = [i for i, s in enumerate(reference.splits) if s == "train"]
        npz = self.work / "seed_gallery.npz"
        np.savez(npz, vectors=reference.embeddings[train],
                 names=np.array([reference.persons[i] for i in train]))
        return gallery, npz


def real_photos(folder: Path) -> tuple[list[Path], list[tuple[str, Path]]] | None:
    """``(query photos, (person, photo) to enroll)`` of a shared examples folder, or ``None``."""
    from toolchain.runtime.images import find_images, list_images

    if not (folder / "photos").is_dir() or not (folder / "people").is_dir():
        return None
    people = [(p.parent.name, p) for p in find_images(folder / "people")]
    photos = list_images(folder / "photos")
    return (photos, people) if photos and people else None


def _megapixels(paths: Sequence[Path]) -> dict[str, float]:
    from PIL import Image

    sizes = []
    for path in paths:
        with Image.open(path) as image:
            sizes.append(image.size[0] * image.size[1] / 1e6)
    return {"min": round(min(sizes), 2), "median": round(float(np.median(sizes)), 2),
            "max": round(max(sizes), 2)}


def _median(report_rows: Sequence[Row], section: str, name: str) -> float | None:
    row = next((r for r in report_rows if r.section == section and r.name == name), None)
    return row.median if row else None


def sgemm_rate(rows: Sequence[Row]) -> float | None:
    """The machine's sgemm rate: the fastest sgemm row's median."""
    return max((r.median for r in rows if r.section == "sgemm"), default=None)


def add_ratios(rows: list[Row]) -> None:
    """Fill ``ratio`` (speed vs the row's baseline), ``gflops`` and ``sgemm_fraction``."""
    sgemm_median = sgemm_rate(rows)
    for row in rows:
        if row.section == "embedding":
            batch = row.name.rsplit(" ", 1)[1]
            row.baseline = f"{EMBED_BASELINE} {batch}"
            row.gflops = row.median * GFLOP_PER_FACE
            if sgemm_median:
                row.sgemm_fraction = row.gflops / sgemm_median
        if row.baseline is None:
            continue
        base = _median(rows, row.section, row.baseline)
        if base:
            row.ratio = row.median / base if row.higher_is_better else base / row.median


def evaluate_targets(rows: list[Row]) -> list[Target]:
    """The issue's targets, each a ratio measured in this run."""

    def get(section: str, name: str) -> Row | None:
        return next((r for r in rows if r.section == section and r.name == name), None)

    targets: list[Target] = []

    def ratio_target(name: str, a: Row | None, b: Row | None, goal: float) -> None:
        if a is None or b is None:
            targets.append(Target(name, None, f">= {goal}x", False, "not measured"))
            return
        value = a.median / b.median if a.higher_is_better else b.median / a.median
        targets.append(Target(
            name, value, f">= {goal}x", value >= goal,
            f"{a.name} {a.median:.3g} {a.unit} vs {b.name} {b.median:.3g} {b.unit}",
        ))

    fp32 = get("embedding", "ort-fp32 b16")
    if fp32 is not None and fp32.sgemm_fraction is not None:
        targets.append(Target(
            "ORT fp32 batch 16 vs the sgemm rate", fp32.sgemm_fraction, ">= 0.9",
            fp32.sgemm_fraction >= 0.9,
            f"{fp32.gflops:.1f} GFLOP/s achieved ({GFLOP_PER_FACE} GFLOP/face)",
        ))
    ratio_target("ORT int8 vs ORT fp32, batch 16", get("embedding", "ort-int8 b16"), fp32, 1.5)
    alternated = get("paired", "ort-int8 b16 (alternated)")
    if alternated is not None and alternated.ratio is not None and targets[-1].value:
        targets[-1].detail += f"; alternated in one process: x{alternated.ratio:.2f}"
    ratio_target("ORT fp32 vs TF SavedModel, batch 1", get("embedding", "ort-fp32 b1"),
                 get("embedding", "savedmodel b1"), 2.0)
    ratio_target("detection: onnx mtcnn vs mtcnn package", get("detection", "onnx mtcnn"),
                 get("detection", "mtcnn package"), 4.0)
    e2e = [r for r in rows if r.section == "end_to_end"]
    ratio_target("end to end: recognize vs seed-style",
                 next((r for r in e2e if r.name.startswith("facenet")), None),
                 next((r for r in e2e if r.name.startswith("seed")), None), 4.0)
    ours_real = get(REAL_SECTION, OURS_REAL)
    targets.append(Target(
        "real-size photos: recognize images/s", ours_real.median if ours_real else None,
        ">= 10", ours_real is not None and ours_real.median >= 10,
        "not measured" if ours_real is None else
        f"{ours_real.detail.get('photos')} shared photos, "
        f"{ours_real.detail.get('megapixels', {}).get('median')} MP median",
    ))
    ratio_target("real-size photos: recognize vs face_recognition CLI", ours_real,
                 get(REAL_SECTION, DLIB_REAL), 8.0)
    large = get(REAL_SECTION, LARGE_ROW)
    targets.append(Target(
        "peak RSS of `facenet recognize` on a 24 MP photo (MB)",
        large.peak_rss_mb if large else None, "<= 1024",
        large is not None and large.peak_rss_mb is not None and large.peak_rss_mb <= 1024,
        "not measured" if large is None else f"{large.median:.2f} s wall, fresh process",
    ))
    cold = get("cold_start", "facenet recognize one.jpg")
    if cold is not None:
        targets.append(Target("cold start of `facenet recognize one.jpg`", cold.median,
                              "<= 1.5 s", cold.median <= 1.5,
                              f"median of {len(cold.samples)} fresh processes"))
    return targets


def run_bench(layout: Layout, config: BenchConfig) -> BenchReport:
    """Measure everything (see the module docstring) and write the three report files.

    Raises:
        MissingArtifactError: an input is missing (names the nox session that makes it).
        EnvironmentToolError: a measured child process failed.
    """
    check_artifacts(layout)
    photos = dataset_photos(layout)
    paths = [p for _, _, p in photos]
    started = time.time()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="facenet-bench-") as tmp:
        runner = _Runner(layout, config, Path(tmp))
        gallery, gallery_npz = runner.prepare_galleries(photos)
        runner.sgemm("start")
        if "avx512f" in _isa():
            runner.sgemm("start", AVX512_CORETYPE)
        runner.embedding()
        runner.paired()
        runner.ort_options()
        runner.detection(paths)
        runner.end_to_end(paths, gallery, gallery_npz)
        one = next(p for split, _, p in photos if split == "val")
        runner.cold_start(one, gallery, gallery_npz)
        real = real_photos(config.real_photos)
        if real is None:
            log.warning("bench: no photos/ and people/ under %s; real-size rows skipped",
                        config.real_photos)
        else:
            runner.real_size(*real)
        runner.sgemm("end")
        rows = runner.rows
    add_ratios(rows)
    meta = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "quick": config.quick,
        "repeats": config.repeats,
        "e2e_repeats": config.e2e_repeats,
        "cold_runs": config.cold_runs,
        "cpu": _cpu_model(),
        "isa": _isa(),
        "cores": _core_count(),
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "versions": _versions(),
        "gflop_per_face": GFLOP_PER_FACE,
        "photos": len(paths),
        "real_photos": str(config.real_photos),
    }
    report = BenchReport(rows, evaluate_targets(rows), meta)
    write_reports(layout, report)
    return report


# --------------------------------------------------------------------------------------------
# Reports.
# --------------------------------------------------------------------------------------------

SECTION_TITLES = {
    "sgemm": "Machine sgemm rate (the fastest row's median is the rate)",
    "embedding": "Embedding throughput (baseline: TF SavedModel at the same batch)",
    "paired": "ONNX Runtime fp32 vs int8 in one process, runs alternated (load-robust ratio)",
    "ort_options": "ONNX Runtime session options (fp32; baseline: the default settings)",
    "detection": "Face detection (baseline: the mtcnn package)",
    "end_to_end": "End to end over the dataset photos (baseline: seed-style pipeline)",
    "cold_start": "Cold start, fresh process (baseline: the TF pipeline)",
    REAL_SECTION: "Real-size photos, shared photos/ (0.1-3.4 MP; baseline: the face_recognition "
                  "CLI's per-photo code) and a 24 MP photo",
}


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}g}"


def markdown(report: BenchReport) -> str:
    """``bench.md``: targets, then one table per section."""
    meta = report.meta
    lines = [
        "# facenet bench",
        "",
        f"{meta['started']}, {meta['duration_s']} s; CPU {meta['cpu']} ({meta['cores']} cores, "
        f"{', '.join(meta['isa'])}); load average before {meta['loadavg_before']}, after "
        f"{meta['loadavg_after']}; repeats {meta['repeats']} (end to end "
        f"{meta['e2e_repeats']}, cold start {meta['cold_runs']})"
        + ("; QUICK setting, numbers not meaningful" if meta["quick"] else "") + ".",
        "",
        "Medians over the timed repetitions (after a warm-up), min and max; ratio = speed "
        "relative to the section's baseline measured in this run (> 1: faster).",
        "",
        "## Targets",
        "",
        "| target | measured | goal | met | detail |",
        "|---|---|---|---|---|",
    ]
    for t in report.targets:
        lines.append(f"| {t.name} | {_fmt(t.value)} | {t.goal} | {'yes' if t.met else 'NO'} | "
                     f"{t.detail} |")
    for section, title in SECTION_TITLES.items():
        rows = [r for r in report.rows if r.section == section]
        if not rows:
            continue
        lines += ["", f"## {title}", "",
                  "| measurement | unit | median | min | max | ratio | GFLOP/s | of sgemm "
                  "| peak RSS MB |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(
                f"| {r.name} | {r.unit} | {_fmt(r.median, 4)} | {_fmt(r.low, 4)} | "
                f"{_fmt(r.high, 4)} | {_fmt(r.ratio)} | {_fmt(r.gflops, 4)} | "
                f"{'' if r.sgemm_fraction is None else f'{r.sgemm_fraction:.0%}'} | "
                f"{_fmt(r.peak_rss_mb, 4)} |"
            )
    return "\n".join(lines) + "\n"


def chart(report: BenchReport, path: Path) -> None:
    """``bench.png``: one panel per section, medians with min-max whiskers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5))
    rate = sgemm_rate(report.rows)
    panels: list[tuple[str, Callable[[Row], bool], str]] = [
        ("Embedding, batch 1 (faces/s)", lambda r: r.section == "embedding"
         and r.name.endswith(" b1"), "faces/s"),
        ("Embedding, batch 16 (faces/s)", lambda r: r.section == "embedding"
         and r.name.endswith(" b16"), "faces/s"),
        ("Face detection (ms/image, lower is better)", lambda r: r.section == "detection",
         "ms/image"),
        ("End to end (images/s)", lambda r: r.section in ("end_to_end", REAL_SECTION)
         and r.unit == "images/s", "images/s"),
        ("Cold start (s, lower is better)", lambda r: r.section == "cold_start", "s"),
        ("Peak RSS of each measured process (MB)", lambda r: r.peak_rss_mb is not None
         and r.section in ("embedding", "detection", "end_to_end", "cold_start", REAL_SECTION)
         and not r.name.endswith(" b1"), "MB"),
    ]
    for ax, (title, pick, unit) in zip(axes.flat, panels, strict=True):
        rows = [r for r in report.rows if pick(r)]
        labels = [textwrap.fill(r.name.removesuffix(" b16").removesuffix(" b1"), 26)
                  for r in rows]
        if unit == "MB":
            values = [r.peak_rss_mb or 0.0 for r in rows]
            ax.barh(labels, values, color="#7a7a7a")
        else:
            values = [r.median for r in rows]
            err = np.array([[r.median - r.low for r in rows], [r.high - r.median for r in rows]])
            colors = ["#2a7ab9" if r.baseline and r.name != r.baseline else "#b0b0b0"
                      for r in rows]
            ax.barh(labels, values, xerr=err, color=colors, capsize=3)
            for y, r in enumerate(rows):
                note = f" {r.median:.3g}" + (f"  x{r.ratio:.2f}" if r.ratio else "")
                ax.text(r.high, y, note, va="center", fontsize=8)
        if title.startswith("Embedding, batch 16") and rate:
            ax.axvline(rate / GFLOP_PER_FACE, color="#c03030", linestyle="--",
                       label=f"sgemm rate {rate:.0f} GFLOP/s")
            ax.legend(loc="lower right", fontsize=8)
        if title.startswith("Cold start"):
            ax.axvline(1.5, color="#c03030", linestyle="--", label="target 1.5 s")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=8)
        ax.margins(x=0.25)
    quick = " (QUICK setting)" if report.meta["quick"] else ""
    fig.suptitle(f"facenet bench{quick}: {report.meta['cpu']}, {report.meta['cores']} cores, "
                 f"load {report.meta['loadavg_before'][0]:.1f} -> "
                 f"{report.meta['loadavg_after'][0]:.1f}", fontsize=11)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def write_reports(layout: Layout, report: BenchReport) -> list[Path]:
    """Write ``bench.json``, ``bench.md`` and ``bench.png`` (each atomically)."""
    out = [layout.reports_dir / name for name in REPORT_NAMES]
    write_json(out[0], report.as_json())
    write_text(out[1], markdown(report))
    chart(report, out[2])
    return out


def console_table(report: BenchReport) -> str:
    """The targets and headline rows as plain text for the command's output."""
    lines = [f"{'measurement':<64} {'median':>10} {'unit':<9} {'ratio':>7}"]
    for r in report.rows:
        if r.section == "ort_options":
            continue
        lines.append(f"{r.section + ': ' + r.name:<64.64} {r.median:>10.4g} {r.unit:<9} "
                     f"{'' if r.ratio is None else f'x{r.ratio:.2f}':>7}")
    lines.append("")
    for t in report.targets:
        lines.append(f"[{'met' if t.met else 'NOT met'}] {t.name}: {_fmt(t.value)} "
                     f"(goal {t.goal}) {t.detail}")
    return "\n".join(lines)

