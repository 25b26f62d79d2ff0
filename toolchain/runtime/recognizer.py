"""The Python API of the runtime: detect, embed, enroll and recognize faces from photos.

Example::

    from toolchain import Recognizer

    rec = Recognizer.from_artifacts("artifacts", gallery="my_gallery.db")  # or .load(PACK, ...)
    rec.enroll("Ada", "photos/ada.jpg")
    for match in rec.recognize("photos/group.jpg"):
        print(match.label, match.distance, match.margin, match.runner_up, match.box)
    print(rec.compare("photos/ada.jpg", "photos/ada2.jpg").decision)  # no gallery needed

Photos are decoded by :mod:`toolchain.runtime.images` (always RGB), faces found by the ONNX MTCNN,
cropped by a :class:`~toolchain.core.crop.CropSpec` (the one given, else the gallery's, else the
model's ``default_crop``) and embedded by :class:`Embedder`; the faces of a photo, and of several
photos, go through the embedder as one batch. Split by concern: the detector protocol, the result
types and their assembly are in :mod:`toolchain.runtime.faces`, the models are opened by
:mod:`toolchain.runtime.loading`, photos decoded ahead by :mod:`toolchain.runtime.prefetch`, and
enrolled faces stored by :mod:`toolchain.runtime.enrollment`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np

from toolchain.core.crop import BOX, CropSpec
from toolchain.core.errors import InputError, IntegrityError
from toolchain.core.paths import DEFAULT_ARTIFACTS, Layout
from toolchain.core.preprocess import largest_face
from toolchain.gallery import (
    Gallery,
    GalleryTarget,
    MatchMode,
    gallery_exists,
    gallery_target,
    open_gallery,
    stored_crop,
)
from toolchain.gallery.names import person_name
from toolchain.runtime.embedder import Embedder
from toolchain.runtime.enrollment import enroll_photos
from toolchain.runtime.faces import (
    ComparedFace,
    Comparison,
    CropSource,
    DetectionLike,
    EnrollOutcome,
    Face,
    FaceDetector,
    Match,
    PhotoFaces,
    PhotoMatches,
    ThresholdSource,
    faces_of,
    matches_of,
)
from toolchain.runtime.images import LoadedImage, read_image
from toolchain.runtime.loading import load_models
from toolchain.runtime.pack import ModelSource, artifacts_pack, open_pack
from toolchain.runtime.prefetch import read_ahead

log = logging.getLogger(__name__)

FALLBACK_THRESHOLD = 1.1
"""Match threshold (Euclidean distance between unit vectors) when neither the gallery nor the
model's metadata carries one: the usual operating point of FaceNet-style 128-d embeddings."""

MIN_ENROLL_FACE = 40.0
"""Smallest face enrolled, in pixels on the box's short side. FaceNet sees every face at 160x160:
a face of 20-30 px is upscaled 5-8 times and its embedding carries little of the person (a 23x27
px "face" once enrolled matched a background patch). On the 5-celebrity train photos 10 of 92
largest faces are below 40 px; every val face is at least 40 px."""

IMAGES_PER_BATCH = 16
"""Photos decoded and detected before their faces are embedded (and, when enrolling, stored)."""

ImageInput: TypeAlias = Path | str | np.ndarray


class Recognizer:
    """Detector + embedder + (optional) gallery.

    The gallery opens lazily: detecting and embedding need none, enrolling creates it, and
    recognizing needs an existing one.
    """

    def __init__(
        self,
        detector: FaceDetector,
        embedder: Embedder,
        gallery: Path | str | None = None,
        *,
        threshold: float | None = None,
        match: MatchMode | str = MatchMode.NEAREST,
        top_k: int = 3,
        crop: CropSpec | str | None = None,
        allow_crop_mismatch: bool = False,
    ):
        """Assemble a recognizer.

        Args:
            detector: Face detector (the ONNX MTCNN).
            embedder: The FaceNet ONNX embedder.
            gallery: Gallery file (created on first enroll).
            threshold: Match threshold; default: the gallery's calibrated one, else the model's
                metadata, else :data:`FALLBACK_THRESHOLD`.
            match: ``nearest`` (default) or ``centroid``; see :mod:`toolchain.gallery`.
            top_k: Candidates kept per face.
            crop: How faces are cropped (a spec or its text, ``align,margin=20%``); default:
                the gallery's (if it exists), else the model's ``default_crop``.
            allow_crop_mismatch: Query a gallery enrolled with another crop than ``crop``
                (refused by default: the distances then mean less than the threshold assumes).

        Raises:
            ValueError: ``top_k``, ``threshold`` or ``crop`` out of range.
        """
        if top_k < 1:
            raise ValueError("top_k must be at least 1")
        if threshold is not None and not threshold >= 0:
            raise ValueError("threshold must not be negative")
        self.detector = detector
        self.embedder = embedder
        self.gallery_path: GalleryTarget | None = (
            gallery_target(gallery) if gallery is not None else None)
        self.explicit_threshold = threshold
        self.match_mode = MatchMode(match)
        self.top_k = top_k
        self.explicit_crop = CropSpec.parse(crop) if isinstance(crop, str) else crop
        self.allow_crop_mismatch = allow_crop_mismatch
        self._gallery: Gallery | None = None
        self._crop: tuple[CropSpec, CropSource] | None = None

    @classmethod
    def load(
        cls,
        pack: Path | str | ModelSource,
        gallery: Path | str | None = None,
        *,
        threshold: float | None = None,
        match: MatchMode | str = MatchMode.NEAREST,
        top_k: int = 3,
        detection: Mapping[str, Any] | None = None,
        crop: CropSpec | str | None = None,
        allow_crop_mismatch: bool = False,
        runtime: str = "onnxruntime",
        precision: str = "fp32",
        threads: int = 0,
    ) -> Recognizer:
        """Open a model pack (:mod:`toolchain.runtime.pack`; no artifacts tree needed), every file
        checked against its manifest first (:func:`~toolchain.runtime.loading.load_models`); no
        gallery by default. Keyword options are those of :meth:`from_artifacts`.

        Raises:
            MissingArtifactError: the pack, its manifest or a file it lists is missing, or it
                holds no model for ``runtime`` and ``precision``.
            IntegrityError: a file does not match the manifest, or the manifest is malformed, of
                another format or does not describe the model.
            InputError: an unknown runtime or precision.
        """
        source = open_pack(pack) if isinstance(pack, (Path, str)) else pack
        detector, embedder = load_models(source, runtime=runtime, precision=precision,
                                         threads=threads, detection=detection)
        return cls(detector, embedder, gallery, threshold=threshold, match=match, top_k=top_k,
                   crop=crop, allow_crop_mismatch=allow_crop_mismatch)

    @classmethod
    def from_artifacts(
        cls,
        artifacts_dir: Path | str = DEFAULT_ARTIFACTS,
        gallery: Path | str | None = None,
        *,
        threshold: float | None = None,
        match: MatchMode | str = MatchMode.NEAREST,
        top_k: int = 3,
        detection: Mapping[str, Any] | None = None,
        crop: CropSpec | str | None = None,
        allow_crop_mismatch: bool = False,
        runtime: str = "onnxruntime",
        precision: str = "fp32",
        threads: int = 0,
    ) -> Recognizer:
        """:meth:`load` the models of ``artifacts_dir`` (its pack, else its ``models/`` checked
        against ``SHA256SUMS``: :func:`~toolchain.runtime.pack.artifacts_pack`); gallery default
        ``<artifacts>/gallery.db``.

        Keyword options are those of :class:`Recognizer`; ``runtime``, ``precision``,
        ``threads`` and ``detection`` choose the models (:func:`~toolchain.runtime.loading.
        load_models`). ``threads`` 0 means one per core, the measured best for a process that has
        the cores to itself.

        Raises:
            MissingArtifactError: a model file is missing (names `nox -s export`).
            IntegrityError: a model file does not match ``SHA256SUMS`` or the pack's manifest.
        """
        layout = Layout(Path(artifacts_dir))
        return cls.load(artifacts_pack(layout), gallery if gallery is not None else layout.gallery,
                        threshold=threshold, match=match, top_k=top_k, detection=detection,
                        crop=crop, allow_crop_mismatch=allow_crop_mismatch, runtime=runtime,
                        precision=precision, threads=threads)

    def close(self) -> None:
        """Close the gallery if it is open."""
        if self._gallery is not None:
            self._gallery.close()
            self._gallery = None

    def __enter__(self) -> Recognizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def gallery(self, create: bool = False) -> Gallery:
        """The open gallery (bound to this recognizer's model).

        Raises:
            InputError: no gallery path, or it does not exist and ``create`` is false.
            IntegrityError: the gallery was made with another model, or enrolled with another
                crop than the one given (unless ``allow_crop_mismatch``).
        """
        if self._gallery is None:
            if self.gallery_path is None:
                raise InputError("no gallery given")
            new_crop = self.explicit_crop or self._model_crop()[0]
            gallery = open_gallery(self.gallery_path, fingerprint=self.embedder.fingerprint,
                                   dim=self.embedder.dim, create=create, crop=new_crop.text)
            given = self.explicit_crop
            if given is not None and given.text != gallery.crop and not self.allow_crop_mismatch:
                gallery.close()
                raise IntegrityError(
                    f"gallery {gallery.path} was enrolled with crop {gallery.crop!r}, this "
                    f"query crops {given.text!r}: embeddings of different crops are not "
                    "comparable; drop the crop options to use the gallery's, or pass "
                    "--allow-crop-mismatch"
                )
            self._gallery = gallery
        return self._gallery

    def _gallery_exists(self) -> bool:
        """Whether the gallery is open or exists (never created here)."""
        return self._gallery is not None or (
            self.gallery_path is not None and gallery_exists(self.gallery_path))

    def _model_crop(self) -> tuple[CropSpec, CropSource]:
        if self.embedder.default_crop is not None:
            return CropSpec.parse(self.embedder.default_crop), CropSource.MODEL
        return BOX, CropSource.BUILT_IN

    def crop(self) -> tuple[CropSpec, CropSource]:
        """The crop in force and its source: the one given, else the gallery's (if the gallery
        exists: never created here), else the model's ``default_crop``, else the bare box (a
        model without that metadata had its threshold calibrated on box crops)."""
        if self._crop is None:
            if self.explicit_crop is not None:
                self._crop = self.explicit_crop, CropSource.GIVEN
            elif self._gallery_exists():
                self._crop = (stored_crop(self.gallery().crop, self.gallery().path),
                              CropSource.GALLERY)
            else:
                self._crop = self._model_crop()
        return self._crop

    def threshold(self) -> tuple[float, ThresholdSource]:
        """The match threshold in force and its source: the one given, else the gallery's stored
        one (if the gallery exists: never created here), else the model's, else the fallback."""
        if self.explicit_threshold is not None:
            return self.explicit_threshold, ThresholdSource.GIVEN
        if self._gallery_exists():
            stored = self.gallery().threshold
            if stored is not None:
                return stored, ThresholdSource.GALLERY
        if self.embedder.default_threshold is not None:
            return self.embedder.default_threshold, ThresholdSource.MODEL
        return FALLBACK_THRESHOLD, ThresholdSource.BUILT_IN

    @staticmethod
    def _pixels(image: ImageInput) -> np.ndarray:
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise InputError(f"expected an (H, W, 3) uint8 RGB array, got {image.shape} "
                                 f"{image.dtype}")
            return image
        return read_image(image).pixels

    def detect(self, image: ImageInput) -> list[DetectionLike]:
        """Faces found in a photo (path or RGB uint8 array), most confident first."""
        found = list(self.detector.detect(self._pixels(image)))
        return sorted(found, key=lambda d: -d.confidence)

    def _crops(self, pixels: np.ndarray) -> tuple[list[DetectionLike], list[np.ndarray]]:
        spec, _ = self.crop()
        detections: list[DetectionLike] = []
        crops: list[np.ndarray] = []
        for det in self.detect(pixels):
            try:
                crops.append(spec.crop(pixels, det.box, det.keypoints))
            except ValueError as exc:
                log.debug("skipping a detection: %s", exc)
                continue
            detections.append(det)
        return detections, crops

    def _embed_found(self, found: Sequence[tuple[list[DetectionLike], list[np.ndarray]]]
                     ) -> list[list[Face]]:
        """Embed every face crop of every photo in one embedder batch."""
        all_crops = [crop for _, crops in found for crop in crops]
        vectors = self.embedder.embed(np.stack(all_crops)) if all_crops else np.zeros((0, 0))
        return faces_of(found, vectors)

    def faces(self, image: ImageInput) -> list[Face]:
        """Every face of a photo with its crop and embedding, most confident first."""
        return self._embed_found([self._crops(self._pixels(image))])[0]

    def embed(self, image: ImageInput) -> np.ndarray:
        """``(F, 128)`` unit embeddings of the faces of a photo (F may be 0)."""
        faces = self.faces(image)
        if not faces:
            return np.zeros((0, self.embedder.dim), np.float32)
        return np.stack([f.embedding for f in faces])

    def analyze(
        self, paths: Iterable[Path | str], progress: Callable[[Path], None] | None = None
    ) -> Iterator[PhotoFaces]:
        """Faces of many photos, :data:`IMAGES_PER_BATCH` photos per embedder batch, each photo
        decoded while the one before it is detected (:mod:`~toolchain.runtime.prefetch`). A photo
        that cannot be read yields a :class:`PhotoFaces` with ``error`` set; the others go on.
        """
        Found = tuple[list[DetectionLike], list[np.ndarray]]
        batch: list[tuple[Path, LoadedImage | None, str | None, Found]] = []

        def flush() -> Iterator[PhotoFaces]:
            faces = iter(self._embed_found([found for _, img, _, found in batch
                                            if img is not None]))
            for path, img, error, _ in batch:
                yield PhotoFaces(path, img, next(faces) if img is not None else [], error)
            batch.clear()

        for path, image, error in read_ahead(paths):
            batch.append((path, image, error, self._crops(image.pixels) if image else ([], [])))
            if progress is not None:
                progress(path)
            if len(batch) >= IMAGES_PER_BATCH:
                yield from flush()
        if batch:
            yield from flush()

    def _matches(self, faces: list[Face]) -> list[Match]:
        if not faces:
            return []
        threshold, _ = self.threshold()
        ranked = self.gallery().match(np.stack([f.embedding for f in faces]),
                                      k=max(self.top_k, 2), mode=self.match_mode)
        return matches_of(faces, ranked, threshold, self.top_k)

    def recognize_many(
        self, paths: Iterable[Path | str], progress: Callable[[Path], None] | None = None
    ) -> Iterator[PhotoMatches]:
        """Recognize every face of many photos (batched); unreadable photos carry ``error``."""
        self.gallery()
        for photo in self.analyze(paths, progress):
            yield PhotoMatches(photo.path, photo.image, self._matches(photo.faces), photo.error)

    def recognize(self, image: ImageInput) -> list[Match]:
        """Who is in a photo: one :class:`Match` per face, most confident first.

        Raises:
            InputError: the photo cannot be read, or the gallery does not exist.
            IntegrityError: the gallery was made with another model.
        """
        self.gallery()
        return self._matches(self.faces(image))

    def _chosen_face(self, image: ImageInput, number: int | None, label: str
                     ) -> tuple[ComparedFace, np.ndarray]:
        """The face :meth:`compare` takes from one photo, and its crop."""
        source = label if isinstance(image, np.ndarray) else str(image)
        detections, crops = self._crops(self._pixels(image))
        if not detections:
            raise InputError(f"{source}: no face found")
        if number is None:
            index = largest_face([d.box for d in detections])
        elif 1 <= number <= len(detections):
            index = number - 1
        else:
            raise InputError(f"{source}: no face number {number}: {len(detections)} face(s) "
                             "found, numbered from 1, most confident first")
        det = detections[index]
        face = ComparedFace(source, index + 1, len(detections),
                            tuple(float(v) for v in det.box),  # type: ignore[arg-type]
                            float(det.confidence))
        return face, crops[index]

    def compare(self, a: ImageInput, b: ImageInput, face_a: int | None = None,
                face_b: int | None = None) -> Comparison:
        """Are the faces of two photos (paths or RGB uint8 arrays) the same person?

        No gallery is needed (none is created); a face is picked by number, 1 = the most
        confident (the numbering of :meth:`faces` and ``facenet recognize``), default the largest.
        The result holds the threshold in force (:meth:`threshold`) and its source.

        Raises:
            InputError: a photo cannot be read, has no face, or no face of that number (the
                message names the photo).
        """
        threshold, source = self.threshold()
        first, crop_a = self._chosen_face(a, face_a, "image A")
        second, crop_b = self._chosen_face(b, face_b, "image B")
        vectors = self.embedder.embed(np.stack([crop_a, crop_b]))
        distance = float(np.linalg.norm(vectors[0] - vectors[1]))
        crop, crop_source = self.crop()
        return Comparison(first, second, distance, threshold, source, crop.text, crop_source)

    def enroll_many(
        self,
        items: Sequence[tuple[str, Path | str]],
        largest: bool = False,
        progress: Callable[[Path], None] | None = None,
        min_enroll_face: float = MIN_ENROLL_FACE,
    ) -> list[EnrollOutcome]:
        """Enroll ``(name, photo)`` pairs: one face per photo, one gallery transaction per batch.

        Photos without a face of at least ``min_enroll_face`` px (short side), with several such
        faces (unless ``largest``) or unreadable are skipped and reported; a face already in the
        gallery is a no-op (status ``already``). Names follow the name rule
        (:func:`~toolchain.gallery.names.person_name`: NFC, stripped).

        Raises:
            NameRefused: a name the rule refuses (before any photo is read).
        """
        names = [person_name(name) for name, _ in items]
        if not min_enroll_face >= 0:
            raise InputError(f"minimum enrollment face size {min_enroll_face} is not a size")
        return enroll_photos(
            self.gallery(create=True),
            zip(names, self.analyze([path for _, path in items], progress), strict=True),
            largest=largest, min_face=min_enroll_face, batch=IMAGES_PER_BATCH)

    def enroll(self, name: str, image_path: Path | str, largest: bool = False,
               min_enroll_face: float = MIN_ENROLL_FACE) -> EnrollOutcome:
        """Enroll the face of one photo under ``name`` (see :meth:`enroll_many`)."""
        return self.enroll_many([(name, image_path)], largest=largest,
                                min_enroll_face=min_enroll_face)[0]
