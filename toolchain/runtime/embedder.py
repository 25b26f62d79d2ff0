"""The exported FaceNet model on ONNX Runtime or OpenVINO: 160x160 RGB face crops in, unit vectors
out.

Galleries are bound to :attr:`Embedder.fingerprint`: the sha256 of the recovered weights'
manifest (``weights_manifest_sha256``, which every export of the toolchain records), so the fp32
and int8 models on either runtime, and any re-export of the same weights (a new calibrated
threshold changes the file's bytes, not its weights), share their galleries. A model without that
record (a user's own) is fingerprinted by the sha256 of its file. Cross-precision identification on
the shared real photos is tested in ``tests/test_openvino.py`` (an fp32 gallery searched by each
other model names the same people).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from toolchain.core.atomic import sha256_file
from toolchain.core.contracts import INPUT_SIZE
from toolchain.core.crop import CropSpec
from toolchain.core.errors import EnvironmentToolError, IntegrityError, MissingArtifactError
from toolchain.core.preprocess import l2_normalize, prewhiten
from toolchain.runtime.backends import RUNTIMES, open_session
from toolchain.runtime.ort_options import DEFAULT_SETTINGS, OrtSettings

log = logging.getLogger(__name__)

SHA256_HEX = re.compile(r"[0-9a-f]{64}")

THRESHOLD_METADATA_KEYS = ("default_threshold", "threshold")
"""ONNX ``metadata_props`` keys read (in this order) for the default match threshold."""

WEIGHTS_METADATA_KEY = "weights_manifest_sha256"
"""Metadata key of the sha256 of the weights manifest the model was exported from."""

CROP_METADATA_KEY = "default_crop"
"""ONNX ``metadata_props`` key of the crop spec its ``default_threshold`` was calibrated with."""

DEFAULT_BATCH = 32
"""Crops per ONNX Runtime call when the model's batch dimension is dynamic."""


class Embedder:
    """FaceNet on a CPU runtime; names, shapes and metadata are read from the model file.

    Attributes:
        path: The model (``.onnx``, or an OpenVINO IR ``.xml``).
        runtime: ``onnxruntime`` or ``openvino``.
        fingerprint: what galleries are bound to: the weights manifest's sha256 the model
            records, else the sha256 of the file (see the module docstring).
        metadata: The model's ``metadata_props``.
        default_threshold: The match threshold the model's metadata suggests, if it carries one.
        default_crop: The crop spec (text) that threshold was calibrated with, if recorded.
        dim: Embedding size (128).
    """

    def __init__(self, path: Path, batch_size: int = DEFAULT_BATCH,
                 settings: OrtSettings = DEFAULT_SETTINGS, runtime: str = RUNTIMES[0],
                 export_hint: str = "nox -s export", sha256: str | None = None):
        """Load ``path`` on ``runtime`` (ONNX Runtime: :mod:`toolchain.runtime.ort_options`, one
        intra-op thread per core, cached optimized graph; OpenVINO: :mod:`.backends`).

        ``sha256``: the file's digest when the caller has just checked it (a model pack does), so
        neither the fingerprint nor the optimized-graph cache reads the file again.

        Raises:
            MissingArtifactError: the file does not exist (the message names ``export_hint``).
            EnvironmentToolError: the runtime is not installed.
            IntegrityError: the runtime cannot load it, or its input/output is not FaceNet's.
        """
        self.path = Path(path)
        self.runtime = runtime
        if not self.path.is_file():
            raise MissingArtifactError(
                f"FaceNet model {self.path} is missing; create it with `{export_hint}`"
            )
        try:
            self._session = open_session(self.path, runtime, settings, sha256)
        except (EnvironmentToolError, ValueError):
            raise
        except Exception as exc:
            raise IntegrityError(
                f"{self.path}: {runtime} cannot load it ({type(exc).__name__}: {exc}); "
                f"re-create it with `{export_hint}`"
            ) from exc
        session = self._session
        if len(session.input_names) != 1 or len(session.output_names) < 1:
            raise IntegrityError(
                f"{self.path}: expected one input and an embedding output, got "
                f"{session.input_names} -> {session.output_names}"
            )
        self.input_name, self.output_name = session.input_names[0], session.output_names[0]
        in_shape, out_shape = session.input_shapes[0], session.output_shapes[0]
        if len(in_shape) != 4 or any(
            isinstance(d, int) and d != want
            for d, want in zip(in_shape[1:], (INPUT_SIZE, INPUT_SIZE, 3), strict=True)
        ):
            raise IntegrityError(
                f"{self.path}: input {self.input_name} has shape {in_shape}, "
                f"expected [N, {INPUT_SIZE}, {INPUT_SIZE}, 3] (NHWC)"
            )
        if len(out_shape) != 2 or not isinstance(out_shape[1], int):
            raise IntegrityError(
                f"{self.path}: output {self.output_name} has shape {out_shape}, expected [N, D]"
            )
        self.dim: int = out_shape[1]
        fixed_batch = in_shape[0] if isinstance(in_shape[0], int) and in_shape[0] > 0 else None
        self._fixed_batch = fixed_batch
        self.batch_size = fixed_batch or max(1, batch_size)
        self.metadata: dict[str, str] = dict(session.metadata)
        self.fingerprint = self._weights_from_metadata() or sha256 or sha256_file(self.path)
        self.default_threshold = self._threshold_from_metadata()
        self.default_crop = self._crop_from_metadata()
        log.debug(
            "loaded %s (sha256 %s): %s%s -> %s%s, metadata %s",
            self.path, self.fingerprint[:12], self.input_name, in_shape,
            self.output_name, out_shape, self.metadata,
        )

    def _weights_from_metadata(self) -> str | None:
        value = self.metadata.get(WEIGHTS_METADATA_KEY, "")
        return value if SHA256_HEX.fullmatch(value) else None

    def _threshold_from_metadata(self) -> float | None:
        for key in THRESHOLD_METADATA_KEYS:
            if key in self.metadata:
                try:
                    value = float(self.metadata[key])
                except ValueError:
                    log.warning("%s: metadata %s=%r is not a number; ignored",
                                self.path, key, self.metadata[key])
                    continue
                if np.isfinite(value) and value > 0:
                    return value
        return None

    def _crop_from_metadata(self) -> str | None:
        text = self.metadata.get(CROP_METADATA_KEY)
        if text is None:
            return None
        try:
            return CropSpec.parse(text).text
        except ValueError:
            log.warning("%s: metadata %s=%r is not a crop spec; ignored",
                        self.path, CROP_METADATA_KEY, text)
            return None

    def _run(self, batch: np.ndarray) -> np.ndarray:
        pad = 0
        if self._fixed_batch is not None and len(batch) < self._fixed_batch:
            pad = self._fixed_batch - len(batch)
            batch = np.concatenate([batch, np.zeros((pad, *batch.shape[1:]), batch.dtype)])
        out = self._session.run([self.output_name], {self.input_name: batch})[0]
        return np.asarray(out[: len(out) - pad], dtype=np.float32)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Embed face crops.

        Args:
            crops: ``(N, 160, 160, 3)`` uint8 RGB crops
                (:func:`toolchain.core.preprocess.crop_face`).

        Returns:
            ``(N, dim)`` float32 L2-normalized embeddings.
        """
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(
                f"expected (N, {INPUT_SIZE}, {INPUT_SIZE}, 3) crops, got {crops.shape}"
            )
        if len(crops) == 0:
            return np.zeros((0, self.dim), np.float32)
        parts = [
            self._run(prewhiten(crops[start : start + self.batch_size]))
            for start in range(0, len(crops), self.batch_size)
        ]
        return l2_normalize(np.concatenate(parts))
