"""What every exporter shares: the artifacts, the lazily built model and the output check.

:class:`ExportContext` builds the rebuilt Keras 3 model, the reference crops and the in-memory
model's outputs on a few of them once per run; :func:`validate_outputs` is the check every
exporter runs on its own output (through its format's runner) before renaming it into place.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import toolchain
from toolchain.convert.formats import FORMATS, FormatSpec
from toolchain.convert.parity import Check, Reference, check_l2_output, compare, load_reference
from toolchain.convert.weights import LoadReport, read_manifest
from toolchain.core.atomic import sha256_file
from toolchain.core.crop import DEFAULT_CROP
from toolchain.core.errors import IntegrityError, MissingArtifactError, ParityError
from toolchain.core.integrity import verify_file
from toolchain.core.paths import Layout
from toolchain.core.preprocess import prewhiten

if TYPE_CHECKING:
    from toolchain.evaluation.calibration import FarThreshold
    from toolchain.evaluation.labelled import LabelledSet

log = logging.getLogger(__name__)

INPUT_NAME = "input"
"""The input name of the SavedModel signature, ONNX graph and TFLite signature."""

OUTPUT_NAMES = ("embedding", "embedding_l2")
"""Output names, in order: raw 128-d ``Bottleneck_BatchNorm`` output, then its L2 normalization."""

PROBE_ROWS = 8
"""Reference crops each exporter runs its own output on before accepting it."""

STAMP_FILE = Path("assets.extra") / "facenet_export.json"
"""Inside the SavedModel: what it was exported from (``assets.extra`` is TF's place for extras)."""


@dataclass
class ExportContext:
    """What exporters share: the artifacts layout and lazily built inputs.

    Attributes:
        layout: the artifacts tree.
        written: paths written so far, per exporter, in this run.
    """

    layout: Layout
    written: dict[str, list[Path]] = field(default_factory=dict)
    calibration_sets: tuple[str, ...] = ()
    """Labelled sets (:func:`toolchain.evaluation.labelled.parse_set` specs) the default threshold
    is calibrated on; none: the 5-celebrity photos of the artifacts."""

    @cached_property
    def manifest(self) -> dict[str, Any]:
        """The weights manifest (``MissingArtifactError`` naming ``nox -s recover`` if absent)."""
        return read_manifest(self.layout.manifest)

    @cached_property
    def _loaded(self) -> tuple[Any, LoadReport]:
        from toolchain.convert.weights import build_loaded_model

        self.manifest  # noqa: B018  (fail on a missing manifest before building the model)
        verify_file(self.layout.manifest, self.layout)
        start = time.perf_counter()
        model, report = build_loaded_model(self.layout.weights_dir)
        log.info(
            "built InceptionResNetV1 and loaded %d tensors strictly in %.1f s",
            report.tensors,
            time.perf_counter() - start,
        )
        return model, report

    @property
    def model(self) -> Any:
        """The rebuilt Keras 3 model with the recovered weights (built on first use)."""
        return self._loaded[0]

    @property
    def load_report(self) -> LoadReport:
        """What the strict loader filled."""
        return self._loaded[1]

    @cached_property
    def reference(self) -> Reference:
        """Reference crops and ORIGINAL-graph embeddings."""
        return load_reference(self.layout)

    @cached_property
    def probe(self) -> np.ndarray:
        """A few prewhitened reference crops each exporter checks its output on."""
        return prewhiten(self.reference.crops[:PROBE_ROWS])

    @cached_property
    def expected(self) -> dict[str, np.ndarray]:
        """The in-memory Keras model's outputs on :attr:`probe`."""
        import tensorflow as tf

        model = self.model
        fn = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec([None, *self.probe.shape[1:]], tf.float32)],
            autograph=False,
        )
        raw, l2 = fn(tf.constant(self.probe))
        return {"embedding": raw.numpy(), "embedding_l2": l2.numpy()}

    def calibrate(self, model: Path) -> FarThreshold:
        """The default threshold of the ONNX ``model`` by the FAR policy, under the default crop.

        Every labelled face of :attr:`calibration_sets` is found by the exported MTCNN, cropped
        by :data:`~toolchain.core.crop.DEFAULT_CROP` and embedded by ``model`` on ONNX Runtime,
        the runtime's own path (:mod:`toolchain.evaluation.calibration`).

        Raises:
            MissingArtifactError: the MTCNN models are not exported yet, or no set is named and
                the 5-celebrity photos are missing.
            InputError: a labelled set is bad.
        """
        from toolchain.evaluation.calibration import (
            POLICY_FAR,
            DetectedPhotos,
            embed_sets,
            far_threshold,
        )
        from toolchain.runtime.embedder import Embedder
        from toolchain.runtime.loading import load_detector
        from toolchain.runtime.ort_options import DEFAULT_SETTINGS

        sets = self.labelled_sets
        try:
            detector = load_detector(self.layout.models_dir)
        except MissingArtifactError as exc:
            raise MissingArtifactError(
                f"{exc}; the ONNX default threshold is calibrated on faces the exported MTCNN "
                "finds: export it first (`facenet model export --format mtcnn`)") from exc
        photos = DetectedPhotos(detector)
        # A staged file: no optimized-graph cache may be left beside it.
        embedder = Embedder(model, settings=replace(DEFAULT_SETTINGS, cache_optimized=False))
        faces = embed_sets(photos, embedder, sets, DEFAULT_CROP)
        result = far_threshold(faces, sets, DEFAULT_CROP, POLICY_FAR)
        log.info("default threshold %.6f: %s", result.value, result.policy)
        return result

    @cached_property
    def labelled_sets(self) -> list[LabelledSet]:
        """The labelled sets the ONNX default threshold is calibrated on: those of
        :attr:`calibration_sets`, else the 5-celebrity photos. The export command reads named sets
        before any work, so a bad one fails at once, not after the conversion.

        Raises:
            MissingArtifactError: no set is named and the 5-celebrity photos are missing.
            InputError: a labelled set is bad.
        """
        from toolchain.evaluation.labelled import parse_set

        if not self.calibration_sets and not self.layout.dataset_dir.is_dir():
            raise MissingArtifactError(
                f"the ONNX default threshold is calibrated on labelled photos, and "
                f"{self.layout.dataset_dir} is missing: run `nox -s fetch`, or name a set with "
                "--calibration-set")
        specs = self.calibration_sets or (str(self.layout.dataset_dir),)
        return [parse_set(spec) for spec in specs]

    @cached_property
    def stamp(self) -> dict[str, str]:
        """What an export is made from; a SavedModel with another stamp is stale."""
        return {
            "toolchain_version": toolchain.__version__,
            "manifest_sha256": sha256_file(self.layout.manifest),
            "source_sha256": str(self.manifest["source"]["sha256"]),
        }

    def path(self, fmt: str) -> Path:
        """Final path of FaceNet format ``fmt``."""
        return FORMATS[fmt].path(self.layout.models_dir)


def validate_outputs(spec: FormatSpec, path: Path, context: ExportContext) -> None:
    """Run an exported model (staged at ``path``) on the probe crops in its format's runner and
    check its outputs against the in-memory Keras model, within the format's tolerance.

    Raises:
        IntegrityError: outputs are missing or misnamed.
        ParityError: shape, dtype or values are off the tolerance table.
    """
    if spec.runner is None or spec.tolerance is None:
        raise ValueError(f"format {spec.name} has no runner to validate it with")
    outputs = spec.runner.run(path, context.probe)
    fmt = spec.name
    if sorted(outputs) != sorted(OUTPUT_NAMES):
        raise IntegrityError(f"{fmt}: outputs {sorted(outputs)}, expected {list(OUTPUT_NAMES)}")
    checks: list[Check] = compare(
        fmt, "keras-memory", outputs["embedding"], context.expected["embedding"], spec.tolerance
    )
    checks.append(check_l2_output(fmt, outputs["embedding"], outputs["embedding_l2"]))
    failed = [c for c in checks if not c.ok]
    if failed:
        raise ParityError(
            f"{fmt} export rejected: " + "; ".join(f"{c.check}: {c.detail}" for c in failed)
        )
    values = next(c for c in checks if c.check == "values")
    log.info("%s validated on %d crops: %s", fmt, len(context.probe), values.detail)
