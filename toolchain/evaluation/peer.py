"""The ``face_recognition`` package as a peer, run in its own environment.

``face_recognition`` (dlib's HOG detector and ResNet encodings) is what many users compare face
recognition with; its ``compare_faces`` and CLI call two faces the same person when their
encodings are within a tolerance of :data:`PEER_TOLERANCE`. It needs dlib, which the runtime does
not carry, so :class:`PeerPhotos` runs :data:`PEER_SCRIPT` with the interpreter of an environment
that has it (``nox``'s ``baseline``) and reads back each photo's boxes and encodings.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.core.errors import EnvironmentToolError, InputError

PEER_TOLERANCE = 0.6
"""``face_recognition.compare_faces``' and its CLI's default tolerance (Euclidean distance
between encodings)."""

PEER_SCRIPT = """
import json, sys
from pathlib import Path

import numpy as np
import face_recognition
from importlib.metadata import version
from PIL import Image

photos = json.loads(Path(sys.argv[1]).read_text())
out = {}
for path in photos:
    try:
        image = face_recognition.load_image_file(path)
    except Exception as exc:
        out[path] = {"error": f"{type(exc).__name__}: {exc}"}
        continue
    scale = 1.0
    if max(image.shape) > 1600:
        pil = Image.fromarray(image)
        pil.thumbnail((1600, 1600), Image.LANCZOS)
        scale = image.shape[1] / pil.width
        image = np.array(pil)
    locations = face_recognition.face_locations(image)
    encodings = face_recognition.face_encodings(image, known_face_locations=locations)
    out[path] = {
        "boxes": [[left * scale, top * scale, (right - left) * scale, (bottom - top) * scale]
                  for top, right, bottom, left in locations],
        "encodings": [e.tolist() for e in encodings],
    }
Path(sys.argv[2]).write_text(json.dumps({"version": version("face_recognition"), "photos": out}))
"""
"""Per photo, what the ``face_recognition`` CLI does (``face_recognition_cli.test_image``: photos
larger than 1600 px thumbnailed, HOG detection upsampled once, 5-point landmarks, one 128-d
encoding per face); boxes are mapped back to the photo's pixels."""

PEER_TIMEOUT_S = 3600.0
"""The longest the peer may take over all photos."""


@dataclass(frozen=True)
class PeerFace:
    """A face the peer found: its box in photo pixels (no confidence or landmarks of its own)."""

    box: tuple[float, float, float, float]
    confidence: float = 1.0
    keypoints: Mapping[str, tuple[float, float]] = field(default_factory=dict)


class PeerPhotos:
    """The peer's faces and encodings of a list of photos, computed in one run of its process."""

    def __init__(self, python: Path, photos: Sequence[Path]):
        """Run :data:`PEER_SCRIPT` on ``photos`` with ``python``.

        Raises:
            EnvironmentToolError: the interpreter is missing, fails or lacks ``face_recognition``.
        """
        if not python.is_file():
            raise EnvironmentToolError(f"no Python interpreter at {python} for face_recognition")
        with tempfile.TemporaryDirectory(prefix="facenet-peer-") as tmp:
            spec, result = Path(tmp) / "photos.json", Path(tmp) / "result.json"
            spec.write_text(json.dumps([str(p) for p in photos]), encoding="utf-8")
            try:
                run = subprocess.run([str(python), "-c", PEER_SCRIPT, str(spec), str(result)],
                                     capture_output=True, text=True, timeout=PEER_TIMEOUT_S,
                                     check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise EnvironmentToolError(f"face_recognition with {python}: {exc}") from exc
            if run.returncode != 0 or not result.is_file():
                last = (run.stderr.strip().splitlines() or ["no output"])[-1]
                raise EnvironmentToolError(f"face_recognition with {python} failed: {last}")
            document = json.loads(result.read_text(encoding="utf-8"))
        self.name = f"face_recognition {document['version']} (dlib, tolerance {PEER_TOLERANCE})"
        self._photos: dict[str, dict[str, Any]] = document["photos"]

    def found(self, path: Path) -> tuple[list[PeerFace], Callable[[Sequence[int]], np.ndarray]]:
        """The photo's faces, and its encodings of given face indices (as :func:`collect` wants).

        Raises:
            InputError: the peer could not read the photo.
        """
        entry = self._photos.get(str(path))
        if entry is None or "error" in entry:
            why = entry["error"] if entry is not None else "not run on it"
            raise InputError(f"{path}: face_recognition: {why}")
        boxes, encodings = entry["boxes"], np.asarray(entry["encodings"], np.float32)
        faces = [PeerFace((b[0], b[1], b[2], b[3])) for b in boxes]
        return faces, lambda indices: encodings[list(indices)]
