"""Pair-protocol evaluation: what ``facenet eval pairs FILE`` runs.

A pairs file lists photo pairs labelled same person or different people, in one of two layouts:

- **CSV** (UTF-8, header required): columns ``a,b,same`` (more columns are ignored); ``a`` and
  ``b`` are photo paths, ``same`` is ``1``/``0`` or ``same``/``different`` (any case).
- **LFW's** ``pairs.txt``: a first line ``folds n`` (``10 300``: 10 sets of ``n`` same-person
  then ``n`` different-people lines) or one count ``n`` (``pairsDevTrain.txt``: ``n`` same then
  ``n`` different lines); then ``name i j`` (same) or ``name1 i name2 j`` (different) lines,
  whitespace-separated, naming ``<root>/<name>/<name>_<i as 4 digits>.jpg``.

The layout is recognized from the first line: one or two integers make it LFW's. Relative paths
are resolved against the pairs file's folder (LFW: ``--lfw-root``, default that folder) and may
not leave it (``..`` out of it is refused, so a downloaded pairs file cannot make the run read
elsewhere); absolute CSV paths are used as given, the user's own choice. LFW names must be plain
folder names.

:func:`evaluate_pairs` embeds each distinct photo's largest face once, measures every pair whose
two photos gave a face (the others are counted as skipped, their photos listed) with
:mod:`toolchain.evaluation.metrics` and :mod:`toolchain.evaluation.pair_metrics`, and returns a
:class:`PairsEvaluation`; :mod:`toolchain.evaluation.pairs_report` renders it.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from toolchain.core.crop import BOX, CropSpec
from toolchain.core.errors import InputError
from toolchain.core.paths import DEFAULT_ARTIFACTS
from toolchain.core.preprocess import largest_face
from toolchain.evaluation.dataset import Progress
from toolchain.evaluation.metrics import Verification, verification
from toolchain.evaluation.pair_metrics import (
    FarPoint,
    KFoldAccuracy,
    accuracy_at,
    kfold_accuracy,
    tar_at_far,
)
from toolchain.runtime.backends import DEFAULT_MODEL, ModelChoice
from toolchain.runtime.images import read_file_bytes
from toolchain.runtime.recognizer import FALLBACK_THRESHOLD, Recognizer

PairsFormat = Literal["csv", "lfw"]

MAX_PAIRS_FILE_BYTES = 64 * 1024 * 1024
"""The largest pairs file read (LFW's ``pairs.txt`` is about 100 kB)."""

REPORTED_FARS = (1e-2, 1e-3)
"""The false-accept rates the report gives the TAR at (FaceNet's paper uses 1e-3)."""

FOLDS = 10
"""Folds of the cross-validated accuracy (Sandberg's ``validate_on_lfw``: 10)."""

def _no_progress(_label: str, _total: int) -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


_SAME = {"1": True, "same": True, "0": False, "different": False}


@dataclass(frozen=True)
class Pair:
    """Two photos and whether they show the same person."""

    a: Path
    b: Path
    same: bool


@dataclass(frozen=True)
class PairsFile:
    """A parsed pairs file: its layout, the folder its relative paths start from, its pairs."""

    path: Path
    format: PairsFormat
    root: Path
    pairs: list[Pair]


def _inside(root: Path, name: str, where: str) -> Path:
    """``name`` resolved against ``root``; a relative path that leaves ``root`` is refused."""
    if not name:
        raise InputError(f"{where}: empty photo path")
    if os.path.isabs(name):
        return Path(name)
    joined = Path(os.path.normpath(root / name))
    if os.path.commonpath([joined, os.path.normpath(root)]) != os.path.normpath(root):
        raise InputError(f"{where}: {name!r} leaves the pairs file's folder; refused (give an "
                         "absolute path to use a photo elsewhere)")
    return joined


def _parse_csv(path: Path, text: str) -> list[Pair]:
    reader = csv.reader(io.StringIO(text), strict=True)
    header = [cell.strip().lower() for cell in next(reader, [])]
    if not {"a", "b", "same"} <= set(header):
        raise InputError(f"{path}:1: the header must name the columns a,b,same (got "
                         f"{','.join(header) or 'nothing'})")
    ia, ib, isame = header.index("a"), header.index("b"), header.index("same")
    pairs: list[Pair] = []
    for row in reader:
        where = f"{path}:{reader.line_num}"
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise InputError(f"{where}: {len(row)} columns, the header has {len(header)}")
        same = _SAME.get(row[isame].strip().lower())
        if same is None:
            raise InputError(f"{where}: same must be 1/0 or same/different, got "
                             f"{row[isame]!r}")
        pairs.append(Pair(_inside(path.parent, row[ia].strip(), where),
                          _inside(path.parent, row[ib].strip(), where), same))
    return pairs


def _lfw_photo(root: Path, name: str, index: str, where: str) -> Path:
    if name in {".", ".."} or "/" in name or "\\" in name or "\0" in name:
        raise InputError(f"{where}: {name!r} is not an LFW person name")
    if not index.isdigit() or int(index) < 1:
        raise InputError(f"{where}: {index!r} is not an LFW photo number")
    return _inside(root, f"{name}/{name}_{int(index):04d}.jpg", where)


def _parse_lfw(path: Path, lines: Sequence[str], root: Path) -> list[Pair]:
    counts = [int(token) for token in lines[0].split()]
    sets, per_kind = counts if len(counts) == 2 else (1, counts[0])
    expected = 2 * sets * per_kind
    body = [(number, line.split()) for number, line in enumerate(lines[1:], start=2)
            if line.strip()]
    if len(body) != expected:
        raise InputError(f"{path}: the first line announces {expected} pairs ({sets} x "
                         f"{per_kind} same + {per_kind} different), the file has {len(body)}")
    pairs: list[Pair] = []
    for k, (number, tokens) in enumerate(body):
        where = f"{path}:{number}"
        same = (k // per_kind) % 2 == 0 if per_kind else True
        if same and len(tokens) == 3:
            name, i, j = tokens
            pairs.append(Pair(_lfw_photo(root, name, i, where),
                              _lfw_photo(root, name, j, where), True))
        elif not same and len(tokens) == 4:
            name1, i, name2, j = tokens
            pairs.append(Pair(_lfw_photo(root, name1, i, where),
                              _lfw_photo(root, name2, j, where), False))
        else:
            shape = "name i j" if same else "name1 i name2 j"
            raise InputError(f"{where}: expected a {'same' if same else 'different'}-person "
                             f"line '{shape}', got {len(tokens)} fields")
    return pairs


def read_pairs(path: Path, lfw_root: Path | None = None) -> PairsFile:
    """Parse a pairs file in either layout (see the module docstring).

    Raises:
        InputError: unreadable, not UTF-8, too large, malformed, no pairs, or a path leaving the
            pairs file's folder; the message names the line.
    """
    data = read_file_bytes(path)
    if len(data) > MAX_PAIRS_FILE_BYTES:
        raise InputError(f"{path}: larger than {MAX_PAIRS_FILE_BYTES:,} bytes; not a pairs file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    lines = text.splitlines()
    first = lines[0].split() if lines else []
    if 1 <= len(first) <= 2 and all(token.isdigit() for token in first):
        root = lfw_root if lfw_root is not None else path.parent
        layout: PairsFormat = "lfw"
        pairs = _parse_lfw(path, lines, root)
    else:
        root, layout = path.parent, "csv"
        try:
            pairs = _parse_csv(path, text)
        except csv.Error as exc:
            raise InputError(f"{path}: malformed CSV ({exc})") from exc
    if not pairs:
        raise InputError(f"{path}: no pairs")
    return PairsFile(path, layout, root, pairs)


@dataclass(frozen=True)
class PairsEvaluation:
    """Everything one pair-protocol evaluation measured.

    Attributes:
        pairs_file: the parsed file.
        created: when the run finished (UTC, ISO 8601, seconds).
        model: the embedding model file; ``model_fingerprint`` its sha256.
        photos: distinct photos the pairs name.
        distances: ``(P,)`` distances of the pairs used (both photos gave a face), file order.
        same: ``(P,)`` their labels.
        skipped: pairs not used because a photo had no face or could not be read.
        threshold: the threshold in force; ``threshold_source`` where it came from.
        accuracy: pair accuracy at :attr:`threshold`.
        verification: ROC, AUC, EER and the best-accuracy threshold over all used pairs.
        far_points: TAR at each of :data:`REPORTED_FARS`.
        kfold: cross-validated accuracy (``None`` with fewer than 2 pairs of either kind).
        no_face: photos in which no face was found.
        problems: one line per photo that could not be read.
    """

    pairs_file: PairsFile
    created: str
    model: Path
    model_fingerprint: str
    photos: int
    distances: np.ndarray
    same: np.ndarray
    skipped: int
    threshold: float
    threshold_source: str
    accuracy: float
    verification: Verification
    far_points: tuple[FarPoint, ...]
    kfold: KFoldAccuracy | None
    no_face: list[str]
    problems: list[str]
    crop: str = BOX.text
    """The crop spec text the faces were embedded with."""


def evaluate_pairs(
    path: Path,
    artifacts: Path = DEFAULT_ARTIFACTS,
    *,
    lfw_root: Path | None = None,
    threshold: float | None = None,
    detection: Mapping[str, Any] | None = None,
    progress: Progress = _no_progress,
    on_problem: Callable[[str], None] | None = None,
    crop: CropSpec | str | None = None,
    model: ModelChoice = DEFAULT_MODEL,
) -> PairsEvaluation:
    """Embed the largest face of every photo of a pairs file once and measure the pairs.

    Args:
        path: the pairs file (CSV or LFW layout).
        artifacts: the artifacts tree whose models are used.
        lfw_root: folder of LFW's per-person photo folders (default: the pairs file's folder).
        threshold: the threshold in force (default: the model's ``default_threshold``).
        detection: keywords of the face detector (see :meth:`Recognizer.from_artifacts`).
        progress: progress display of the embedding stage.
        on_problem: receives each photo with no face or that could not be read.
        crop: how faces are cropped (default: the model's ``default_crop``).
        model: the runtime and precision of the FaceNet model (default: fp32 on ONNX Runtime).

    Raises:
        InputError: a bad pairs file, or no used pairs of one kind (no ROC).
        MissingArtifactError: a model is missing.
    """
    parsed = read_pairs(path, lfw_root)
    photos = list(dict.fromkeys(p for pair in parsed.pairs for p in (pair.a, pair.b)))
    vectors: dict[Path, np.ndarray] = {}
    no_face: list[str] = []
    problems: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="facenet-pairs-") as tmp,
        Recognizer.from_artifacts(artifacts, Path(tmp) / "unused.db", top_k=1,
                                  detection=detection, crop=crop, runtime=model.runtime,
                                  precision=model.precision) as rec,
        progress("embedding photos", len(photos)) as advance,
    ):
        for photo in rec.analyze(photos, progress=advance):
            if photo.error is not None:
                problems.append(photo.error)
            elif not photo.faces:
                no_face.append(str(photo.path))
            else:
                vectors[photo.path] = photo.faces[largest_face([f.box for f in photo.faces])
                                                  ].embedding
        embedder = rec.embedder
        crop_text = rec.crop()[0].text
    if on_problem is not None:
        for message in problems:
            on_problem(message)
        for name in no_face:
            on_problem(f"{name}: no face found; its pairs are skipped")
    used = [pair for pair in parsed.pairs if pair.a in vectors and pair.b in vectors]
    distances = np.array([float(np.linalg.norm(vectors[p.a].astype(np.float64)
                                               - vectors[p.b].astype(np.float64)))
                          for p in used])
    same = np.array([p.same for p in used], dtype=bool)
    try:
        ver = verification(distances, same)
    except ValueError as exc:
        raise InputError(f"{path}: cannot compute ROC over the {len(used)} usable pairs "
                         f"({exc})") from exc
    if threshold is not None:
        in_force, source = threshold, "given"
    elif embedder.default_threshold is not None:
        in_force, source = embedder.default_threshold, "model metadata"
    else:
        in_force, source = FALLBACK_THRESHOLD, "built-in"
    try:
        kfold: KFoldAccuracy | None = kfold_accuracy(distances, same, FOLDS)
    except ValueError:
        kfold = None
    return PairsEvaluation(
        pairs_file=parsed,
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        model=embedder.path,
        model_fingerprint=embedder.fingerprint,
        photos=len(photos),
        distances=distances,
        same=same,
        skipped=len(parsed.pairs) - len(used),
        threshold=in_force,
        threshold_source=source,
        accuracy=accuracy_at(distances, same, in_force),
        verification=ver,
        far_points=tuple(tar_at_far(distances, same, far) for far in REPORTED_FARS),
        kfold=kfold,
        no_face=no_face,
        problems=problems,
        crop=crop_text,
    )
