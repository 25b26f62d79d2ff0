"""The bench's scheduler: runs each measurement in its own worker process and collects rows.

:class:`Scheduler` is what every measurement of ``facenet bench runtimes``
(:mod:`toolchain.bench.runner`, :mod:`~toolchain.bench.real_size`, :mod:`~toolchain.bench.video`) is
handed: the artifacts, the configuration, a scratch folder and the list of rows measured so far.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import numpy as np

from toolchain.bench.config import BenchConfig
from toolchain.bench.inputs import (
    bench_formats,
    bench_label,
    spread,
)
from toolchain.bench.processes import ProcessRun, bytecode_state, run_process, run_worker
from toolchain.bench.rows import (
    COLD_OURS,
    COLD_SEED,
    DETECT_OURS,
    DETECT_PACKAGE,
    E2E_OURS,
    E2E_SEED,
    Row,
    Section,
    embedding_row,
    paired_row,
)
from toolchain.bench.specs import (
    Detector,
    DetectSpec,
    EmbedSpec,
    EnrollSpec,
    OrtOptionsSpec,
    OrtSessionSpec,
    PairedSpec,
    RecognizeSpec,
    SeedColdStartSpec,
    SeedRecognizeSpec,
    SgemmSpec,
    TaskSpec,
)
from toolchain.bench.worker import BATCHES, ORT_SETTINGS
from toolchain.convert.formats import FORMATS
from toolchain.convert.runners import ONNXRUNTIME, OPENVINO
from toolchain.core.paths import Layout

log = logging.getLogger(__name__)


class Scheduler:
    """Runs the bench's worker processes one after another and collects their rows."""

    def __init__(self, layout: Layout, config: BenchConfig, work: Path):
        """Measure the artifacts of ``layout``; temporary files go to ``work``."""
        self.layout, self.config, self.work = layout, config, work
        self.rows: list[Row] = []
        self.art = str(layout.root.resolve())

    def worker(self, spec: TaskSpec, env: dict[str, str] | None = None) -> ProcessRun:
        """Run one task in a fresh worker process."""
        return run_worker(spec, self.work, env)

    def model(self, fmt: str) -> str:
        """Resolved path of format ``fmt``'s model."""
        return str(FORMATS[fmt].path(self.layout.models_dir).resolve())

    def sgemm(self, when: str, coretype: str | None = None) -> None:
        """One sgemm row (``coretype``: the OpenBLAS kernel forced, default its own choice)."""
        env = None if coretype is None else {**os.environ, "OPENBLAS_CORETYPE": coretype}
        run = self.worker(SgemmSpec(self.config.sgemm_n, self.config.repeats), env)
        kernel = "" if coretype is None else f", OPENBLAS_CORETYPE={coretype}"
        self.rows.append(Row(
            Section.SGEMM, f"numpy float32 matmul {self.config.sgemm_n}^3{kernel} ({when})",
            "GFLOP/s", run.result["samples"], peak_rss_mb=run.peak_rss_mb,
        ))

    def embedding(self) -> None:
        """Batch 1 and 16 rows of every benchmarked format."""
        for spec in bench_formats():
            label = bench_label(spec.name)
            run = self.worker(EmbedSpec(
                spec.name, self.model(spec.name), self.art, self.config.repeats,
                self.config.b1_calls, self.config.b16_calls,
            ))
            for batch in BATCHES:
                got = run.result[f"b{batch}"]
                self.rows.append(Row(
                    Section.EMBEDDING, embedding_row(label, batch), "faces/s", got["samples"],
                    peak_rss_mb=run.peak_rss_mb,
                    detail={"load_s": got["load_s"], "first_call_s": got["first_call_s"],
                            "model": spec.files[0]},
                ))

    def paired(self) -> None:
        """The ONNX Runtime and OpenVINO formats in one process, runs alternated (baseline: ONNX
        Runtime fp32)."""
        models = {spec.name: self.model(spec.name) for spec in bench_formats()
                  if spec.runner in (ONNXRUNTIME, OPENVINO)}
        run = self.worker(PairedSpec(models, self.art, self.config.repeats,
                                     self.config.b1_calls, self.config.b16_calls))
        for batch in BATCHES:
            for fmt, samples in run.result[f"b{batch}"].items():
                self.rows.append(Row(Section.PAIRED, paired_row(bench_label(fmt), batch), "faces/s",
                                     samples, baseline=paired_row(bench_label("onnx"), batch),
                                     peak_rss_mb=run.peak_rss_mb))

    def ort_options(self) -> None:
        """Each session setting on the fp32 ONNX model, and session creation in a fresh process."""
        onnx = self.model("onnx")
        run = self.worker(OrtOptionsSpec(onnx, self.art, self.config.repeats,
                                         self.config.b1_calls, self.config.b16_calls))
        for label, got in run.result.items():
            for batch in ("b1", "b16"):
                self.rows.append(Row(
                    Section.ORT_OPTIONS, f"{label} {batch}", "faces/s", got[batch],
                    baseline=f"{next(iter(ORT_SETTINGS))} {batch}",
                    detail={"settings": got["settings"], "create_s": got["create_s"]},
                ))
        for cached in (True, False):
            label = "cached optimized graph" if cached else "optimized at load"
            runs = [self.worker(OrtSessionSpec(onnx, cached))
                    for _ in range(self.config.cold_runs)]
            self.rows.append(Row(
                Section.ORT_OPTIONS, f"fresh process: import + session, {label}", "s",
                [r.wall_s for r in runs], higher_is_better=False,
                baseline="fresh process: import + session, optimized at load",
                peak_rss_mb=max(r.peak_rss_mb for r in runs),
            ))

    def detection(self, photos: list[Path]) -> None:
        """ONNX MTCNN vs the mtcnn package on the same photos."""
        chosen = [str(p) for p in spread(photos, self.config.detect_photos)]
        models_dir = str(self.layout.models_dir.resolve())
        detectors: tuple[tuple[Detector, str], ...] = (("package", DETECT_PACKAGE),
                                                        ("ours", DETECT_OURS))
        for detector, label in detectors:
            run = self.worker(DetectSpec(detector, chosen, models_dir, self.config.repeats))
            self.rows.append(Row(
                Section.DETECTION, label, "ms/image", run.result["samples"],
                higher_is_better=False, baseline=DETECT_PACKAGE, peak_rss_mb=run.peak_rss_mb,
                detail={"photos": len(chosen), "faces": run.result["faces"]},
            ))

    def end_to_end(self, photos: list[Path], gallery: Path, gallery_npz: Path) -> None:
        """The seed-style pipeline vs ``recognize`` over the dataset photos."""
        chosen = [str(p) for p in spread(photos, self.config.e2e_photos)]
        repeats = self.config.e2e_repeats
        for label, spec in (
            (E2E_SEED, SeedRecognizeSpec(chosen, self.model("keras"), str(gallery_npz), repeats)),
            (E2E_OURS, RecognizeSpec(chosen, self.art, str(gallery), repeats)),
        ):
            run = self.worker(spec)
            self.rows.append(Row(
                Section.END_TO_END, label, "images/s", run.result["samples"], baseline=E2E_SEED,
                peak_rss_mb=run.peak_rss_mb,
                detail={"photos": len(chosen), "faces": run.result["faces"],
                        "named": run.result["named"]},
            ))

    def cold_start(self, photo: Path, gallery: Path, gallery_npz: Path) -> None:
        """``facenet recognize one.jpg`` vs the seed-style job, each in fresh processes."""
        python = str(self.config.recognize_python or sys.executable)
        ours_cmd = [python, "-m", "toolchain", "-q", "recognize", str(photo),
                    "--gallery", str(gallery), "--artifacts", self.art]
        seed_spec = SeedColdStartSpec(str(photo), self.model("keras"), str(gallery_npz))
        bytecode = bytecode_state(python)
        ours, seed = [], []
        for _ in range(self.config.cold_runs):
            ours.append(run_process(ours_cmd))
            seed.append(self.worker(seed_spec))
        for label, runs, detail in (
            (COLD_SEED, seed, {"process": "python -m toolchain.bench (SeedColdStartSpec)"}),
            (COLD_OURS, ours, {"command": " ".join(ours_cmd[1:5]), "bytecode": bytecode}),
        ):
            self.rows.append(Row(
                Section.COLD_START, label, "s", [r.wall_s for r in runs],
                higher_is_better=False, baseline=COLD_SEED,
                peak_rss_mb=max(r.peak_rss_mb for r in runs),
                detail={**detail, "photo": photo.name, "python": python},
            ))

    def enroll(self, gallery: Path, items: list[list[str]]) -> None:
        """Enroll ``[person, photo]`` items into a fresh gallery in a worker."""
        self.worker(EnrollSpec(items, self.art, str(gallery)))

    def prepare_galleries(self, photos: list[tuple[str, str, Path]]) -> tuple[Path, Path]:
        """Enroll the train photos into a fresh gallery; write the seed pipeline's npz."""
        from toolchain.convert.parity import load_reference

        per_person: dict[str, list[Path]] = {}
        for split, person, path in photos:
            if split == "train":
                per_person.setdefault(person, []).append(path)
        keep = self.config.enroll_per_person
        gallery = self.work / "bench_gallery.db"
        self.enroll(gallery, [[person, str(p)] for person, paths in per_person.items()
                              for p in (paths if keep is None else paths[:keep])])
        reference = load_reference(self.layout)
        train = [i for i, s in enumerate(reference.splits) if s == "train"]
        npz = self.work / "seed_gallery.npz"
        np.savez(npz, vectors=reference.embeddings[train],
                 names=np.array([reference.persons[i] for i in train]))
        return gallery, npz
