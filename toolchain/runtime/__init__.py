"""Face recognition on the exported ONNX models: ONNX Runtime, numpy, Pillow; no TensorFlow.

The runtime's public names are imported on first use (PEP 562), so ``import toolchain.runtime``
loads neither onnxruntime nor numpy:

- :class:`Recognizer` (``recognizer``): detect, embed, enroll and recognize faces in photos, with
  its results (``faces``) :class:`Face`, :class:`Match`, :class:`PhotoFaces`,
  :class:`PhotoMatches`, :class:`EnrollOutcome` / :class:`EnrollStatus`.
- :class:`Embedder` (``embedder``): the FaceNet ONNX model, crops to unit embeddings.
- :class:`MTCNNDetector` / :class:`Detection` (``mtcnn``): the ONNX MTCNN face detector.
- :func:`read_image` / :class:`LoadedImage` (``images``): photos decoded to upright RGB.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from toolchain.core.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "Recognizer": "toolchain.runtime.recognizer",
    "Face": "toolchain.runtime.faces",
    "Match": "toolchain.runtime.faces",
    "ComparedFace": "toolchain.runtime.faces",
    "Comparison": "toolchain.runtime.faces",
    "ThresholdSource": "toolchain.runtime.faces",
    "CropSource": "toolchain.runtime.faces",
    "PhotoFaces": "toolchain.runtime.faces",
    "PhotoMatches": "toolchain.runtime.faces",
    "EnrollOutcome": "toolchain.runtime.faces",
    "EnrollStatus": "toolchain.runtime.faces",
    "Embedder": "toolchain.runtime.embedder",
    "MTCNNDetector": "toolchain.runtime.mtcnn",
    "Detection": "toolchain.runtime.mtcnn",
    "LoadedImage": "toolchain.runtime.images",
    "read_image": "toolchain.runtime.images",
}
"""Each public name and the module that defines it."""

__all__ = [
    "ComparedFace",
    "Comparison",
    "CropSource",
    "Detection",
    "Embedder",
    "EnrollOutcome",
    "EnrollStatus",
    "Face",
    "LoadedImage",
    "MTCNNDetector",
    "Match",
    "PhotoFaces",
    "PhotoMatches",
    "Recognizer",
    "ThresholdSource",
    "read_image",
]

if TYPE_CHECKING:
    from toolchain.runtime.embedder import Embedder
    from toolchain.runtime.faces import (
        ComparedFace,
        Comparison,
        CropSource,
        EnrollOutcome,
        EnrollStatus,
        Face,
        Match,
        PhotoFaces,
        PhotoMatches,
        ThresholdSource,
    )
    from toolchain.runtime.images import LoadedImage, read_image
    from toolchain.runtime.mtcnn import Detection, MTCNNDetector
    from toolchain.runtime.recognizer import Recognizer


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
