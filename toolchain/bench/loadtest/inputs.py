"""What a load session sends: its settings (:class:`LoadConfig`) and the photos.

The photos are the shared examples' ``people/<name>/`` (enrolled) and ``photos/`` (recognized);
:func:`variant` makes a new file of a photo for each enrollment, so every one is a real write.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps
from PIL.PngImagePlugin import PngInfo

from toolchain.bench.config import SHARED_EXAMPLES

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class LoadConfig:
    """What one session sends.

    Attributes:
        clients: concurrent client threads.
        requests: requests of the load phase (all clients together).
        enroll_every: one request in this many is an enrollment (the rest recognitions).
        workers: the server's ``--workers``.
        queue: the server's ``--queue`` (beyond it, 503).
        kill_enrollments: simultaneous enrollments of the kill phase.
        burst: simultaneous recognitions of the burst phase.
        burst_queue: the server's ``--queue`` in the burst phase (small: the burst overflows it).
        cli_photos: photos of the CLI's batch (the load's photos, cycled).
        python: interpreter that runs the server and the CLI (``-m toolchain``).
        examples: folder with ``people/<name>/`` and ``photos/``.
    """

    clients: int = 16
    requests: int = 160
    enroll_every: int = 8
    workers: int = 2
    queue: int = 16
    kill_enrollments: int = 12
    burst: int = 20
    burst_queue: int = 4
    cli_photos: int = 40
    python: Path = Path(sys.executable)
    examples: Path = SHARED_EXAMPLES


def photos_in(folder: Path) -> list[Path]:
    """The photos of ``folder``, by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)


def people_in(examples: Path) -> dict[str, list[Path]]:
    """Each person of ``examples/people/`` and their photos, by name."""
    return {d.name: photos_in(d) for d in sorted((examples / "people").iterdir()) if d.is_dir()}


def variant(photo: Path, tag: str, folder: Path) -> Path:
    """``photo``'s pixels (upright) as a PNG carrying ``tag``: new bytes, the same faces.

    The gallery skips a face whose image sha256 and box it already holds, so every enrollment
    of the session gets its own file to be a real write.
    """
    info = PngInfo()
    info.add_text("facenet-loadtest", tag)
    out = folder / f"{tag}-{photo.stem}.png"
    with Image.open(photo) as image:
        ImageOps.exif_transpose(image).convert("RGB").save(out, pnginfo=info)
    return out
