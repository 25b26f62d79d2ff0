"""Real-size photo rows: ``recognize`` on the shared photos vs the face_recognition CLI, and 24 MP.

The shared photos (:data:`toolchain.bench.config.SHARED_EXAMPLES`, 0.1-3.4 MP, when that folder
exists) are recognized with the default detection and with full-resolution detection, against the
``face_recognition`` CLI's per-photo code (dlib HOG, in its own environment given by
``--face-recognition-python``), galleries enrolled from the same ``people/`` folders; then
``facenet recognize`` on a 24 MP photo (a shared photo upscaled to
:data:`toolchain.bench.rows.LARGE_SIZE`) runs in fresh processes for its wall time and peak RSS.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from toolchain.bench.baselines import FACE_RECOGNITION_SCRIPT
from toolchain.bench.inputs import LARGE_SOURCE, megapixels, spread
from toolchain.bench.processes import run_process
from toolchain.bench.rows import (
    DLIB_REAL,
    FULL_REAL,
    LARGE_ROW,
    LARGE_SIZE,
    OURS_REAL,
    Row,
    Section,
)
from toolchain.bench.specs import RecognizeSpec

if TYPE_CHECKING:
    from toolchain.bench.scheduler import Scheduler


def measure_real_size(scheduler: Scheduler, photos: list[Path],
                      people: list[tuple[str, Path]]) -> None:
    """Append the real-size rows to ``scheduler.rows``."""
    config, work = scheduler.config, scheduler.work
    gallery = work / "people_gallery.db"
    scheduler.enroll(gallery, [[name, str(p)] for name, p in people])
    chosen = [str(p) for p in spread(photos, config.e2e_photos)]
    detail = {"photos": len(chosen), "megapixels": megapixels([Path(p) for p in chosen])}
    baseline = DLIB_REAL if config.face_recognition_python else None
    for label, full_resolution in ((OURS_REAL, False), (FULL_REAL, True)):
        run = scheduler.worker(RecognizeSpec(chosen, scheduler.art, str(gallery),
                                             config.e2e_repeats, full_resolution))
        scheduler.rows.append(Row(
            Section.REAL_SIZE, label, "images/s", run.result["samples"], baseline=baseline,
            peak_rss_mb=run.peak_rss_mb,
            detail={**detail, "faces": run.result["faces"], "named": run.result["named"]},
        ))
    if config.face_recognition_python is not None:
        spec_path = work / "face_recognition.spec.json"
        result_path = work / "face_recognition.result.json"
        spec_path.write_text(json.dumps({
            "photos": chosen, "people": [[name, str(p)] for name, p in people],
            "repeats": config.e2e_repeats}), encoding="utf-8")
        run = run_process([str(config.face_recognition_python), "-c", FACE_RECOGNITION_SCRIPT,
                           str(spec_path), str(result_path)])
        got = json.loads(result_path.read_text(encoding="utf-8"))
        scheduler.rows.append(Row(
            Section.REAL_SIZE, DLIB_REAL, "images/s", got["samples"], baseline=baseline,
            peak_rss_mb=run.peak_rss_mb,
            detail={**detail, "known": got["known"], "printed": got["lines"],
                    "no_face": got["no_face"], "python": str(config.face_recognition_python)},
        ))
    source = next((p for p in photos if p.name == LARGE_SOURCE), photos[0])
    large = work / f"large_{LARGE_SIZE[0]}x{LARGE_SIZE[1]}.jpg"
    from PIL import Image

    with Image.open(source) as image:
        image.convert("RGB").resize(LARGE_SIZE, Image.Resampling.BICUBIC).save(large, quality=92)
    python = str(config.recognize_python or sys.executable)
    cmd = [python, "-m", "toolchain", "-q", "recognize", str(large), "--gallery", str(gallery),
           "--artifacts", scheduler.art]
    runs = [run_process(cmd) for _ in range(config.cold_runs)]
    scheduler.rows.append(Row(
        Section.REAL_SIZE, LARGE_ROW, "s", [r.wall_s for r in runs], higher_is_better=False,
        peak_rss_mb=max(r.peak_rss_mb for r in runs),
        detail={"source": source.name, "megapixels": LARGE_SIZE[0] * LARGE_SIZE[1] / 1e6,
                "python": python},
    ))
