"""The bench's child process: one measurement, in a fresh interpreter.

``python -m toolchain.bench SPEC RESULT`` reads a task (:mod:`toolchain.bench.specs`) from the
JSON file ``SPEC``, runs it and writes its result as JSON to ``RESULT``. One process per
measurement keeps each runtime's peak RSS its own and no runtime warms another's caches.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.bench.detection import detect
from toolchain.bench.machine import repeat, sgemm_gflops, timed
from toolchain.bench.specs import (
    DetectSpec,
    EmbedSpec,
    EnrollSpec,
    OrtOptionsSpec,
    OrtSessionSpec,
    PairedSpec,
    RecognizeSpec,
    SeedColdStartSpec,
    SeedRecognizeSpec,
    SgemmSpec,
    TaskSpec,
    VideoSpec,
    decode,
)
from toolchain.convert.formats import FORMATS
from toolchain.convert.runners import ONNXRUNTIME, Infer, session_infer
from toolchain.core.contracts import EMBEDDING_DIM
from toolchain.core.errors import EnvironmentToolError
from toolchain.core.paths import Layout

BATCHES = (1, 16)
"""Batch sizes every embedding measurement runs at."""

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


def crops(artifacts: Path, count: int) -> np.ndarray:
    """``count`` prewhitened reference crops (repeated when there are fewer)."""
    from toolchain.convert.parity import load_reference
    from toolchain.core.preprocess import prewhiten

    reference = load_reference(Layout(artifacts)).crops
    reps = -(-count // len(reference))
    return prewhiten(np.concatenate([reference] * reps)[:count])


def load_format(fmt: str, path: Path) -> Infer:
    """Load format ``fmt``'s model in its runner; ONNX Runtime with the runtime's own session.

    The ONNX formats are measured as ``facenet recognize`` runs them: a session of
    :func:`toolchain.runtime.ort_options.create_session` (tuned settings, cached optimized graph).
    """
    spec = FORMATS[fmt]
    if spec.runner is ONNXRUNTIME:
        from toolchain.runtime.ort_options import create_session

        return session_infer(create_session(path))
    if spec.runner is None:
        raise ValueError(f"format {fmt} has no runner")
    return spec.runner.load(path)


def feeds(x: np.ndarray, batch: int, calls: int) -> list[np.ndarray]:
    """The inputs of ``calls`` calls at ``batch``, taken in turn from the 16 crops ``x``."""
    return [x[(i * batch) % 16 : (i * batch) % 16 + batch] for i in range(calls)]


def calls(infer: Infer, inputs: list[np.ndarray]) -> Callable[[], None]:
    """One timed repetition: ``infer`` on each input in turn.

    Every embedding measurement of the bench (the per-format rows, the alternated rows and the
    session settings) times this same loop over the same inputs, so their rates compare.
    """

    def run() -> None:
        for feed in inputs:
            infer(feed)

    return run


def embed(spec: EmbedSpec) -> dict[str, Any]:
    """Faces/s at batch 1 and 16, with load and first-call seconds, of one model."""
    x = crops(Path(spec.artifacts), 16)
    result: dict[str, Any] = {}
    start = time.perf_counter()
    infer = load_format(spec.fmt, Path(spec.path))
    load = time.perf_counter() - start
    for batch, count in zip(BATCHES, (spec.b1_calls, spec.b16_calls), strict=True):
        inputs = feeds(x, batch, count)
        first = time.perf_counter()
        out = infer(inputs[0])["embedding"]
        first_call = time.perf_counter() - first
        if out.shape != (batch, EMBEDDING_DIM) or not np.all(np.isfinite(out)):
            raise EnvironmentToolError(f"{spec.fmt}: bad output {out.shape} at batch {batch}")
        times = timed(calls(infer, inputs), spec.repeats)
        result[f"b{batch}"] = {
            "samples": [batch * count / t for t in times],
            "load_s": load if batch == BATCHES[0] else 0.0,
            "first_call_s": first_call,
        }
    return result


def ort_options(spec: OrtOptionsSpec) -> dict[str, Any]:
    """Session creation seconds and faces/s at batch 1 and 16 of each :data:`ORT_SETTINGS`, timed
    like every other embedding row (:func:`calls`, the same calls per repetition)."""
    from toolchain.runtime.ort_options import OrtSettings, create_session

    path = Path(spec.path)
    x = crops(Path(spec.artifacts), 16)
    create_session(path)  # the cached graph exists before its creation time is measured
    results = {}
    for label, overrides in ORT_SETTINGS.items():
        settings = OrtSettings(**overrides)
        start = time.perf_counter()
        session = create_session(path, settings)
        created = time.perf_counter() - start
        infer = session_infer(session)
        results[label] = {"settings": settings.describe(), "create_s": created}
        for batch, count in zip(BATCHES, (spec.b1_calls, spec.b16_calls), strict=True):
            times = timed(calls(infer, feeds(x, batch, count)), spec.repeats)
            results[label][f"b{batch}"] = [batch * count / t for t in times]
        del session
    return results


def paired(spec: PairedSpec) -> dict[str, Any]:
    """Models in one process, runs alternated (a load-robust ratio): ``bN`` -> format -> rate.

    Each model is loaded as its per-format row loads it (:func:`load_format`: the same session
    settings) and timed by the same loop (:func:`calls`), so an alternated row differs from its
    per-format row only by sharing the process and the time slots.
    """
    x = crops(Path(spec.artifacts), 16)
    models = {fmt: load_format(fmt, Path(path)) for fmt, path in spec.models.items()}
    result: dict[str, Any] = {}
    for batch, count in zip(BATCHES, (spec.b1_calls, spec.b16_calls), strict=True):
        runs = {fmt: calls(infer, feeds(x, batch, count)) for fmt, infer in models.items()}
        for run in runs.values():
            run()
        times: dict[str, list[float]] = {fmt: [] for fmt in runs}
        for _ in range(spec.repeats):
            for fmt, run in runs.items():
                times[fmt] += repeat(run, 1)
        result[f"b{batch}"] = {fmt: [batch * count / t for t in times[fmt]] for fmt in runs}
    return result


def ort_session(spec: OrtSessionSpec) -> dict[str, Any]:
    """Import ONNX Runtime and create one session."""
    from toolchain.runtime.ort_options import OrtSettings, create_session

    session = create_session(Path(spec.path), OrtSettings(cache_optimized=spec.cached))
    return {"inputs": len(session.get_inputs())}


def _images_per_second(photos: list[Path], job: Callable[[], list[str | None]],
                       repeats: int) -> dict[str, Any]:
    names: list[str | None] = []
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        names = job()
        times.append(time.perf_counter() - start)
    return {
        "samples": [len(photos) / t for t in times],
        "faces": len(names),
        "named": sum(1 for n in names if n),
    }


def recognize(spec: RecognizeSpec) -> dict[str, Any]:
    """Images/s of the ``recognize`` pipeline, faces found and faces named."""
    from toolchain.runtime.recognizer import Recognizer

    photos = [Path(p) for p in spec.photos]
    rec = Recognizer.from_artifacts(Path(spec.artifacts), gallery=Path(spec.gallery))
    if spec.full_resolution:
        from toolchain.runtime.mtcnn import MTCNNDetector

        rec.detector = MTCNNDetector(Layout(Path(spec.artifacts)).models_dir, max_side=None)
    rec.recognize(photos[0])
    return _images_per_second(
        photos, lambda: [m.name for photo in rec.recognize_many(photos) for m in photo.matches],
        spec.repeats)


def seed_recognize(spec: SeedRecognizeSpec) -> dict[str, Any]:
    """Images/s of the seed-style pipeline, faces found and faces named."""
    from toolchain.bench.baselines import SeedPipeline

    photos = [Path(p) for p in spec.photos]
    seed = SeedPipeline(Path(spec.keras), Path(spec.gallery_npz))
    seed.recognize(photos[0])
    return _images_per_second(
        photos, lambda: [name for p in photos for name in seed.recognize(p)], spec.repeats)


def seed_cold_start(spec: SeedColdStartSpec) -> dict[str, Any]:
    """The names the seed-style pipeline gives the faces of one photo."""
    from toolchain.bench.baselines import SeedPipeline

    seed = SeedPipeline(Path(spec.keras), Path(spec.gallery_npz))
    return {"names": seed.recognize(Path(spec.photo))}


def enroll(spec: EnrollSpec) -> dict[str, Any]:
    """Enroll the largest face of each photo; how many were added."""
    from toolchain.runtime.recognizer import Recognizer

    items = [(name, Path(p)) for name, p in spec.items]
    with Recognizer.from_artifacts(Path(spec.artifacts), gallery=Path(spec.gallery)) as rec:
        outcomes = rec.enroll_many(items, largest=True)
    return {"added": sum(1 for o in outcomes if o.ok)}


def video(spec: VideoSpec) -> dict[str, Any]:
    """Frames/s of tracking a clip (decode, detect and embed the picked frames, track), after a
    warm-up pass; frames analyzed, the names given and the tracks (label, first and last frame)
    of the last pass."""
    from toolchain.runtime.recognizer import Recognizer
    from toolchain.video import track

    samples: list[float] = []
    with Recognizer.from_artifacts(Path(spec.artifacts), gallery=Path(spec.gallery)) as rec:
        for _ in range(spec.repeats + 1):
            with track(rec, spec.clip, every=spec.every) as run:
                for frame in run:
                    if spec.frames is not None and frame.index + 1 >= spec.frames:
                        break
            summary = run.summary()
            samples.append(summary.frames_per_second)
    return {"samples": samples[1:], "frames": summary.frames, "analyzed": summary.analyzed,
            "clip_fps": summary.fps, "named": sorted({t.label for t in summary.tracks}),
            "tracks": sorted([t.label, t.first_frame, t.last_frame] for t in summary.tracks)}


def sgemm(spec: SgemmSpec) -> dict[str, Any]:
    """GFLOP/s of float32 matmuls."""
    return {"samples": sgemm_gflops(spec.n, spec.repeats)}


TASKS: dict[type[TaskSpec], Callable[[Any], dict[str, Any]]] = {
    SgemmSpec: sgemm,
    EmbedSpec: embed,
    OrtOptionsSpec: ort_options,
    OrtSessionSpec: ort_session,
    PairedSpec: paired,
    DetectSpec: detect,
    RecognizeSpec: recognize,
    SeedRecognizeSpec: seed_recognize,
    SeedColdStartSpec: seed_cold_start,
    EnrollSpec: enroll,
    VideoSpec: video,
}
"""The measurement each task type runs."""


def worker_main(argv: Sequence[str]) -> int:
    """Child entry point: run the task in ``argv[0]`` (JSON), write its result to ``argv[1]``."""
    spec = decode(Path(argv[0]).read_text(encoding="utf-8"))
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    result = TASKS[type(spec)](spec)
    Path(argv[1]).write_text(json.dumps(result), encoding="utf-8")
    return 0
