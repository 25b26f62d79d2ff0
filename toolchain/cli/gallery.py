"""``facenet gallery list | remove | export | import | migrate``: the people of a gallery.

Every command takes a SQLite file or a ``postgresql://`` URL as ``--gallery``. Only the gallery
module (numpy, sqlite3, psycopg for a URL) is imported, inside the command bodies: no model is
loaded except to fingerprint a new gallery on import.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from toolchain.cli.common import ArtifactsOption, console, display_text
from toolchain.cli.options import GalleryOption
from toolchain.core.contracts import EMBEDDING_DIM, ONNX_FILE
from toolchain.core.paths import DEFAULT_ARTIFACTS, Layout
from toolchain.gallery import open_gallery

log = logging.getLogger(__name__)

app = typer.Typer(
    name="gallery",
    help="List, remove, export, import and migrate the people of a gallery (SQLite or PostgreSQL).",
    no_args_is_help=True,
)
"""``facenet gallery ...`` (added to the root app by :mod:`toolchain.cli.app`)."""


@app.command("list")
def gallery_list(
    gallery: GalleryOption = None,
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
) -> None:
    """List the enrolled people."""
    from rich.table import Table


    path = gallery if gallery is not None else Layout(artifacts).gallery
    with open_gallery(path) as opened:
        people = opened.people()
        threshold = opened.threshold
        title = (f"{display_text(opened.path)} ({opened.backend}): model sha256 "
                 f"{opened.fingerprint[:12]}…, threshold "
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


@app.command("remove")
def gallery_remove(
    name: Annotated[str, typer.Argument(help="Person to remove.", show_default=False)],
    gallery: GalleryOption = None,
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
) -> None:
    """Remove a person and all their embeddings.

    NAME as the name rule makes it (NFC, stripped), or as `gallery list` shows a name an older
    gallery holds.
    """
    from toolchain.gallery.names import NameRefused, stored_name

    path = gallery if gallery is not None else Layout(artifacts).gallery
    with open_gallery(path) as opened:
        try:
            name = stored_name(name, (person.name for person in opened.people()))
        except NameRefused as exc:
            raise typer.BadParameter(str(exc), param_hint="NAME") from exc
        count = opened.remove(name)
        where = opened.path
    print(f"removed {name!r} ({count} embeddings) from {display_text(where)}")


@app.command("export")
def gallery_export(
    file: Annotated[Path, typer.Argument(
        dir_okay=False, show_default=False,
        help="JSON file to write (written whole or not at all); - for standard output.")],
    gallery: GalleryOption = None,
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
) -> None:
    """Write every embedding, with its provenance, to a JSON file (or standard output)."""
    from toolchain.gallery import export_document, export_json

    path = gallery if gallery is not None else Layout(artifacts).gallery
    with open_gallery(path) as opened:
        if str(file) == "-":
            document = export_document(opened)
            sys.stdout.write(json.dumps(document, indent=2, sort_keys=True) + "\n")
            count = sum(len(person["embeddings"]) for person in document["people"])
            print(f"exported {count} embeddings to standard output", file=sys.stderr)
            return
        count = export_json(opened, file)
    print(f"exported {count} embeddings to {display_text(file)}")


@app.command("import")
def gallery_import(
    file: Annotated[Path, typer.Argument(
        exists=True, dir_okay=False, show_default=False,
        help="A `facenet gallery export` file, or the seed's DataBase.json "
             '({"Name": [128 floats], ...}).')],
    gallery: GalleryOption = None,
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
) -> None:
    """Add the embeddings of a JSON file to the gallery; a malformed file changes nothing.

    A new gallery is bound to the current model: an export of another model is refused (exit 4).
    """
    from toolchain.gallery import display_target, import_file

    layout = Layout(artifacts)
    path = gallery if gallery is not None else layout.gallery
    data, result = import_file(file, path, layout.models_dir / ONNX_FILE, EMBEDDING_DIM)
    if data.fingerprint is None and result.added:
        log.warning("%s: the seed's vectors were computed by its own pipeline (BGR crops); "
                    "enrolling the photos again with `facenet enroll` matches better", file)
    print(f"imported {len(result.added)} embeddings ({data.kind}); "
          f"{len(result.duplicates)} were already in {display_text(display_target(path))}")


@app.command("migrate")
def gallery_migrate(
    source: Annotated[str, typer.Argument(
        metavar="SRC", show_default=False,
        help="The gallery to copy: a SQLite file or a postgresql:// URL.")],
    destination: Annotated[str, typer.Argument(
        metavar="DST", show_default=False,
        help="Where to copy it (created if missing; an existing one must be of the same model "
             "and crop): a SQLite file or a postgresql:// URL.")],
) -> None:
    """Copy a gallery between backends (or places), then verify counts and checksums.

    Copied in batches through the idempotent enrollment: an interrupted migration is finished
    by running it again. The threshold goes along when the destination has none.
    """
    from toolchain.gallery import display_target, gallery_target
    from toolchain.gallery.migrate import migrate

    result = migrate(gallery_target(source), gallery_target(destination))
    print(f"migrated {result.embeddings} embeddings of {result.people} people from "
          f"{display_text(display_target(result.source))} to "
          f"{display_text(display_target(result.destination))} ({result.added} new, "
          f"{result.embeddings - result.added} already there"
          + (", threshold copied" if result.threshold_copied else "")
          + f"); verified: counts and checksum sha256 {result.checksum[:16]}…")
