"""The exported FaceNet ONNX model on ONNX Runtime: 160x160 RGB face crops in, unit vectors out."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from toolchain.core.atomic import sha256_file
from toolchain.core.contracts import INPUT_SIZE
from toolchain.core.crop import CropSpec
from toolchain.core.errors import IntegrityError, MissingArtifactError
from toolchain.core.preprocess import l2_normalize, prewhiten
from toolchain.runtime.ort_options import DEFAULT_SETTINGS, OrtSettings, create_session

log = logging.getLogger(__name__)

THRESHOLD_METADATA_KEYS = ("default_threshold", "threshold")
"""ONNX ``metadata_props`` keys read (in this order) for the default match threshold."""

CROP_METADATA_KEY = "default_crop"
"""ONNX ``metadata_props`` key of the crop spec its ``default_threshold`` was calibrated with."""

DEFAULT_BATCH = 32
"""Crops per ONNX Runtime call when the model's batch dimension is dynamic."""


class Embedder:
    """FaceNet on ONNX Runtime (CPU); names, shapes and metadata are read from the model file.

    Attributes:
        path: The ``.onnx`` file.
        fingerprint: sha256 of the file: galleries are bound to it.
        metadata: The model's ``metadata_props``.
        default_threshold: The match threshold the model's metadata suggests, if it carries one.
        default_crop: The crop spec (text) that threshold was calibrated with, if recorded.
        dim: Embedding size (128).
    """

    def __init__(self, path: Path, batch_size: int = DEFAULT_BATCH,
                 settings: OrtSettings = DEFAULT_SETTINGS):
        """Load ``path`` into a CPU ONNX Runtime session (:mod:`toolchain.runtime.ort_options`:
        one intra-op thread per core, cached optimized graph).

        Raises:
            MissingArtifactError: the file does not exist.
            IntegrityError: ONNX Runtime cannot load it, or its input/output is not FaceNet's.
        """
        self.path = Path(path)
        if not self.path.is_file():
            raise MissingArtifactError(
                f"FaceNet ONNX model {self.path} is missing; create it with `nox -s export`"
            )
        self.fingerprint = sha256_file(self.path)
        try:
            self._session = create_session(self.path, settings)
        except Exception as exc:
            raise IntegrityError(
                f"{self.path}: ONNX Runtime cannot load it ({type(exc).__name__}: {exc}); "
                "re-create it with `nox -s export`"
            ) from exc
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise IntegrityError(
                f"{self.path}: expected one input and an embedding output, got "
                f"{[i.name for i in inputs]} -> {[o.name for o in outputs]}"
            )
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        in_shape, out_shape = list(inputs[0].shape), list(outputs[0].shape)
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
        self.metadata: dict[str, str] = dict(self._session.get_modelmeta().custom_metadata_map)
        self.default_threshold = self._threshold_from_metadata()
        self.default_crop = self._crop_from_metadata()
        log.debug(
            "loaded %s (sha256 %s): %s%s -> %s%s, metadata %s",
            self.path, self.fingerprint[:12], self.input_name, in_shape,
            self.output_name, out_shape, self.metadata,
        )

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
