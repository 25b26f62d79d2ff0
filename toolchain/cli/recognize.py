"""``facenet recognize``: name every face in photos against a gallery.

Photos only: videos, cameras and streams are ``facenet watch`` (:mod:`toolchain.cli.watch`). The
command opens the recognizer once and hands the photos to
:meth:`~toolchain.runtime.recognizer.Recognizer.recognize_many`; the output is a table, the
``--json`` document of :meth:`~toolchain.runtime.faces.PhotoMatches.to_dict`, or CSV. Only
onnxruntime, numpy, Pillow, typer and rich are imported (inside the command body), never
TensorFlow. A photo that cannot be used is reported as one line on stderr and the run goes on;
the exit code is 0 when every photo was handled, 1 when some were not, or the typed error's code
when the run cannot go on at all (missing model, unusable gallery).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from toolchain.cli.common import ArtifactsOption, console, display_text, problem
from toolchain.cli.options import (
    AlignOption,
    AllowCropMismatchOption,
    GalleryOption,
    MarginOption,
    MatchOption,
    MaxDetectSideOption,
    MinFaceOption,
    ModelsOption,
    PrecisionChoice,
    PrecisionOption,
    RuntimeChoice,
    RuntimeOption,
    crop_keywords,
    detection_keywords,
    model_keywords,
    open_recognizer,
    progress_bar,
    threshold_value,
)
from toolchain.cli.output import csv_text, print_csv, print_json
from toolchain.core.paths import DEFAULT_ARTIFACTS
from toolchain.gallery.schema import MatchMode

if TYPE_CHECKING:
    from toolchain.runtime.faces import Match, PhotoMatches

app = typer.Typer()
"""``facenet recognize`` (added to the root app by :mod:`toolchain.cli.app`)."""

ANNOTATED_TAG = ".annotated"
"""Annotated pictures are named ``<photo stem>[-N].annotated.jpg|png``: never an input's name."""

CSV_COLUMNS = ("file", "status", "face", "x", "y", "width", "height", "confidence", "name",
               "distance", "margin", "runner_up", "runner_up_distance", "candidates", "error")
"""``--csv`` columns: one row per face, or one per photo without a face or unreadable."""



def _is_annotation(path: Path, annotate_dir: Path | None) -> bool:
    """``path`` is a picture an earlier ``--annotate`` wrote: named ``*.annotated.*``, in
    ``annotate_dir``, and carrying :data:`toolchain.runtime.drawing.ANNOTATION_MARK`."""
    from toolchain.runtime.drawing import ANNOTATION_MARK, has_mark

    return (annotate_dir is not None and path.stem.endswith(ANNOTATED_TAG)
            and path.parent.resolve() == annotate_dir.resolve()
            and has_mark(path, ANNOTATION_MARK))


def _recognize_paths(paths: Sequence[Path], annotate_dir: Path | None) -> tuple[list[Path], int]:
    """The photos named or found under the folders, and how many folders held none.

    Found under a folder, the ``--annotate`` folder's contents (when it lies inside) and earlier
    annotated pictures are not inputs; a file named on the command line always is.
    """
    from toolchain.runtime.images import find_images

    files: list[Path] = []
    empty = 0
    for path in paths:
        if path.is_dir():
            found = [p for p in find_images(path, exclude=annotate_dir)
                     if not _is_annotation(p, annotate_dir)]
            if not found:
                problem(f"{path}: no photos found")
                empty += 1
            files.extend(found)
        else:
            files.append(path)
    return files, empty


def _file_identity(path: Path) -> tuple[int, int] | None:
    """``(device, inode)`` of the file behind ``path`` (links followed), ``None`` if none."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino


class AnnotationTargets:
    """Names of the annotated pictures: ``<stem>.annotated.jpg|png``, ``<stem>-2.annotated...``
    for a second photo of the same stem. An existing file is replaced only if an earlier run wrote
    it (it carries the annotation mark) and it is not an input of this run (compared by device
    and inode, so links and hard links count too); otherwise the next number is taken."""

    def __init__(self, out_dir: Path, inputs: Sequence[Path]):
        """Remember the identity of every input before anything is written."""
        self.out_dir = out_dir
        self.inputs = {ident for path in inputs if (ident := _file_identity(path)) is not None}
        self.used: set[str] = set()

    def target(self, photo: Path) -> Path:
        """A fresh output path in ``out_dir`` for the annotated ``photo``."""
        suffix = ".jpg" if photo.suffix.lower() in (".jpg", ".jpeg") else ".png"
        n = 1
        while True:
            name = f"{photo.stem}{'' if n == 1 else f'-{n}'}{ANNOTATED_TAG}{suffix}"
            n += 1
            if name in self.used:
                continue
            target = self.out_dir / name
            identity = _file_identity(target)
            if identity is None or (identity not in self.inputs
                                    and _is_annotation(target, self.out_dir)):
                self.used.add(name)
                return target


def _write_annotation(photo: PhotoMatches, targets: AnnotationTargets) -> Path:
    from toolchain.runtime.drawing import ANNOTATION_MARK, Label, annotate, save_image

    assert photo.image is not None
    labels = [
        Label(m.box, m.label if m.distance is None else f"{m.label} {m.distance:.2f}",
              m.name is not None)
        for m in photo.matches
    ]
    target = targets.target(photo.path)
    save_image(annotate(photo.image.pixels, labels), target, mark=ANNOTATION_MARK)
    return target


def _csv_candidates(match: Match) -> str:
    """The top-k cell: a JSON list of ``{"name", "distance"}``, whatever the names hold."""
    return json.dumps([{"name": c.name, "distance": round(c.distance, 4)}
                       for c in match.candidates], ensure_ascii=False)


def _csv_rows(results: Sequence[PhotoMatches]) -> list[list[object]]:
    rows: list[list[object]] = []
    for p in results:
        if p.error is not None or not p.matches:
            status = "error" if p.error is not None else "no_face"
            rows.append([csv_text(p.path), status, *[""] * 12, csv_text(p.error or "")])
        for i, m in enumerate(p.matches, 1):
            second = m.runner_up
            rows.append([
                csv_text(p.path), "face", i, *(f"{v:.1f}" for v in m.box),
                f"{m.confidence:.4f}", csv_text(m.label),
                "" if m.distance is None else f"{m.distance:.4f}",
                "" if m.margin is None else f"{m.margin:.4f}",
                "" if second is None else csv_text(second.name),
                "" if second is None else f"{second.distance:.4f}", _csv_candidates(m), "",
            ])
    return rows


def _print_table(results: Sequence[PhotoMatches], title: str, top_k: int) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    table.add_column("photo", overflow="ellipsis", no_wrap=True, max_width=30)
    for column in ("face", "box x,y,w,h", "name", "distance", "margin"):
        table.add_column(column, no_wrap=True)
    table.add_column("runner-up", overflow="fold")
    table.add_column(f"top-{top_k}", overflow="fold")
    for p in results:
        for i, m in enumerate(p.matches, 1):
            table.add_row(
                display_text(p.path.name), str(i), ",".join(f"{v:.0f}" for v in m.box),
                display_text(m.name) if m.name is not None else Text("unknown", style="red"),
                "-" if m.distance is None else f"{m.distance:.3f}",
                "-" if m.margin is None else f"{m.margin:+.3f}",
                "-" if m.runner_up is None
                else f"{display_text(m.runner_up.name)} {m.runner_up.distance:.2f}",
                ", ".join(f"{display_text(c.name)} {c.distance:.2f}" for c in m.candidates),
            )
    console().print(table)


def _photo_paths(paths: list[Path]) -> list[Path]:
    """The path arguments' callback: a video or stream is ``facenet watch``'s (usage error)."""
    from toolchain.video.sources import is_video_argument

    for path in paths:
        if path.is_file() and is_video_argument(str(path)):
            raise typer.BadParameter(f"{path} is a video: use `facenet watch {path}`")
    return paths


def _annotate_folder(value: Path | None) -> Path | None:
    """``--annotate``: a folder (created if missing), never an existing file."""
    if value is not None and value.exists() and not value.is_dir():
        raise typer.BadParameter(f"{value} is not a folder: photos are annotated into a folder")
    return value


@app.command()
def recognize(
    paths: Annotated[list[Path], typer.Argument(
        exists=True, readable=False, callback=_photo_paths, show_default=False,
        help="Photos and folders of photos (searched recursively).")],
    gallery: GalleryOption = None,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", callback=threshold_value,
        help="Match when the distance is at most this [default: the gallery's calibrated "
             "threshold, else the model's metadata].")] = None,
    top_k: Annotated[int, typer.Option(
        "--top-k", min=1, max=100, help="Candidates listed per face.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV on stdout.")] = False,
    annotate_dir: Annotated[Path | None, typer.Option(
        "--annotate", callback=_annotate_folder, metavar="FOLDER",
        help="Write each photo with boxes and `name distance` labels into this folder, as "
             "<stem>.annotated.jpg or .png (never over an input; the folder's pictures are not "
             "read as inputs).")] = None,
    match: MatchOption = MatchMode.NEAREST,
    min_face: MinFaceOption = None,
    max_detect_side: MaxDetectSideOption = None,
    margin: MarginOption = None,
    align: AlignOption = None,
    runtime: RuntimeOption = RuntimeChoice.onnxruntime,
    precision: PrecisionOption = PrecisionChoice.fp32,
    allow_crop_mismatch: AllowCropMismatchOption = False,
    models: ModelsOption = None,
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
) -> int:
    """Name every face in the photos: the closest enrolled person, or `unknown`."""
    if as_json and as_csv:
        raise typer.BadParameter("--json and --csv are exclusive", param_hint="--json/--csv")
    files, empty = _recognize_paths(paths, annotate_dir)
    rec = open_recognizer(artifacts, gallery, models, threshold=threshold, top_k=top_k,
                          match=match.value, **crop_keywords(margin, align, allow_crop_mismatch),
                          **detection_keywords(min_face, max_detect_side),
                          **model_keywords(runtime, precision))
    targets = AnnotationTargets(annotate_dir, files) if annotate_dir is not None else None
    results: list[PhotoMatches] = []
    failed = empty
    with rec, progress_bar("recognizing", len(files)) as advance:
        limit, source = rec.threshold()
        crop, crop_source = rec.crop()
        if not rec.gallery().people():
            problem(f"warning: the gallery {rec.gallery().path} is empty: every face will be "
                    "`unknown`; enroll people first (`facenet enroll`)")
        for photo in rec.recognize_many(files, progress=advance):
            results.append(photo)
            if photo.error is not None:
                problem(photo.error)
                failed += 1
                continue
            if not photo.matches:
                problem(f"{photo.path}: no face found")
            if targets is not None:
                try:
                    _write_annotation(photo, targets)
                except OSError as exc:
                    problem(f"{annotate_dir}: cannot write the annotated photo ({exc})")
                    failed += 1
        gallery_path = rec.gallery().path
    if as_json:
        print_json({"gallery": str(gallery_path), "threshold": limit,
                    "threshold_source": source.value, "match": match.value, "crop": crop.text,
                    "crop_source": crop_source.value,
                    "results": [photo.to_dict() for photo in results]})
    elif as_csv:
        print_csv(CSV_COLUMNS, _csv_rows(results))
    else:
        _print_table(results, f"threshold {limit:.3f} ({display_text(source.value)}), "
                              f"crop {crop.text} ({crop_source.value}), match {match.value}",
                     top_k)
    return 1 if failed else 0
