"""Face detection timing: the ONNX Runtime MTCNN against the ``mtcnn`` package, same photos.

The worker task behind the bench's ``detection`` rows. The package needs TensorFlow and is
imported only when it is the detector measured; ours uses only ONNX Runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.bench.machine import repeat
from toolchain.bench.specs import DetectSpec


def face_counter(spec: DetectSpec) -> Callable[[np.ndarray], int]:
    """``count(image) -> faces found`` of the detector ``spec`` names."""
    if spec.detector == "ours":
        from toolchain.runtime.mtcnn import MTCNNDetector

        ours = MTCNNDetector(Path(spec.models_dir))
        return lambda image: len(ours.detect(image))
    from toolchain.convert.mtcnn_weights import package_detector

    package = package_detector()
    return lambda image: len(package.detect_faces(image))


def detect(spec: DetectSpec) -> dict[str, Any]:
    """Milliseconds per photo of one detector (after a warm-up pass), and its faces per photo."""
    from toolchain.runtime.images import read_image

    images = [read_image(Path(p)).pixels for p in spec.photos]
    count = face_counter(spec)
    faces = [count(image) for image in images]
    times = repeat(lambda: [count(image) for image in images], spec.repeats)
    return {"samples": [t / len(images) * 1e3 for t in times], "faces": faces}
