"""``facenet compare A B``: are the faces of two photos the same person?

The largest face of each photo (or the one ``--face-a`` / ``--face-b`` names), their distance, and
the decision at the threshold in force, with where that threshold comes from. No gallery is needed
and none is created (an existing one only lends its stored threshold). The decision is output, not
an error: the exit code is 0 for "same" and for "different"; 3 when a photo cannot be read, has no
face or no face of the number asked for; 2 for a usage error. Only onnxruntime, numpy, Pillow,
typer and rich are imported (inside the command body).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from toolchain.cli.common import ArtifactsOption, console, display_text
from toolchain.cli.options import (
    AlignOption,
    GalleryOption,
    MarginOption,
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
    threshold_value,
)
from toolchain.cli.output import print_json
from toolchain.core.paths import DEFAULT_ARTIFACTS

if TYPE_CHECKING:
    from toolchain.runtime.faces import Comparison

app = typer.Typer()
"""``facenet compare`` (added to the root app by :mod:`toolchain.cli.app`)."""



def _photo(metavar: str) -> Any:
    return typer.Argument(exists=True, dir_okay=False, readable=False, show_default=False,
                          metavar=metavar, help=f"Photo {metavar}.")

FACE_HELP = ("Face number in that photo, 1 = the most confident (the `face` column of `facenet "
             "recognize`) [default: the largest face].")


def _print_table(result: Comparison) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"threshold {result.threshold:.3f} "
                        f"({display_text(result.threshold_source.value)}), crop {result.crop} "
                        f"({result.crop_source.value})")
    table.add_column("photo", overflow="fold")
    for column in ("face", "box x,y,w,h", "confidence"):
        table.add_column(column, no_wrap=True)
    for face in (result.a, result.b):
        table.add_row(display_text(face.source), f"{face.number} of {face.faces}",
                      ",".join(f"{v:.0f}" for v in face.box), f"{face.confidence:.4f}")
    out = console()
    out.print(table)
    verdict = Text("same person" if result.same else "different people",
                   style="green" if result.same else "red")
    out.print(Text(f"distance {result.distance:.4f}, margin {result.margin:+.4f}: "), verdict,
              sep="")


@app.command()
def compare(
    photo_a: Annotated[Path, _photo("A")],
    photo_b: Annotated[Path, _photo("B")],
    face_a: Annotated[int | None, typer.Option("--face-a", min=1, show_default=False,
                                               help=FACE_HELP)] = None,
    face_b: Annotated[int | None, typer.Option("--face-b", min=1, show_default=False,
                                               help=FACE_HELP)] = None,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", callback=threshold_value,
        help="Same person when the distance is at most this [default: the gallery's calibrated "
             "threshold if the gallery exists, else the model's metadata].")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
    gallery: GalleryOption = None,
    min_face: MinFaceOption = None,
    max_detect_side: MaxDetectSideOption = None,
    margin: MarginOption = None,
    align: AlignOption = None,
    runtime: RuntimeOption = RuntimeChoice.onnxruntime,
    precision: PrecisionOption = PrecisionChoice.fp32,
    models: ModelsOption = None,
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
) -> int:
    """Are the faces of two photos the same person? Distance, threshold, decision; exit 0."""
    rec = open_recognizer(artifacts, gallery, models, threshold=threshold,
                          **crop_keywords(margin, align, allow_mismatch=True),
                          **detection_keywords(min_face, max_detect_side),
                          **model_keywords(runtime, precision))
    with rec:
        result = rec.compare(photo_a, photo_b, face_a=face_a, face_b=face_b)
    if as_json:
        print_json(result.to_dict())
    else:
        _print_table(result)
    return 0
