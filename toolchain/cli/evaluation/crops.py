"""``facenet eval crops``: crops compared on labelled photos, and the default next to a peer.

A thin adapter over :func:`toolchain.evaluation.crops.run_study` and its reports
(:mod:`toolchain.evaluation.crops_report`). Exit code 0; 2 for a usage error; 3 for a bad
labelled set; 8 when the ``face_recognition`` environment cannot run. Only onnxruntime, numpy,
Pillow, typer and rich are imported (inside the command body), never TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from toolchain.cli.common import ArtifactsOption, console, display_text
from toolchain.cli.options import MaxDetectSideOption, MinFaceOption, detection_keywords
from toolchain.core.paths import DEFAULT_ARTIFACTS, Layout

if TYPE_CHECKING:
    from rich.table import Table

    from toolchain.evaluation.crops import CropStudy
    from toolchain.evaluation.holdout import OutOfSample

app = typer.Typer()
"""``facenet eval crops`` (added to the ``eval`` group by :mod:`toolchain.cli.evaluation`)."""

SET_HELP = ("A labelled set: DIR of <person>/ photo folders, or LABELS.csv@DIR (a photo,names "
            "file, names left to right separated by ;). Repeat for several [default: the "
            "5-celebrity photos of the artifacts].")


def _table(study: CropStudy) -> Table:
    from rich.table import Table

    from toolchain.evaluation.crops import ALL_SETS

    table = Table(title=f"Crops over all labelled pairs (threshold at FAR <= {study.far:g})")
    for column in ("crop", "threshold", "ROC AUC", "EER", f"TAR @ FAR {study.far:g}", "accuracy"):
        table.add_column(column, justify="left" if column == "crop" else "right")
    for crop in study.crops:
        overall = crop.of(ALL_SETS)
        tag = (" (best)" if crop.crop == study.best else "") + (
            " (default)" if crop.crop == study.default_crop else "")
        table.add_row(crop.crop + tag, f"{crop.threshold.value:.4f}", f"{overall.auc:.4f}",
                      f"{overall.eer:.2%}", f"{crop.threshold.tar:.2%}",
                      f"{overall.accuracy:.2%}")
    return table


def _peer_table(study: CropStudy) -> Table:
    from rich.table import Table

    table = Table(title=f"Defaults side by side with {study.peer_name}")
    for column in ("set", "pairs", "ours AUC", "ours accuracy", "peer AUC", "peer accuracy"):
        table.add_column(column, justify="left" if column == "set" else "right")
    for row in study.peer or ():
        table.add_row(display_text(row.set), str(row.pairs), f"{row.ours.auc:.4f}",
                      f"{row.ours.accuracy:.2%}", f"{row.peer.auc:.4f}",
                      f"{row.peer.accuracy:.2%}")
    return table


def _holdout_table(oos: OutOfSample) -> Table:
    from rich.table import Table

    table = Table(title=f"Out of sample: threshold calibrated on the other sets at FAR <= "
                        f"{oos.far:g}, measured on the held-out one")
    for column in ("held out", "decision", "threshold", "accepted impostor pairs",
                   f"FAR {oos.confidence:.0%} upper", "TAR", "pair accuracy"):
        table.add_column(column, justify="left" if column in ("held out", "decision")
                         else "right")
    for fold in oos.folds:
        rows = [("this model", fold.ours), ("this model, faces both found", fold.ours_same_faces),
                ("peer, calibrated", fold.peer),
                (f"peer, fixed {oos.peer_tolerance:g}", fold.peer_fixed)]
        for label, decision in rows:
            if decision is None:
                continue
            pairs = decision.pairs
            table.add_row(display_text(fold.held_out), label, f"{decision.threshold:.4f}",
                          f"{pairs.false_accepts:,} of {pairs.impostor_pairs:,}",
                          f"{pairs.far_upper:.1e}", f"{pairs.tar:.2%}", f"{pairs.accuracy:.2%}")
    return table


@app.command("crops")
def crops(
    sets: Annotated[list[str] | None, typer.Option("--set", help=SET_HELP,
                                                  show_default=False)] = None,
    crops: Annotated[list[str] | None, typer.Option(
        "--crop", show_default=False,
        help="A crop to compare: box, margin=32px, margin=20%, align, align,margin=10%. "
             "Repeat for several [default: the study's ten].")] = None,
    far: Annotated[float, typer.Option(
        "--far", min=0.0, max=1.0,
        help="The false-accept rate of each crop's threshold.")] = 1e-3,
    face_recognition_python: Annotated[Path | None, typer.Option(
        "--face-recognition-python", exists=True, dir_okay=False, show_default=False,
        help="Python of an environment with the face_recognition package: measure it on the "
             "same photos at its default tolerance.")] = None,
    min_face: MinFaceOption = None,
    max_detect_side: MaxDetectSideOption = None,
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
) -> int:
    """Compare crops (margins, alignment) on labelled photos; the default next to a peer.

    With two or more sets, also leave one set out: calibrate the threshold on the others and
    measure it on that one (out-of-sample). Writes <artifacts>/reports/crops.{md,json,png}.
    """
    from toolchain.core.contracts import ONNX_FILE
    from toolchain.core.crop import CropSpec
    from toolchain.evaluation.calibration import DetectedPhotos
    from toolchain.evaluation.crops import STUDY_CROPS, run_study
    from toolchain.evaluation.crops_report import REPORT_NAMES, write_reports
    from toolchain.evaluation.labelled import parse_set
    from toolchain.evaluation.peer import PeerPhotos
    from toolchain.runtime.embedder import Embedder
    from toolchain.runtime.loading import load_detector

    layout = Layout(artifacts)
    for text in crops or ():
        try:
            CropSpec.parse(text)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--crop") from exc
    labelled = [parse_set(spec) for spec in sets or [str(layout.dataset_dir)]]
    embedder = Embedder(layout.models_dir / ONNX_FILE)
    options = detection_keywords(min_face, max_detect_side).get("detection", {})
    photos = DetectedPhotos(load_detector(layout.models_dir, **options))
    peer = None
    if face_recognition_python is not None:
        every = list(dict.fromkeys(p.path for s in labelled for p in s.photos))
        with console(stderr=True).status("face_recognition on the same photos"):
            peer = PeerPhotos(face_recognition_python, every)
    with console(stderr=True).status("embedding every crop") as status:
        study = run_study(photos, embedder, labelled, crops or STUDY_CROPS, far=far, peer=peer,
                          progress=lambda crop: status.update(f"embedding crop {crop}"))
    write_reports(study, layout)
    out = console()
    out.print(_table(study))
    if study.peer is not None:
        out.print(_peer_table(study))
    oos = study.out_of_sample
    if oos is not None:
        out.print(_holdout_table(oos))
        print(f"out of sample (all folds): {oos.pooled.ours.false_accepts:,} of "
              f"{oos.pooled.ours.impostor_pairs:,} impostor pairs accepted at a nominal FAR of "
              f"{oos.far:g}; the shipped threshold {oos.shipped_threshold:.4f} is calibrated on "
              "every set")
    else:
        print("out of sample: needs at least two labelled sets (--set); not measured")
    print(f"best crop: {study.best}; the model's default crop: {study.default_crop}")
    print(f"reports: {display_text(layout.reports_dir / REPORT_NAMES[1])}, "
          f"{', '.join(REPORT_NAMES[::2])}")
    return 0
