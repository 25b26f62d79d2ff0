"""Recover the legacy FaceNet weights and reference embeddings with Keras 2.15 (legacy env only).

Steps:

1. read the ``.h5`` structure with h5py, walk the whole ``model_config`` (nested models,
   wrappers, any depth) and vet every ``Lambda``'s bytecode without running it (refused with exit
   code 5 unless it is exactly the residual scaling, or if the config refers to any other code),
   all before TensorFlow is imported;
2. instantiate the ORIGINAL graph from the file's own ``model_config`` with Keras 2.15, every
   ``Lambda`` (at any depth) bound to the toolchain's own ``scale_sum`` function, and load the
   weights with Keras' own loader;
3. check every tensor Keras loaded equals the raw h5py dataset bit for bit;
4. write ``weights/<layer>.npz`` (deterministic) and ``weights/manifest.json``;
5. detect, crop and embed every dataset photo with the original graph: ``reference/``.

Usage: ``python legacy_env/recover.py --artifacts DIR [--h5 PATH] [--dataset DIR]
[--skip-reference]``. Output directories are replaced atomically only when complete.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import re
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.core import preprocess
from toolchain.core.atomic import atomic_dir, sha256_file
from toolchain.core.contracts import (
    IMAGE_SUFFIXES,
    INPUT_SIZE,
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    REFERENCE_INDEX,
    REFERENCE_INDEX_FORMAT,
    REFERENCE_NPZ,
)
from toolchain.core.errors import InputError, IntegrityError, MissingArtifactError, ToolchainError
from toolchain.core.integrity import record_files
from toolchain.core.paths import Layout
from toolchain.core.source import identify_h5, resolve_h5
from toolchain.legacy.codewalk import bind_lambdas, vet_code
from toolchain.legacy.h5file import iter_weight_arrays, read_legacy
from toolchain.legacy.lambdas import VettedLambda, scale_sum
from toolchain.legacy.model import LayerInfo, LegacyModel
from toolchain.legacy.npzfile import npz_bytes

log = logging.getLogger("recover")

SCALE_SUM = "scale_sum"
SAFE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
EMBED_BATCH = 32


@dataclass
class Timings:
    """Wall time of each step, in order."""

    steps: list[tuple[str, float]] = field(default_factory=list)
    _start: float = field(default_factory=time.perf_counter)

    def lap(self, name: str) -> None:
        """Close the step ``name`` (it ran since the previous lap)."""
        now = time.perf_counter()
        self.steps.append((name, now - self._start))
        log.info("%s: %.1f s", name, now - self._start)
        self._start = now


@dataclass(frozen=True)
class Photo:
    """One dataset photo and what MTCNN found on it."""

    split: str
    person: str
    path: str
    sha256: str
    faces: int
    box: list[int] | None
    confidence: float | None
    keypoints: dict[str, list[float]] | None
    crop: np.ndarray | None


def _canonical_json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _keras_config(model: LegacyModel) -> dict[str, Any]:
    """The file's own model_config with every (vetted) Lambda, at any depth, bound to scale_sum."""
    return bind_lambdas(model.model_config, SCALE_SUM)


def _build_keras(model: LegacyModel) -> Any:
    """Instantiate the original graph with Keras 2.15 and load the file's weights with Keras."""
    import tensorflow as tf

    try:
        keras_model = tf.keras.models.model_from_json(
            json.dumps(_keras_config(model)), custom_objects={SCALE_SUM: scale_sum}
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise InputError(f"{model.path}: Keras 2.15 cannot build its model_config ({exc})") from exc
    try:
        keras_model.load_weights(str(model.path))
    except (ValueError, OSError) as exc:
        raise IntegrityError(f"{model.path}: Keras 2.15 cannot load its weights ({exc})") from exc
    return keras_model


def _check_against_h5(
    model: LegacyModel, keras_model: Any
) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Compare every tensor Keras loaded with the raw h5py dataset; return the raw arrays.

    Raises:
        IntegrityError: a count, name, shape, dtype or value differs.
    """
    keras_weighted = [layer for layer in keras_model.layers if layer.weights]
    if len(keras_weighted) != len(model.weighted_layers):
        raise IntegrityError(
            f"Keras built {len(keras_weighted)} weighted layers, the file stores "
            f"{len(model.weighted_layers)}"
        )
    if keras_model.count_params() != model.parameters:
        raise IntegrityError(
            f"Keras counts {keras_model.count_params()} parameters, the file stores "
            f"{model.parameters}"
        )
    arrays: dict[str, list[tuple[str, np.ndarray]]] = {}
    for layer, stored in iter_weight_arrays(model):
        keras_layer = keras_model.get_layer(layer.name)
        names = [w.name for w in keras_layer.weights]
        values = keras_layer.get_weights()
        if len(values) != len(stored):
            raise IntegrityError(
                f"layer {layer.name!r}: Keras holds {len(values)} tensors, the file {len(stored)}"
            )
        for name, value, (info, raw) in zip(names, values, stored, strict=True):
            if name.rsplit("/", 1)[-1] != info.name.rsplit("/", 1)[-1]:
                raise IntegrityError(
                    f"layer {layer.name!r}: Keras weight {name} vs file {info.name}"
                )
            if (
                value.dtype != raw.dtype
                or value.shape != raw.shape
                or not np.array_equal(value, raw)
            ):
                raise IntegrityError(
                    f"layer {layer.name!r}: weight {info.name} read by Keras differs from the raw "
                    "h5 dataset"
                )
        arrays[layer.name] = [(info.key, raw) for info, raw in stored]
    return arrays


def _weights_files(
    model: LegacyModel, arrays: dict[str, list[tuple[str, np.ndarray]]]
) -> dict[str, bytes]:
    """One deterministic npz per weighted layer, keyed by file name."""
    files: dict[str, bytes] = {}
    for layer in model.weighted_layers:
        keys = [key for key, _ in arrays[layer.name]]
        if len(set(keys)) != len(keys):
            raise InputError(f"{model.path}: layer {layer.name!r} has repeated weight names {keys}")
        files[f"{layer.name}.npz"] = npz_bytes(dict(arrays[layer.name]))
    return files


def _versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "tensorflow": metadata.version("tensorflow-cpu")
        if _installed("tensorflow-cpu")
        else metadata.version("tensorflow"),
        "keras": metadata.version("keras"),
        "h5py": metadata.version("h5py"),
        "numpy": metadata.version("numpy"),
    }


def _installed(dist: str) -> bool:
    try:
        metadata.version(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


def _layer_entry(layer: LayerInfo, npz: dict[str, bytes]) -> dict[str, Any]:
    name = f"{layer.name}.npz"
    data = npz.get(name)
    return {
        "name": layer.name,
        "class_name": layer.class_name,
        "inbound": list(layer.inbound),
        "weights": [
            {"name": w.name, "key": w.key, "shape": list(w.shape), "dtype": w.dtype}
            for w in layer.weights
        ],
        "npz": name if data is not None else None,
        "npz_sha256": hashlib.sha256(data).hexdigest() if data is not None else None,
        "parameters": layer.parameters,
    }


def _manifest(
    model: LegacyModel,
    sha256: str,
    known: str | None,
    vetted: list[VettedLambda],
    npz: dict[str, bytes],
) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "source": {
            "file": model.path.name,
            "size": model.path.stat().st_size,
            "sha256": sha256,
            "known": known,
            "keras_version": model.keras_version,
            "backend": model.backend,
        },
        "environment": _versions(),
        "lambdas": [{"layer": v.layer, "scale": v.scale, "source": v.source} for v in vetted],
        "layers": [_layer_entry(layer, npz) for layer in model.layers],
        "totals": {
            "layers": len(model.layers),
            "weighted_layers": len(model.weighted_layers),
            "tensors": model.tensors,
            "parameters": model.parameters,
        },
    }


def _photos(dataset: Path) -> list[Path]:
    """``{train,val}/<person>/<photo>`` files in sorted path order."""
    found = sorted(
        path
        for split in ("train", "val")
        if (dataset / split).is_dir()
        for path in (dataset / split).glob("*/*")
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    )
    if not found:
        raise InputError(f"{dataset}: no photos under train/<person>/ or val/<person>/")
    return found


def _detect(dataset: Path, paths: list[Path]) -> list[Photo]:
    """Run MTCNN (package defaults) on every photo and crop the largest face by the crop rule."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    from toolchain.convert.mtcnn_weights import package_detector

    detector = package_detector()
    photos = []
    for path in paths:
        rel = path.relative_to(dataset)
        try:
            with Image.open(path) as image:
                rgb = np.asarray(ImageOps.exif_transpose(image).convert("RGB"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as exc:
            raise InputError(f"{path}: cannot read the photo ({exc})") from exc
        faces = detector.detect_faces(rgb)
        entry: dict[str, Any] = {"box": None, "confidence": None, "keypoints": None, "crop": None}
        if faces:
            best = faces[preprocess.largest_face([f["box"] for f in faces])]
            entry = {
                "box": [int(v) for v in best["box"]],
                "confidence": float(best["confidence"]),
                "keypoints": {
                    k: [float(c) for c in v] for k, v in sorted(best["keypoints"].items())
                },
                "crop": preprocess.crop_face(rgb, best["box"]),
            }
        else:
            log.warning("no face detected on %s", rel.as_posix())
        photos.append(
            Photo(
                split=rel.parts[0],
                person=rel.parts[1],
                path=rel.as_posix(),
                sha256=sha256_file(path),
                faces=len(faces),
                **entry,
            )
        )
    return photos


def _embed(keras_model: Any, crops: np.ndarray) -> np.ndarray:
    """Raw outputs of the original graph on prewhitened crops, in batches."""
    import tensorflow as tf

    if len(crops) == 0:
        return np.zeros((0, int(keras_model.output_shape[-1])), dtype=np.float32)
    infer = tf.function(lambda x: keras_model(x, training=False), reduce_retracing=True)
    outputs = [
        np.asarray(infer(tf.constant(preprocess.prewhiten(crops[i : i + EMBED_BATCH]))))
        for i in range(0, len(crops), EMBED_BATCH)
    ]
    return np.concatenate(outputs).astype(np.float32)


def _crop_rule() -> str:
    doc = preprocess.__doc__ or ""
    rule = doc[doc.index("Crop rule:") :] if "Crop rule:" in doc else doc
    return " ".join(rule.split())


def _reference_index(
    photos: list[Photo], sha256: str, model: LegacyModel
) -> tuple[dict[str, Any], np.ndarray]:
    rows: list[np.ndarray] = []
    entries = []
    for photo in photos:
        row = None
        if photo.crop is not None:
            row = len(rows)
            rows.append(photo.crop)
        entries.append(
            {
                "split": photo.split,
                "person": photo.person,
                "path": photo.path,
                "sha256": photo.sha256,
                "status": "ok" if row is not None else "no_face",
                "row": row,
                "box": photo.box,
                "confidence": photo.confidence,
                "keypoints": photo.keypoints,
                "faces_detected": photo.faces,
            }
        )
    crops = np.stack(rows) if rows else np.zeros((0, INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    index = {
        "format": REFERENCE_INDEX_FORMAT,
        "source_sha256": sha256,
        "detector": {
            "package": "mtcnn",
            "version": metadata.version("mtcnn"),
            "call": "MTCNN(stages from hash-checked weights).detect_faces(rgb), package defaults",
            "choice": "largest box (toolchain.core.preprocess.largest_face)",
        },
        "crop_rule": _crop_rule(),
        "input_size": INPUT_SIZE,
        "embeddings": (
            f"raw outputs of {', '.join(model.output_layers)} of the original graph (Keras 2.15, "
            "Lambdas bound to scale_sum) on prewhitened crops; not L2-normalized"
        ),
        "photos": entries,
        "totals": {
            "photos": len(photos),
            "faces": len(rows),
            "no_face": len(photos) - len(rows),
        },
    }
    return index, crops


def recover(
    layout: Layout, h5: Path | None, dataset: Path | None, skip_reference: bool
) -> list[str]:
    """Run the recovery; return the summary lines."""
    timings = Timings()
    h5_path = resolve_h5(h5, layout)
    model = read_legacy(h5_path)
    vetted = vet_code(model.code)
    for layer in model.weighted_layers:
        if not SAFE_NAME.match(layer.name):
            raise InputError(f"{h5_path}: layer name {layer.name!r} is not a safe file name")
    dataset_dir = dataset if dataset is not None else layout.dataset_dir
    photo_paths: list[Path] = []
    if not skip_reference:
        if not dataset_dir.is_dir():
            raise MissingArtifactError(
                f"{dataset_dir}: dataset missing (run `nox -s fetch`, or pass --skip-reference)"
            )
        photo_paths = _photos(dataset_dir)
    sha256 = sha256_file(h5_path)
    known = identify_h5(h5_path)
    log.info(
        "%s: %d layers, %d Lambda vetted (%s), sha256 %s%s",
        h5_path,
        len(model.layers),
        len(vetted),
        vetted[0].source if vetted else "-",
        sha256,
        f" = {known}" if known else " (not the pinned FaceNet file)",
    )
    timings.lap("read + vet")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)
    keras_model = _build_keras(model)
    timings.lap("keras build + load_weights")
    arrays = _check_against_h5(model, keras_model)
    timings.lap("cross-check keras == h5py")
    npz = _weights_files(model, arrays)
    manifest = _manifest(model, sha256, known, vetted, npz)

    photos: list[Photo] = []
    if not skip_reference:
        photos = _detect(dataset_dir, photo_paths)
        timings.lap("mtcnn detect + crop")
        index, crops = _reference_index(photos, sha256, model)
        embeddings = _embed(keras_model, crops)
        timings.lap("embed (original graph)")
        reference = {
            REFERENCE_NPZ: npz_bytes({"crops": crops, "embeddings": embeddings}),
            REFERENCE_INDEX: _canonical_json(index),
        }

    with atomic_dir(layout.weights_dir) as tmp:
        for name, data in npz.items():
            (tmp / name).write_bytes(data)
        (tmp / MANIFEST_FILE).write_bytes(_canonical_json(manifest))
        if not skip_reference:
            with atomic_dir(layout.reference_dir) as ref_tmp:
                for name, data in reference.items():
                    (ref_tmp / name).write_bytes(data)
    record_files(layout, [layout.weights_dir] + ([] if skip_reference else [layout.reference_dir]))
    timings.lap("write")

    totals = manifest["totals"]
    faces = sum(p.crop is not None for p in photos)
    lines = [
        f"source: {h5_path} ({known or 'unknown file'}), Keras {model.keras_version}",
        f"layers: {totals['layers']}, weighted layers: {totals['weighted_layers']}, "
        f"tensors: {totals['tensors']}, parameters: {totals['parameters']:,}",
        f"lambdas vetted: {len(vetted)} (never executed; bound to scale_sum)",
        f"weights: {layout.weights_dir} ({len(npz)} npz + {MANIFEST_FILE})",
    ]
    if skip_reference:
        lines.append("reference: skipped (--skip-reference)")
    else:
        no_face = [p.path for p in photos if p.crop is None]
        lines.append(
            f"reference: {layout.reference_dir} ({faces} faces embedded of {len(photos)} photos, "
            f"{len(no_face)} without a face{': ' + ', '.join(no_face) if no_face else ''})"
        )
    lines.append(
        "times: "
        + ", ".join(f"{name} {sec:.1f} s" for name, sec in timings.steps)
        + f"; total {sum(sec for _, sec in timings.steps):.1f} s"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(
        prog="recover.py", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--artifacts", type=Path, required=True, help="artifacts directory")
    parser.add_argument("--h5", type=Path, help="legacy .h5 (default: ARTIFACTS/source/...)")
    parser.add_argument("--dataset", type=Path, help="photo tree with train/ and val/")
    parser.add_argument("--skip-reference", action="store_true", help="weights only")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="recover: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("tensorflow", "absl", "h5py", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        lines = recover(Layout(args.artifacts), args.h5, args.dataset, args.skip_reference)
    except ToolchainError as exc:
        print(f"recover: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"recover: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return InputError.exit_code
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
