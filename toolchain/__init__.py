"""facenet-toolchain: recover, rebuild, export and run the legacy Keras FaceNet model.

The public API, for example::

    from toolchain import Recognizer

    with Recognizer.from_artifacts("artifacts", gallery="people.db") as rec:
        rec.enroll("Ada", "photos/ada.jpg")
        for match in rec.recognize("photos/group.jpg"):
            print(match.label, match.distance, match.box)

The names below are imported on first use (PEP 562): ``import toolchain`` loads neither
onnxruntime nor numpy, and the legacy environment imports the pure submodules
(``toolchain.legacy``, ``toolchain.core``) without the modern stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from toolchain.core.lazy import lazy_exports
from toolchain.core.version import __version__ as __version__

_EXPORTS: dict[str, str] = {
    "Recognizer": "toolchain.runtime.recognizer",
    "Match": "toolchain.runtime.faces",
    "Comparison": "toolchain.runtime.faces",
    "EnrollOutcome": "toolchain.runtime.faces",
    "EnrollStatus": "toolchain.runtime.faces",
    "Embedder": "toolchain.runtime.embedder",
    "MTCNNDetector": "toolchain.runtime.mtcnn",
    "Gallery": "toolchain.gallery",
    "MatchMode": "toolchain.gallery",
    "ToolchainError": "toolchain.core.errors",
    "track": "toolchain.video.tracking",
}
"""Each public name and the module that defines it."""

__all__ = [
    "Comparison",
    "Embedder",
    "EnrollOutcome",
    "EnrollStatus",
    "Gallery",
    "MTCNNDetector",
    "Match",
    "MatchMode",
    "Recognizer",
    "ToolchainError",
    "track",
]

if TYPE_CHECKING:
    from toolchain.core.errors import ToolchainError
    from toolchain.gallery import Gallery, MatchMode
    from toolchain.runtime.embedder import Embedder
    from toolchain.runtime.faces import Comparison, EnrollOutcome, EnrollStatus, Match
    from toolchain.runtime.mtcnn import MTCNNDetector
    from toolchain.runtime.recognizer import Recognizer
    from toolchain.video.tracking import track


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
