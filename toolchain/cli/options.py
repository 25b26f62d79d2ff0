"""The options and helpers that ``enroll``, ``recognize``, ``evaluate`` and ``gallery`` share.

Only typer and the standard library at import time; the runtime (onnxruntime, numpy, Pillow) is
imported when a recognizer is opened, never TensorFlow.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from toolchain.cli.common import console, may_be_terminal
from toolchain.gallery.schema import MatchMode

if TYPE_CHECKING:
    from toolchain.runtime.backends import ModelChoice
    from toolchain.runtime.recognizer import Recognizer

GalleryOption = Annotated[
    str | None,
    typer.Option("--gallery", metavar="PATH|URL", show_default=False,
                 help="Gallery: a SQLite file, or a PostgreSQL + pgvector database "
                      "(postgresql://user@host/db, optionally ?gallery=NAME) "
                      "[default: <artifacts>/gallery.db]."),
]


class RuntimeChoice(str, enum.Enum):
    """``--runtime``: the CPU runtime of the whole pipeline (``toolchain.runtime.backends``)."""

    onnxruntime = "onnxruntime"
    openvino = "openvino"


class PrecisionChoice(str, enum.Enum):
    """``--precision``: which FaceNet model embeds."""

    fp32 = "fp32"
    int8 = "int8"


RuntimeOption = Annotated[
    RuntimeChoice,
    typer.Option("--runtime",
                 help="Run detection and embedding on ONNX Runtime or OpenVINO (the openvino "
                      "extra; FaceNet from `facenet model export --format openvino[-int8]`)."),
]
PrecisionOption = Annotated[
    PrecisionChoice,
    typer.Option("--precision",
                 help="Embed with the fp32 model or its static int8 quantization (faster, "
                      "within the int8 parity bound; galleries are shared between both)."),
]


def model_keywords(runtime: RuntimeChoice, precision: PrecisionChoice) -> dict[str, str]:
    """``--runtime`` / ``--precision`` as ``Recognizer.from_artifacts`` keywords."""
    return {"runtime": runtime.value, "precision": precision.value}


def model_choice(runtime: RuntimeChoice, precision: PrecisionChoice) -> ModelChoice:
    """``--runtime`` / ``--precision`` as the runtime's model choice."""
    from toolchain.runtime.backends import ModelChoice

    return ModelChoice(runtime.value, precision.value)


MatchOption = Annotated[
    MatchMode,
    typer.Option("--match", help="Distance to a person's nearest embedding, or to their mean."),
]

MinEnrollFaceOption = Annotated[
    float | None,
    typer.Option("--min-enroll-face", min=0.0, show_default=False,
                 help="Enroll only faces at least this many pixels on the short side of their "
                      "box; photos with none are skipped and listed [default: 40, "
                      "toolchain.runtime.recognizer.MIN_ENROLL_FACE]."),
]

MIN_MAX_DETECT_SIDE = 64
"""Smallest ``--max-detect-side`` other than 0 (``toolchain.runtime.mtcnn.MIN_MAX_SIDE``, not
imported: the detector module loads numpy and onnxruntime)."""


def _max_detect_side_value(value: int | None) -> int | None:
    if value is not None and 0 < value < MIN_MAX_DETECT_SIDE:
        raise typer.BadParameter(f"must be 0 (full resolution) or at least {MIN_MAX_DETECT_SIDE}")
    return value


MinFaceOption = Annotated[
    float | None,
    typer.Option("--min-face", min=1.0, show_default=False,
                 help="Smallest face the detector looks for, in pixels of the photo "
                      "[default: 20, the mtcnn package's]."),
]
MaxDetectSideOption = Annotated[
    int | None,
    typer.Option("--max-detect-side", min=0, callback=_max_detect_side_value,
                 show_default=False,
                 help="Longest side of the largest detection pyramid level [default: 480]: in a "
                      "photo with a longer side L above it, faces smaller than about 12 to 17 x "
                      "L / this are not looked for (crops still come from the full photo). "
                      "0: full resolution (slow and memory-hungry on big photos)."),
]


def _margin_value(value: str | None) -> str | None:
    """``--margin``: pixels (``32``) or a share of the box (``20%``)."""
    from toolchain.core.crop import CropSpec

    if value is None:
        return None
    try:
        return CropSpec.from_options(value, False).text
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


MarginOption = Annotated[
    str | None,
    typer.Option("--margin", callback=_margin_value, show_default=False, metavar="PX|PCT%",
                 help="Add this margin around the MTCNN box before the resize, half on each "
                      "side: pixels (32, as Sandberg evaluated on LFW) or a share of the box "
                      "(20%). The crop options together name the whole crop [default: the "
                      "gallery's crop if it exists, else the model's default_crop]."),
]
AlignOption = Annotated[
    bool | None,
    typer.Option("--align/--no-align", show_default=False,
                 help="Warp the five MTCNN landmarks onto a fixed template (a similarity "
                      "transform) instead of cropping the box [default: as --margin says]."),
]
AllowCropMismatchOption = Annotated[
    bool,
    typer.Option("--allow-crop-mismatch",
                 help="Query a gallery enrolled with another crop than the one given."),
]


def crop_keywords(margin: str | None, align: bool | None,
                  allow_mismatch: bool = False) -> dict[str, Any]:
    """``--margin`` / ``--align`` / ``--allow-crop-mismatch`` as recognizer keywords.

    Neither crop option given: no ``crop`` keyword (the gallery's, else the model's default).
    """
    from toolchain.core.crop import CropSpec

    options: dict[str, Any] = {"allow_crop_mismatch": True} if allow_mismatch else {}
    if margin is None and align is None:
        return options
    spec = CropSpec.parse(margin) if margin is not None else CropSpec()
    options["crop"] = CropSpec(spec.margin, spec.relative, bool(align)).text
    return options


def detection_keywords(min_face: float | None, max_detect_side: int | None) -> dict[str, Any]:
    """``--min-face`` / ``--max-detect-side`` as ``from_artifacts`` keywords (none: defaults)."""
    options: dict[str, Any] = {}
    if min_face is not None:
        options["min_face_size"] = min_face
    if max_detect_side is not None:
        options["max_side"] = max_detect_side or None
    return {"detection": options} if options else {}


def enroll_keywords(min_enroll_face: float | None) -> dict[str, float]:
    """``--min-enroll-face`` as keyword arguments of ``enroll_many`` (none: its default)."""
    return {} if min_enroll_face is None else {"min_enroll_face": min_enroll_face}


@contextlib.contextmanager
def progress_bar(label: str, total: int) -> Iterator[Callable[[Path], None]]:
    """A rich progress bar on stderr (only on a terminal); yields the per-photo advance callback.

    Off a terminal nothing is drawn and rich is not even imported (:func:`~toolchain.cli.common.
    may_be_terminal`: a part of the start of a one-photo run in a script)."""
    err = console(stderr=True) if may_be_terminal(stderr=True) else None
    if err is None or not err.is_terminal:
        yield lambda _path: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda _path: progress.advance(task)


ModelsOption = Annotated[
    Path | None,
    typer.Option("--models", metavar="PACK", file_okay=False, show_default=False,
                 help="A model pack folder (its manifest checks every file): all a machine that "
                      "only recognizes faces needs [default: <artifacts>/pack, else "
                      "<artifacts>/models]."),
]
"""``--models PACK``: the models of a pack instead of the artifacts tree's (the gallery default
stays ``<artifacts>/gallery.db``)."""


def open_recognizer(artifacts: Path, gallery: Path | str | None, models: Path | None = None,
                    **options: Any) -> Recognizer:
    """The recognizer of the pack ``models`` if given, else of ``artifacts`` (its pack, or its
    models checked against ``SHA256SUMS``), on ``gallery`` (default ``<artifacts>/gallery.db``)."""
    from toolchain.core.paths import Layout
    from toolchain.runtime.recognizer import Recognizer

    if models is None:
        return Recognizer.from_artifacts(artifacts, gallery=gallery, **options)
    return Recognizer.load(models, gallery if gallery is not None else Layout(artifacts).gallery,
                           **options)


def threshold_value(value: float | None) -> float | None:
    """``--threshold``: a distance in (0, 2]; NaN and infinity are usage errors."""
    from toolchain.core.errors import InputError
    from toolchain.gallery import check_threshold

    if value is None:
        return None
    try:
        return check_threshold(value, "--threshold")
    except InputError as exc:
        raise typer.BadParameter(str(exc)) from exc
