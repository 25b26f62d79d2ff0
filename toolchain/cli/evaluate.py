"""``facenet evaluate``: accuracy, ROC AUC and EER of a train/ + val/ per-person photo set.

Only onnxruntime, numpy, Pillow, matplotlib, typer and rich are imported (inside the command
body), never TensorFlow. Exit code 0 when every photo was handled, 1 when some could not be read.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer

from toolchain.cli.app import (
    DEFAULT_ARTIFACTS_PATH,
    ArtifactsOption,
    app,
    console,
    display_text,
    layout_for,
)
from toolchain.cli.recognize import (
    GalleryOption,
    MatchChoice,
    MatchOption,
    MaxDetectSideOption,
    MinEnrollFaceOption,
    MinFaceOption,
    _detection,
    _min_face,
    _recognizer,
    problem,
    progress_bar,
)
from toolchain.core.errors import InputError


def _dataset_split(folder: Path) -> list[tuple[str, Path]]:
    from toolchain.runtime.images import find_images

    if not folder.is_dir():
        raise InputError(f"{folder}: missing; the dataset needs train/ and val/ per-person "
                         "folders")
    items = [(person.name, photo)
             for person in sorted(p for p in folder.iterdir() if p.is_dir())
             if not person.name.startswith(".")
             for photo in find_images(person)]
    if not items:
        raise InputError(f"{folder}: no per-person photo folders")
    return items


def _evaluate_markdown(summary: dict[str, Any], people: list[str], predicted_names: list[str],
                       confusion: dict[str, Counter[str]]) -> str:
    ident, ver = summary["identification"], summary["verification"]
    lines = [
        "# Evaluation",
        "",
        f"Dataset `{summary['dataset']}`: {summary['train_photos']} train photos "
        f"({summary['enrolled']} enrolled), {summary['val_photos']} val photos, "
        f"{len(people)} people. Model `{summary['model']}` (sha256 "
        f"`{summary['model_fingerprint'][:16]}…`), match `{summary['match']}`, "
        f"{summary['created']}.",
        "",
        "## Identification (val photos against a gallery of the train photos)",
        "",
        "| metric | value |",
        "|---|---|",
        "| top-1 accuracy, closest person at any distance | "
        f"{ident['correct_closed']}/{ident['total']} = {ident['accuracy_closed']:.2%} |",
        f"| accuracy at threshold {ident['threshold']:.3f} (farther = unknown = wrong) | "
        f"{ident['correct_open']}/{ident['total']} = {ident['accuracy_open']:.2%} |",
        "",
        "Confusion (rows: true person, columns: predicted):",
        "",
        "| true \\ predicted | " + " | ".join(predicted_names) + " |",
        "|---|" + "---|" * len(predicted_names),
    ]
    for person in people:
        row = confusion.get(person, Counter())
        lines.append(f"| {person} | " + " | ".join(str(row[p]) for p in predicted_names) + " |")
    lines += [
        "",
        "## Verification (every val face against every train face)",
        "",
        "| metric | value |",
        "|---|---|",
        f"| pairs | {ver['pairs_same']} same person, {ver['pairs_different']} different |",
        f"| ROC AUC | {ver['auc']:.4f} |",
        f"| equal error rate | {ver['eer']:.2%} at distance {ver['eer_threshold']:.3f} |",
        f"| accuracy-maximizing threshold | {ver['best_threshold']:.3f} "
        f"(pair accuracy {ver['best_accuracy']:.2%}) |",
        "",
        "![ROC curve](evaluate_roc.png)",
        "",
        "![Distance histogram](evaluate_distances.png)",
        "",
    ]
    if summary["problems"]:
        lines += ["## Photos not used", ""]
        lines += [f"- {message}" for message in summary["problems"]]
        lines.append("")
    return "\n".join(lines)


@app.command()
def evaluate(
    dataset: Annotated[Path, typer.Argument(
        exists=True, file_okay=False,
        help="Folder with train/<person>/ and val/<person>/ photos.", show_default=False)],
    store_threshold: Annotated[bool, typer.Option(
        "--store-threshold",
        help="Save the accuracy-maximizing threshold into the gallery for recognize.")] = False,
    gallery: GalleryOption = None,
    match: MatchOption = MatchChoice.nearest,
    min_enroll_face: MinEnrollFaceOption = None,
    min_face: MinFaceOption = None,
    max_detect_side: MaxDetectSideOption = None,
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS_PATH,
) -> int:
    """Enroll train/ into a temporary gallery, recognize val/, and report accuracy, ROC AUC, EER.

    Writes <artifacts>/reports/evaluate.{md,json} and the ROC and distance-histogram PNGs.
    """
    import numpy as np
    from rich.table import Table
    from rich.text import Text

    from toolchain.core.atomic import write_json, write_text
    from toolchain.core.integrity import record_files
    from toolchain.core.preprocess import largest_face
    from toolchain.runtime.drawing import distance_histogram, roc_chart
    from toolchain.runtime.evaluation import NO_FACE, identification, verification
    from toolchain.runtime.gallery import Gallery, pairwise_distances

    layout = layout_for(artifacts)
    train = _dataset_split(dataset / "train")
    val = _dataset_split(dataset / "val")
    problems: list[str] = []
    unreadable = 0
    with (
        tempfile.TemporaryDirectory(prefix="facenet-evaluate-") as tmp,
        _recognizer(artifacts, Path(tmp) / "train.db", match=match.value, top_k=1,
                    **_detection(min_face, max_detect_side)) as rec,
    ):
        with progress_bar("enrolling train/", len(train)) as advance:
            outcomes = rec.enroll_many(train, largest=True, progress=advance,
                                       **_min_face(min_enroll_face))
        for outcome in outcomes:
            if not outcome.ok:
                problems.append(f"train: {outcome.message}")
                unreadable += outcome.status == "error"
        entries = rec.gallery().entries()
        truth: list[str] = []
        predicted: list[str | None] = []
        distances: list[float | None] = []
        val_vectors: list[np.ndarray] = []
        val_people: list[str] = []
        records: list[dict[str, Any]] = []
        with progress_bar("recognizing val/", len(val)) as advance:
            photos = rec.analyze([path for _, path in val], progress=advance)
            for (person, _), photo in zip(val, photos, strict=True):
                truth.append(person)
                if photo.error is not None or not photo.faces:
                    message = photo.error or f"{photo.path}: no face found"
                    problems.append(f"val: {message}")
                    unreadable += photo.error is not None
                    predicted.append(None)
                    distances.append(None)
                    records.append({"file": str(photo.path), "true": person,
                                    "predicted": None, "distance": None, "error": message})
                    continue
                face = photo.faces[largest_face([f.box for f in photo.faces])]
                best = rec.gallery().match(face.embedding[None], k=1, mode=rec.match_mode)[0]
                name = best[0].name if best else None
                distance = best[0].distance if best else None
                predicted.append(name)
                distances.append(distance)
                val_vectors.append(face.embedding)
                val_people.append(person)
                records.append({"file": str(photo.path), "true": person, "predicted": name,
                                "distance": distance, "error": None})
        embedder = rec.embedder
    for message in problems:
        problem(message)
    if not entries or not val_vectors:
        raise InputError(f"{dataset}: no usable faces in train/ or val/")
    train_people = np.array([e.name for e in entries])
    pair_d = pairwise_distances(np.stack(val_vectors), np.stack([e.vector for e in entries]))
    pair_same = np.array(val_people)[:, None] == train_people[None, :]
    try:
        ver = verification(pair_d.ravel(), pair_same.ravel())
    except ValueError as exc:
        raise InputError(f"{dataset}: cannot compute ROC ({exc})") from exc
    ident = identification(truth, predicted, distances, ver.best_threshold)

    people = sorted({p for p, _ in train} | {p for p, _ in val})
    predicted_names = [*people, *sorted({p for p in predicted if p and p not in people})]
    if any(p is None for p in predicted):
        predicted_names.append(NO_FACE)
    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    summary: dict[str, Any] = {
        "dataset": str(dataset), "created": created, "model": str(embedder.path),
        "model_fingerprint": embedder.fingerprint, "match": match.value,
        "train_photos": len(train), "enrolled": len(entries), "val_photos": len(val),
        "people": people,
        "identification": {
            "total": ident.total, "correct_closed": ident.correct_closed,
            "accuracy_closed": ident.accuracy_closed, "correct_open": ident.correct_open,
            "accuracy_open": ident.accuracy_open, "threshold": ident.threshold,
            "confusion": {t: dict(c) for t, c in ident.confusion.items()},
        },
        "verification": {
            "pairs_same": ver.pairs_same, "pairs_different": ver.pairs_different,
            "auc": ver.auc, "eer": ver.eer, "eer_threshold": ver.eer_threshold,
            "best_threshold": ver.best_threshold, "best_accuracy": ver.best_accuracy,
            "roc": {"fpr": ver.fpr.tolist(), "tpr": ver.tpr.tolist(),
                    "thresholds": ver.thresholds.tolist()},
        },
        "val": records,
        "problems": problems,
    }
    reports = layout.reports_dir
    write_json(reports / "evaluate.json", summary)
    write_text(reports / "evaluate.md",
               _evaluate_markdown(summary, people, predicted_names, ident.confusion))
    roc_chart(ver.fpr, ver.tpr, ver.auc, ver.eer, reports / "evaluate_roc.png")
    distance_histogram(pair_d[pair_same], pair_d[~pair_same], ver.best_threshold,
                       reports / "evaluate_distances.png")
    record_files(layout, [reports / name for name in (
        "evaluate.json", "evaluate.md", "evaluate_roc.png", "evaluate_distances.png")])

    confusion_table = Table(title="Identification: true (rows) vs predicted (columns)")
    confusion_table.add_column("true \\ predicted")
    for name in predicted_names:
        confusion_table.add_column(display_text(name), justify="right")
    for person in people:
        row = ident.confusion.get(person, Counter())
        confusion_table.add_row(display_text(person), *(
            Text(str(row[n]), style="bold") if n == person else (str(row[n]) if row[n] else ".")
            for n in predicted_names))
    metrics = Table(title=f"Evaluation of {display_text(dataset)}")
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    metrics.add_row("top-1 accuracy (closest person, any distance)",
                    f"{ident.correct_closed}/{ident.total} = {ident.accuracy_closed:.2%}")
    metrics.add_row(f"accuracy at threshold {ver.best_threshold:.3f}",
                    f"{ident.correct_open}/{ident.total} = {ident.accuracy_open:.2%}")
    metrics.add_row("verification pairs (same / different)",
                    f"{ver.pairs_same} / {ver.pairs_different}")
    metrics.add_row("ROC AUC", f"{ver.auc:.4f}")
    metrics.add_row("equal error rate", f"{ver.eer:.2%} at {ver.eer_threshold:.3f}")
    metrics.add_row("accuracy-maximizing threshold",
                    f"{ver.best_threshold:.3f} ({ver.best_accuracy:.2%} of pairs)")
    out = console()
    out.print(confusion_table)
    out.print(metrics)
    print(f"reports: {display_text(reports / 'evaluate.md')}, evaluate.json, evaluate_roc.png, "
          "evaluate_distances.png")
    if store_threshold:
        target = gallery if gallery is not None else layout.gallery
        with Gallery.open(target, fingerprint=embedder.fingerprint, dim=embedder.dim,
                          create=True) as stored:
            stored.set_threshold(ver.best_threshold,
                                 f"facenet evaluate {dataset} at {created}, accuracy-maximizing "
                                 f"over {ver.pairs_same + ver.pairs_different} pairs")
        print(f"stored threshold {ver.best_threshold:.3f} in {display_text(target)}")
    return 1 if unreadable else 0
