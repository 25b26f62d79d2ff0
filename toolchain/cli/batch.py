"""``facenet batch enroll | recognize``: many photos on a Ray cluster (Ray Data, an actor pool
holding the ONNX Runtime sessions).

The photos are named like ``facenet enroll`` / ``recognize`` name them (arguments, folders) or
listed in a file. Ray, onnxruntime and numpy are imported inside the command bodies; never
TensorFlow.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from toolchain.cli.common import ArtifactsOption, display_text, problem
from toolchain.cli.options import (
    AlignOption,
    AllowCropMismatchOption,
    GalleryOption,
    MarginOption,
    MatchOption,
    MaxDetectSideOption,
    MinEnrollFaceOption,
    MinFaceOption,
    ModelsOption,
    crop_keywords,
    detection_keywords,
    open_recognizer,
    progress_bar,
    threshold_value,
)
from toolchain.core.paths import DEFAULT_ARTIFACTS
from toolchain.gallery.schema import MatchMode

if TYPE_CHECKING:
    from toolchain.batch.pipeline import ClusterOptions
    from toolchain.runtime.recognizer import Recognizer

log = logging.getLogger(__name__)

app = typer.Typer(
    name="batch", no_args_is_help=True,
    help="Enroll or recognize many photos on a Ray cluster: a Ray Data pipeline whose workers "
         "hold the ONNX Runtime sessions.",
)
"""``facenet batch ...`` (added to the root app by :mod:`toolchain.cli.app`)."""

RayOption = Annotated[
    str,
    typer.Option("--ray", metavar="ADDRESS",
                 help="local: a private Ray instance on this machine (--cpus bounds it); auto: "
                      "the cluster this machine joined with `ray start`; HOST:PORT or "
                      "ray://HOST:10001: that cluster."),
]
CpusOption = Annotated[
    int | None,
    typer.Option("--cpus", min=1, show_default=False,
                 help="CPUs of a --ray local instance [default: all of this machine]."),
]
ActorsOption = Annotated[
    int | None,
    typer.Option("--actors", min=1, show_default=False,
                 help="Workers in the pool, one CPU and one set of ONNX Runtime sessions each "
                      "[default: one per CPU of the cluster]."),
]
ThreadsOption = Annotated[
    int | None,
    typer.Option("--threads", min=1, show_default=False,
                 help="ONNX Runtime intra-op threads of each worker [default: the CPUs Ray "
                      "reserves for a worker, 1]."),
]
ListOption = Annotated[
    Path | None,
    typer.Option("--list", exists=True, dir_okay=False, show_default=False,
                 help="A file of photos, one per line (relative to the file's folder); to "
                      "enroll, NAME<TAB>PHOTO or a photo named after its file."),
]


def _listed(list_file: Path | None, named: bool) -> list[tuple[str, Path]]:
    """``(name, photo)`` of every line of ``--list`` (names empty unless ``named``, else as the
    name rule makes them).

    Raises:
        typer.BadParameter: the file cannot be read, or a line's name is one the rule refuses.
    """
    from toolchain.gallery.names import NameRefused, person_name

    if list_file is None:
        return []
    items: list[tuple[str, Path]] = []
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"{list_file}: cannot read ({exc})",
                                 param_hint="--list") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        name, _, photo = line.rpartition("\t") if named else ("", "", line)
        path = (list_file.parent / photo.strip()).resolve()
        if named:
            try:
                name = person_name(name if name.strip() else path.stem)
            except NameRefused as exc:
                raise typer.BadParameter(f"{list_file}: line {number}: {exc}",
                                         param_hint="--list") from exc
        items.append((name, path))
    return items


def _cluster(ray: str, cpus: int | None, actors: int | None) -> ClusterOptions:
    from toolchain.batch.pipeline import ClusterOptions

    if cpus is not None and ray != "local":
        raise typer.BadParameter("--cpus bounds a --ray local instance only", param_hint="--cpus")
    return ClusterOptions(ray, cpus, actors)


def _target(rec: Recognizer) -> str:
    """The gallery as the workers open it: a URL, or the file's absolute path."""
    assert rec.gallery_path is not None
    target = rec.gallery_path
    return str(target.resolve() if isinstance(target, Path) else target)


@app.command("enroll")
def batch_enroll(
    paths: Annotated[list[Path] | None, typer.Argument(
        exists=True, readable=False, show_default=False,
        help="Photos, a folder of Name.jpg photos, or a folder of per-person folders.")] = None,
    list_file: ListOption = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="Enroll every given photo under this name.")] = None,
    largest: Annotated[bool, typer.Option(
        "--largest", help="Enroll the biggest face of photos with several faces.")] = False,
    min_enroll_face: MinEnrollFaceOption = None,
    min_face: MinFaceOption = None,
    max_detect_side: MaxDetectSideOption = None,
    margin: MarginOption = None,
    align: AlignOption = None,
    gallery: GalleryOption = None,
    ray: RayOption = "local",
    cpus: CpusOption = None,
    actors: ActorsOption = None,
    threads: ThreadsOption = None,
    models: ModelsOption = None,
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
) -> int:
    """Enroll many photos on Ray; the faces go into the gallery in idempotent batches.

    The same faces, embeddings and skips as `facenet enroll`; a worker that dies is replaced and
    its photos retried, never enrolled twice. Exit 1 when some photos were skipped; exit 8 when
    Ray gives up (a batch killed its worker on every retry): the photos done by then stay enrolled.
    """
    from toolchain.batch.pipeline import BatchConfig, enroll_batch
    from toolchain.cli.enroll import _enroll_items, checked_name
    from toolchain.runtime.faces import EnrollStatus
    from toolchain.runtime.recognizer import MIN_ENROLL_FACE

    cluster = _cluster(ray, cpus, actors)
    items, empty = _enroll_items(list(paths or []), checked_name(name))
    items = [(n, p.resolve()) for n, p in items] + _listed(list_file, named=True)
    if not items:
        raise typer.BadParameter("no photos: give photos, folders or --list")
    detection = detection_keywords(min_face, max_detect_side).get("detection", {})
    with open_recognizer(artifacts.resolve(), gallery, models, **crop_keywords(margin, align),
                         detection=detection) as rec:
        opened = rec.gallery(create=True)
        config = BatchConfig(
            "enroll", str(artifacts.resolve()), _target(rec), rec.crop()[0].text,
            detection=detection, largest=largest,
            min_enroll_face=MIN_ENROLL_FACE if min_enroll_face is None else min_enroll_face,
            threads=threads or 0, models=str(models.resolve()) if models else None)
        with progress_bar("enrolling on Ray", len(items)) as advance:
            summary = enroll_batch(items, config, cluster, opened, progress=advance)
        people = len(opened.people())
        target = opened.path
    for record in summary.enrolled:
        if record.status not in (EnrollStatus.ADDED, EnrollStatus.ALREADY):
            problem(f"skipped: {record.message}")
        elif record.enrolled_as not in (None, record.name):
            problem(f"warning: {record.message}")
    totals = Counter(record.status for record in summary.enrolled)
    failed = len(summary.enrolled) - totals[EnrollStatus.ADDED] - totals[EnrollStatus.ALREADY]
    print(f"{totals[EnrollStatus.ADDED]} face(s) added, {totals[EnrollStatus.ALREADY]} already "
          f"there, {failed + empty} skipped, on Ray ({summary.actors} workers, "
          f"{summary.cpus:g} CPUs); {display_text(target)} holds {people} people")
    return 1 if failed or empty else 0


@app.command("recognize")
def batch_recognize(
    paths: Annotated[list[Path] | None, typer.Argument(
        exists=True, readable=False, show_default=False,
        help="Photos and folders of photos (searched recursively).")] = None,
    output: Annotated[Path, typer.Option(
        "--output", "-o", dir_okay=False, show_default=False,
        help="Where the results go: FILE.jsonl (one JSON object per photo) or FILE.parquet; "
             "written whole or not at all; never one of the inputs.")
    ] = Path("recognized.jsonl"),
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace an existing --output (once the run has succeeded).")
    ] = False,
    list_file: ListOption = None,
    gallery: GalleryOption = None,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", callback=threshold_value,
        help="Match when the distance is at most this [default: the gallery's calibrated "
             "threshold, else the model's metadata].")] = None,
    top_k: Annotated[int, typer.Option(
        "--top-k", min=1, max=100, help="Candidates listed per face.")] = 3,
    match: MatchOption = MatchMode.NEAREST,
    min_face: MinFaceOption = None,
    max_detect_side: MaxDetectSideOption = None,
    margin: MarginOption = None,
    align: AlignOption = None,
    allow_crop_mismatch: AllowCropMismatchOption = False,
    ray: RayOption = "local",
    cpus: CpusOption = None,
    actors: ActorsOption = None,
    threads: ThreadsOption = None,
    models: ModelsOption = None,
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
) -> int:
    """Recognize every face of many photos on Ray, into JSON Lines or Parquet.

    One record per photo (file, error, faces with box, name, distance, margin, runner-up and
    candidates), in input order; the same faces and distances as `facenet recognize --json`.
    Exit 1 when some photos could not be read (their records carry the error); exit 8 when Ray
    gives up (a batch killed its worker on every retry): no output is written then. Exit 3
    before any work when --output is an input (the list, a photo) or exists without
    --overwrite.
    """
    from toolchain.batch.pipeline import BatchConfig, check_output, recognize_batch
    from toolchain.runtime.images import find_images

    cluster = _cluster(ray, cpus, actors)
    photos: list[Path] = []
    for path in paths or []:
        photos.extend(find_images(path) if path.is_dir() else [path])
    photos = [p.resolve() for p in photos] + [p for _, p in _listed(list_file, named=False)]
    if not photos:
        raise typer.BadParameter("no photos: give photos, folders or --list")
    read = [] if list_file is None else [list_file]
    check_output(output, [*read, *photos], overwrite=overwrite)  # before the models load
    detection = detection_keywords(min_face, max_detect_side).get("detection", {})
    with open_recognizer(artifacts.resolve(), gallery, models, threshold=threshold, top_k=top_k,
                         match=match.value, detection=detection,
                         **crop_keywords(margin, align, allow_crop_mismatch)) as rec:
        rec.gallery()
        config = BatchConfig(
            "recognize", str(artifacts.resolve()), _target(rec), rec.crop()[0].text,
            detection=detection, threshold=threshold, match=match.value, top_k=top_k,
            allow_crop_mismatch=allow_crop_mismatch, threads=threads or 0,
            models=str(models.resolve()) if models else None)
    with progress_bar("recognizing on Ray", len(photos)) as advance:
        summary = recognize_batch(photos, config, cluster, output, progress=advance,
                                  read=read,
                                  overwrite=overwrite)
    print(f"{summary.faces} face(s) in {summary.photos} photos on Ray ({summary.actors} "
          f"workers, {summary.cpus:g} CPUs) -> {display_text(output)}")
    return 1 if summary.errors else 0
