"""Opening the runtime's models from a model pack or an artifacts tree: the ONNX MTCNN and the
FaceNet embedder.

Which files a recognizer runs (the runtime and precision of :class:`~toolchain.runtime.backends.
ModelChoice`), their check (against the pack's manifest, or ``SHA256SUMS``:
:mod:`toolchain.runtime.pack`) and the sessions' thread count are decided here, apart from
:class:`~toolchain.runtime.recognizer.Recognizer`, which only uses a detector and an embedder
however they were made. Tests swap :func:`load_detector` in this module for a fake detector.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from toolchain.core.errors import InputError
from toolchain.runtime.backends import ModelChoice
from toolchain.runtime.embedder import Embedder
from toolchain.runtime.faces import FaceDetector
from toolchain.runtime.ort_options import DEFAULT_SETTINGS
from toolchain.runtime.pack import ModelSource, open_embedder


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
    source: ModelSource,
    *,
    runtime: str = "onnxruntime",
    precision: str = "fp32",
    threads: int = 0,
    detection: Mapping[str, Any] | None = None,
) -> tuple[FaceDetector, Embedder]:
    """The detector and embedder of ``source``, every file they load checked first.

    Args:
        source: a model pack (:func:`~toolchain.runtime.pack.open_pack`), or an artifacts tree's
            models (:func:`~toolchain.runtime.pack.artifacts_pack`).
        runtime: ``onnxruntime`` or ``openvino``, for the embedder and the detector.
        precision: ``fp32`` or ``int8``: which FaceNet model embeds
            (:data:`toolchain.runtime.backends.EMBEDDER_FILES`).
        threads: intra-op threads of every session (0: one per core).
        detection: keywords of :func:`load_detector` (default: the detector's own).

    Raises:
        InputError: an unknown runtime or precision.
        IntegrityError: a model file does not match the pack's manifest or ``SHA256SUMS``, or
            the manifest does not describe the model.
        MissingArtifactError: a model file is missing, or the pack holds no model for
            ``runtime`` and ``precision`` (the message names what makes it).
    """
    try:
        choice = ModelChoice(runtime, precision)  # type: ignore[arg-type]
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    embedder = open_embedder(source, choice, replace(DEFAULT_SETTINGS, intra_op_threads=threads))
    detector = load_detector(source.root, runtime=choice.runtime, threads=threads,
                             **(detection or {}))
    return detector, embedder
