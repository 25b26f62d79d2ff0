"""Opening the runtime's models from an artifacts tree: the ONNX MTCNN and the FaceNet embedder.

Which files a recognizer runs (the runtime and precision of :class:`~toolchain.runtime.backends.
ModelChoice`), their check against ``SHA256SUMS`` and the sessions' thread count are decided
here, apart from :class:`~toolchain.runtime.recognizer.Recognizer`, which only uses a detector
and an embedder however they were made. Tests swap :func:`load_detector` in this module for a
fake detector.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from toolchain.core.contracts import MTCNN_FILES
from toolchain.core.errors import InputError
from toolchain.core.integrity import verify_file
from toolchain.core.paths import Layout
from toolchain.runtime.backends import ModelChoice
from toolchain.runtime.embedder import Embedder
from toolchain.runtime.faces import FaceDetector
from toolchain.runtime.ort_options import DEFAULT_SETTINGS


def load_detector(models_dir: Path, **options: Any) -> FaceDetector:
    """The ONNX MTCNN from ``models_dir``.

    Args:
        models_dir: directory of the three MTCNN nets.
        **options: :class:`~toolchain.runtime.mtcnn.MTCNNDetector` keywords, e.g. the detection
            policy of real-size photos (``min_face_size``, ``max_side``).

    Raises:
        MissingArtifactError: one of its three models is missing.
        InputError: an option is out of range.
    """
    from toolchain.runtime.mtcnn import MTCNNDetector

    return MTCNNDetector(models_dir, **options)


def load_models(
    layout: Layout,
    *,
    runtime: str = "onnxruntime",
    precision: str = "fp32",
    threads: int = 0,
    detection: Mapping[str, Any] | None = None,
) -> tuple[FaceDetector, Embedder]:
    """The detector and embedder of ``layout``'s models, each file present checked first.

    Args:
        layout: the artifacts tree holding ``models/``.
        runtime: ``onnxruntime`` or ``openvino``, for the embedder and the detector.
        precision: ``fp32`` or ``int8``: which FaceNet model embeds
            (:data:`toolchain.runtime.backends.EMBEDDER_FILES`).
        threads: intra-op threads of every session (0: one per core).
        detection: keywords of :func:`load_detector` (default: the detector's own).

    Raises:
        InputError: an unknown runtime or precision.
        IntegrityError: a model file does not match ``SHA256SUMS``.
        MissingArtifactError: a model file is missing (names `nox -s export`).
    """
    try:
        choice = ModelChoice(runtime, precision)  # type: ignore[arg-type]
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    model = layout.models_dir / choice.embedder_file
    for path in (model.parent if choice.runtime == "openvino" else model,
                 *(layout.models_dir / name for name in MTCNN_FILES.values())):
        if path.exists():
            verify_file(path, layout)
    embedder = Embedder(model, runtime=choice.runtime, export_hint=choice.export_hint,
                        settings=replace(DEFAULT_SETTINGS, intra_op_threads=threads))
    detector = load_detector(layout.models_dir, runtime=choice.runtime, threads=threads,
                             **(detection or {}))
    return detector, embedder
