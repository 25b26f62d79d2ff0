"""``facenet enroll``: add people's faces to a gallery.

Only onnxruntime, numpy, Pillow, typer and rich are imported (inside the command body), never
TensorFlow. A photo that cannot be used is reported as one line on stderr and the run goes on; the
exit code is 0 when every photo was enrolled or already there, 1 when some were skipped.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from toolchain.cli.common import ArtifactsOption, console, display_text, problem
from toolchain.cli.options import (
    AlignOption,
    GalleryOption,
    MarginOption,
    MaxDetectSideOption,
    MinEnrollFaceOption,
    MinFaceOption,
    ModelsOption,
    PrecisionChoice,
    PrecisionOption,
    RuntimeChoice,
    RuntimeOption,
    crop_keywords,
    detection_keywords,
    enroll_keywords,
    model_keywords,
    open_recognizer,
    progress_bar,
)
from toolchain.core.paths import DEFAULT_ARTIFACTS

log = logging.getLogger(__name__)

app = typer.Typer()
"""``facenet enroll`` (added to the root app by :mod:`toolchain.cli.app`)."""


def checked_name(name: str | None, option: str = "--name") -> str | None:
    """A name typed on the command line as the name rule makes it (NFC, stripped).

    Raises:
        typer.BadParameter: a name the rule refuses (a usage error, exit 2).
    """
    from toolchain.gallery.names import NameRefused, person_name

    if name is None:
        return None
    try:
        return person_name(name)
    except NameRefused as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from exc


def _enroll_items(paths: Sequence[Path], name: str | None) -> tuple[list[tuple[str, Path]], int]:
    """``(name, photo)`` pairs from the command-line paths, and how many inputs were skipped:
    paths that held no photo, and photos whose file or folder name the name rule refuses (each
    reported as one line).

    Without ``--name``: a file is enrolled under its stem (``People/Ada Lovelace.jpg``), a folder's
    own photos likewise, and the photos under each sub-folder under the sub-folder's name
    (``train/ada/*.jpg``). With ``--name`` (already checked), every photo found is enrolled under
    that name. Names are given as the name rule makes them (``café`` in NFD is ``café``).
    """
    from toolchain.gallery.names import NameRefused, person_name
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
    named: list[tuple[str, Path]] = []
    for person, photo in items:
        try:
            named.append((person_name(person), photo))
        except NameRefused as exc:
            problem(f"skipped: {photo}: {exc}")
            empty += 1
    return named, empty


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
    margin: MarginOption = None,
    align: AlignOption = None,
    runtime: RuntimeOption = RuntimeChoice.onnxruntime,
    precision: PrecisionOption = PrecisionChoice.fp32,
    gallery: GalleryOption = None,
    models: ModelsOption = None,
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
) -> int:
    """Add people's faces to the gallery; re-enrolling a photo already in it is a no-op.

    Photos with no face of at least --min-enroll-face pixels, or with several (unless
    --largest), are skipped and listed; so are files that cannot be read.
    """
    from rich.table import Table

    from toolchain.runtime.faces import EnrollStatus

    items, empty = _enroll_items(paths, checked_name(name))
    with open_recognizer(artifacts, gallery, models, **crop_keywords(margin, align),
                         **detection_keywords(min_face, max_detect_side),
                         **model_keywords(runtime, precision)) as rec:
        with progress_bar("enrolling", len(items)) as advance:
            outcomes = rec.enroll_many(items, largest=largest, progress=advance,
                                       **enroll_keywords(min_enroll_face))
        target = rec.gallery().path
        people = len(rec.gallery().people())
    rows: dict[str, Counter[EnrollStatus]] = {}
    for outcome in outcomes:
        rows.setdefault(outcome.name, Counter())[outcome.status] += 1
        if not outcome.ok:
            problem(f"skipped: {outcome.message}")
        elif outcome.status is EnrollStatus.ALREADY and outcome.enrolled_as != outcome.name:
            problem(f"warning: {outcome.message}")
        elif outcome.status is EnrollStatus.ALREADY:
            log.info("%s", outcome.message)
    table = Table(title=f"Enrolled into {display_text(target)}")
    for column in ("person", "added", "already there", "skipped"):
        table.add_column(column, justify="left" if column == "person" else "right")
    for person in sorted(rows):
        counts = rows[person]
        added, already = counts[EnrollStatus.ADDED], counts[EnrollStatus.ALREADY]
        skipped = counts.total() - added - already
        table.add_row(display_text(person), str(added), str(already), str(skipped))
    console().print(table)
    failed = sum(1 for o in outcomes if not o.ok) + empty
    totals = Counter(o.status for o in outcomes)
    print(f"{totals[EnrollStatus.ADDED]} face(s) added, {totals[EnrollStatus.ALREADY]} already "
          f"there, {failed} skipped; the gallery holds {people} people")
    return 1 if failed else 0
