"""``facenet enroll | recognize | gallery``: face recognition on the ONNX models.

Only onnxruntime, numpy, Pillow, typer and rich are imported (inside the command bodies), never
TensorFlow. A photo that cannot be used is reported as one line on stderr and the run goes on;
the exit code is 0 when every photo was handled, 1 when some were not, or the typed error's code
when the run cannot go on at all (missing model, unusable gallery).
"""

from __future__ import annotations

import contextlib
import csv
import enum
import io
import json
import logging
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from toolchain.cli.app import (
    DEFAULT_ARTIFACTS_PATH,
    ArtifactsOption,
    app,
    console,
    display_text,
    layout_for,
)
from toolchain.core.errors import InputError

if TYPE_CHECKING:
    from toolchain.runtime.recognizer import Match, PhotoMatches, Recognizer

log = logging.getLogger(__name__)

EMBEDDING_DIM = 128

gallery_app = typer.Typer(
    help="List, remove, export and import the people of a gallery.", no_args_is_help=True
)
app.add_typer(gallery_app, name="gallery")

GalleryOption = Annotated[
    Path | None,
    typer.Option("--gallery", help="Gallery file [default: <artifacts>/gallery.db].",
                 dir_okay=False),
]


class MatchChoice(str, enum.Enum):
    """``--match`` values (see :class:`toolchain.runtime.gallery.MatchMode`)."""

    nearest = "nearest"
    centroid = "centroid"


MatchOption = Annotated[
    MatchChoice,
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
"""Smallest ``--max-detect-side`` other than 0 (``toolchain.runtime.mtcnn.MIN_MAX_SIDE``)."""


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


def _detection(min_face: float | None, max_detect_side: int | None) -> dict[str, Any]:
    """``--min-face`` / ``--max-detect-side`` as ``from_artifacts`` keywords (none: defaults)."""
    options: dict[str, Any] = {}
    if min_face is not None:
        options["min_face_size"] = min_face
    if max_detect_side is not None:
        options["max_side"] = max_detect_side or None
    return {"detection": options} if options else {}


ANNOTATED_TAG = ".annotated"
"""Annotated pictures are named ``<photo stem>[-N].annotated.jpg|png``: never an input's name."""

FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")
"""Characters that make a spreadsheet read a CSV cell as a formula (OWASP, CSV injection)."""


def problem(message: str) -> None:
    """Report one problem with one input as one line on stderr (control characters escaped)."""
    print(f"facenet: {display_text(message)}", file=sys.stderr)


def _min_face(value: float | None) -> dict[str, float]:
    """``--min-enroll-face`` as keyword arguments of ``enroll_many`` (none: its default)."""
    return {} if value is None else {"min_enroll_face": value}


def _threshold_value(value: float | None) -> float | None:
    """``--threshold``: a distance in (0, 2]; NaN and infinity are usage errors."""
    from toolchain.runtime.gallery import check_threshold

    if value is None:
        return None
    try:
        return check_threshold(value, "--threshold")
    except InputError as exc:
        raise typer.BadParameter(str(exc)) from exc


@contextlib.contextmanager
def progress_bar(label: str, total: int) -> Iterator[Callable[[Path], None]]:
    """A rich progress bar on stderr (only on a terminal); yields the per-photo advance callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    err = console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=True,
                  disable=not err.is_terminal) as progress:
        task = progress.add_task(label, total=total)
        yield lambda _path: progress.advance(task)


def _recognizer(artifacts: Path, gallery: Path | None, **options: Any) -> Recognizer:
    from toolchain.runtime.recognizer import Recognizer

    return Recognizer.from_artifacts(artifacts, gallery=gallery, **options)


def _enroll_items(paths: Sequence[Path], name: str | None) -> tuple[list[tuple[str, Path]], int]:
    """``(name, photo)`` pairs from the command-line paths, and how many paths held no photo.

    Without ``--name``: a file is enrolled under its stem (``People/Ada Lovelace.jpg``), a folder's
    own photos likewise, and the photos under each sub-folder under the sub-folder's name
    (``train/ada/*.jpg``). With ``--name``, every photo found is enrolled under that name.
    """
    from toolchain.runtime.images import find_images, list_images

    items: list[tuple[str, Path]] = []
    empty = 0
    for path in paths:
        if not path.is_dir():
            items.append((name or path.stem, path))
            continue
        found: list[tuple[str, Path]] = []
        try:
            if name:
                found.extend((name, photo) for photo in find_images(path))
            else:
                found.extend((photo.stem, photo) for photo in list_images(path))
                for sub in sorted(p for p in path.iterdir() if p.is_dir()):
                    if not sub.name.startswith("."):
                        found.extend((sub.name, photo) for photo in find_images(sub))
        except OSError as exc:
            problem(f"{path}: cannot read the folder ({exc.strerror or exc})")
            empty += 1
            continue
        if not found:
            problem(f"{path}: no photos found")
            empty += 1
        items.extend(found)
    return items, empty


@app.command()
def enroll(
    paths: Annotated[list[Path], typer.Argument(
        exists=True, readable=False,
        help="Photos, a folder of Name.jpg photos, or a folder of per-person folders.",
        show_default=False)],
    name: Annotated[str | None, typer.Option(
        "--name", help="Enroll every given photo under this name.")] = None,
    largest: Annotated[bool, typer.Option(
        "--largest", help="Enroll the biggest face of photos with several faces.")] = False,
    min_enroll_face: MinEnrollFaceOption = None,
    min_face: MinFaceOption = None,
    max_detect_side: MaxDetectSideOption = None,
    gallery: GalleryOption = None,
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS_PATH,
) -> int:
    """Add people's faces to the gallery; re-enrolling a photo already in it is a no-op.

    Photos with no face of at least --min-enroll-face pixels, or with several (unless
    --largest), are skipped and listed; so are files that cannot be read.
    """
    from rich.table import Table

    if name is not None and not name.strip():
        raise typer.BadParameter("must not be empty", param_hint="--name")
    items, empty = _enroll_items(paths, name.strip() if name else None)
    with _recognizer(artifacts, gallery, **_detection(min_face, max_detect_side)) as rec:
        with progress_bar("enrolling", len(items)) as advance:
            outcomes = rec.enroll_many(items, largest=largest, progress=advance,
                                       **_min_face(min_enroll_face))
        target = rec.gallery().path
        people = len(rec.gallery().people())
    rows: dict[str, Counter[str]] = {}
    for outcome in outcomes:
        rows.setdefault(outcome.name, Counter())[outcome.status] += 1
        if not outcome.ok:
            problem(f"skipped: {outcome.message}")
        elif outcome.status == "already" and outcome.enrolled_as != outcome.name:
            problem(f"warning: {outcome.message}")
        elif outcome.status == "already":
            log.info("%s", outcome.message)
    table = Table(title=f"Enrolled into {display_text(target)}")
    for column in ("person", "added", "already there", "skipped"):
        table.add_column(column, justify="left" if column == "person" else "right")
    for person in sorted(rows):
        counts = rows[person]
        skipped = sum(v for k, v in counts.items() if k not in ("added", "already"))
        table.add_row(display_text(person), str(counts["added"]), str(counts["already"]),
                      str(skipped))
    console().print(table)
    failed = sum(1 for o in outcomes if not o.ok) + empty
    added = sum(1 for o in outcomes if o.status == "added")
    print(f"{added} face(s) added, {sum(1 for o in outcomes if o.status == 'already')} already "
          f"there, {failed} skipped; the gallery holds {people} people")
    return 1 if failed else 0


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


def _match_json(match: Match) -> dict[str, Any]:
    return {
        "box": [round(v, 2) for v in match.box],
        "confidence": round(match.confidence, 6),
        "name": match.label,
        "known": match.name is not None,
        "distance": None if match.distance is None else round(match.distance, 6),
        "candidates": [{"name": c.name, "distance": round(c.distance, 6)}
                       for c in match.candidates],
    }


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


def _csv_text(value: object) -> str:
    """A text cell a spreadsheet shows as text: a formula-leading character gets a ``'`` first."""
    text = str(value)
    return f"'{text}" if text.startswith(FORMULA_LEADS) else text


def _csv_candidates(match: Match) -> str:
    """The top-k cell: a JSON list of ``{"name", "distance"}``, whatever the names hold."""
    return json.dumps([{"name": c.name, "distance": round(c.distance, 4)}
                       for c in match.candidates], ensure_ascii=False)


@app.command()
def recognize(
    paths: Annotated[list[Path], typer.Argument(
        exists=True, readable=False, help="Photos and folders of photos (searched recursively).",
        show_default=False)],
    gallery: GalleryOption = None,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", callback=_threshold_value,
        help="Match when the distance is at most this [default: the gallery's calibrated "
             "threshold, else the model's metadata].")] = None,
    top_k: Annotated[int, typer.Option(
        "--top-k", min=1, max=100, help="Candidates listed per face.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV on stdout.")] = False,
    annotate_dir: Annotated[Path | None, typer.Option(
        "--annotate", file_okay=False,
        help="Write each photo with boxes and `name distance` labels into this folder, as "
             "<stem>.annotated.jpg or .png (never over an input; the folder's pictures are not "
             "read as inputs).")] = None,
    match: MatchOption = MatchChoice.nearest,
    min_face: MinFaceOption = None,
    max_detect_side: MaxDetectSideOption = None,
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS_PATH,
) -> int:
    """Name every face in the photos: the closest enrolled person, or `unknown`."""
    from rich.table import Table
    from rich.text import Text

    if as_json and as_csv:
        raise typer.BadParameter("--json and --csv are exclusive", param_hint="--json/--csv")
    files, empty = _recognize_paths(paths, annotate_dir)
    rec = _recognizer(artifacts, gallery, threshold=threshold, top_k=top_k, match=match.value,
                      **_detection(min_face, max_detect_side))
    targets = AnnotationTargets(annotate_dir, files) if annotate_dir is not None else None
    results: list[PhotoMatches] = []
    failed = empty
    with rec, progress_bar("recognizing", len(files)) as advance:
        limit, source = rec.threshold()
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
        print(json.dumps({
            "gallery": str(gallery_path), "threshold": limit, "threshold_source": source,
            "match": match.value,
            "results": [{"file": str(p.path), "error": p.error,
                         "faces": [_match_json(m) for m in p.matches]} for p in results],
        }, indent=2))
    elif as_csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["file", "status", "face", "x", "y", "width", "height", "confidence",
                         "name", "distance", "candidates", "error"])
        for p in results:
            if p.error is not None or not p.matches:
                status = "error" if p.error is not None else "no_face"
                writer.writerow([_csv_text(p.path), status, "", "", "", "", "", "", "", "", "",
                                 _csv_text(p.error or "")])
            for i, m in enumerate(p.matches, 1):
                writer.writerow([
                    _csv_text(p.path), "face", i, *(f"{v:.1f}" for v in m.box),
                    f"{m.confidence:.4f}", _csv_text(m.label),
                    "" if m.distance is None else f"{m.distance:.4f}", _csv_candidates(m), "",
                ])
        sys.stdout.write(buffer.getvalue())
    else:
        table = Table(title=f"threshold {limit:.3f} ({display_text(source)}), "
                            f"match {match.value}")
        table.add_column("photo", overflow="ellipsis", no_wrap=True, max_width=30)
        for column in ("face", "box x,y,w,h", "name", "distance"):
            table.add_column(column, no_wrap=True)
        table.add_column(f"top-{top_k}", overflow="fold")
        for p in results:
            for i, m in enumerate(p.matches, 1):
                table.add_row(
                    display_text(p.path.name), str(i), ",".join(f"{v:.0f}" for v in m.box),
                    display_text(m.name) if m.name is not None else Text("unknown", style="red"),
                    "-" if m.distance is None else f"{m.distance:.3f}",
                    ", ".join(f"{display_text(c.name)} {c.distance:.2f}" for c in m.candidates),
                )
        console().print(table)
    return 1 if failed else 0


@gallery_app.command("list")
def gallery_list(
    gallery: GalleryOption = None,
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS_PATH,
) -> None:
    """List the enrolled people."""
    from rich.table import Table

    from toolchain.runtime.gallery import Gallery

    path = gallery if gallery is not None else layout_for(artifacts).gallery
    with Gallery.open(path) as opened:
        people = opened.people()
        threshold = opened.threshold
        title = (f"{display_text(path)}: model sha256 {opened.fingerprint[:12]}…, threshold "
                 + (f"{threshold:.3f} (calibrated)" if threshold is not None else "not calibrated"))
    table = Table(title=title)
    table.add_column("person")
    table.add_column("embeddings", justify="right")
    table.add_column("photos", justify="right")
    table.add_column("since")
    for person in people:
        table.add_row(display_text(person.name), str(person.embeddings), str(person.photos),
                      person.created)
    console().print(table)
    print(f"{len(people)} people, {sum(p.embeddings for p in people)} embeddings")


@gallery_app.command("remove")
def gallery_remove(
    name: Annotated[str, typer.Argument(help="Person to remove.", show_default=False)],
    gallery: GalleryOption = None,
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS_PATH,
) -> None:
    """Remove a person and all their embeddings."""
    from toolchain.runtime.gallery import Gallery

    path = gallery if gallery is not None else layout_for(artifacts).gallery
    with Gallery.open(path) as opened:
        count = opened.remove(name)
    print(f"removed {name!r} ({count} embeddings) from {display_text(path)}")


@gallery_app.command("export")
def gallery_export(
    file: Annotated[Path, typer.Argument(dir_okay=False, help="JSON file to write.",
                                         show_default=False)],
    gallery: GalleryOption = None,
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS_PATH,
) -> None:
    """Write every embedding, with its provenance, to a JSON file."""
    from toolchain.runtime.gallery import Gallery, export_json

    path = gallery if gallery is not None else layout_for(artifacts).gallery
    with Gallery.open(path) as opened:
        count = export_json(opened, file)
    print(f"exported {count} embeddings to {display_text(file)}")


@gallery_app.command("import")
def gallery_import(
    file: Annotated[Path, typer.Argument(
        exists=True, dir_okay=False, show_default=False,
        help="A `facenet gallery export` file, or the seed's DataBase.json "
             '({"Name": [128 floats], ...}).')],
    gallery: GalleryOption = None,
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS_PATH,
) -> None:
    """Add the embeddings of a JSON file to the gallery; a malformed file changes nothing.

    A new gallery is bound to the current model: an export of another model is refused (exit 4).
    """
    from toolchain.runtime.gallery import import_file

    layout = layout_for(artifacts)
    path = gallery if gallery is not None else layout.gallery
    data, result = import_file(file, path, layout.models_dir / "facenet.onnx", EMBEDDING_DIM)
    if data.fingerprint is None and result.added:
        log.warning("%s: the seed's vectors were computed by its own pipeline (BGR crops); "
                    "enrolling the photos again with `facenet enroll` matches better", file)
    print(f"imported {len(result.added)} embeddings ({data.kind}); "
          f"{len(result.duplicates)} were already in {display_text(path)}")
