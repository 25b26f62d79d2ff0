"""aarch64 (Raspberry Pi OS 64-bit) proven under emulation: ``toolchain.deploy.arm64``, what
``nox -s arm64`` runs, and the pieces it is made of.

The real run unpacks an arm64 Debian (debootstrap, root), runs the face pipeline in its Python
under qemu-user as a Raspberry Pi 4's CPU next to the runtime environment on x86, and compares.
It takes minutes (qemu translates every instruction) and reuses the root file system and wheels
``nox -s arm64`` left in the checkout's ``.nox/deploy``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from helpers.real import artifacts_root, shared_data
from helpers.service_server import ROOT, models_artifacts

from toolchain.bench.rows import GFLOP_PER_FACE
from toolchain.core import contracts
from toolchain.deploy import arm64, pi
from toolchain.deploy.host import DeployError

CACHE = ROOT / ".nox" / "deploy"


def test_the_flop_count_is_the_bench_one() -> None:
    assert pi.FACENET_GFLOP == GFLOP_PER_FACE


def test_the_pi_estimate_applies_each_published_rate_to_facenet() -> None:
    boards = {b["board"]: b for b in pi.estimate()}
    pi4, pi5 = boards[pi.PI4.name], boards[pi.PI5.name]
    for board in (pi4, pi5):
        rates = [row["gflop"] / row["ms"] * 1000 for row in board["published"]]
        low, high = board["facenet_ms_per_face"]
        assert low == round(GFLOP_PER_FACE / max(rates) * 1000)
        assert high == round(GFLOP_PER_FACE / min(rates) * 1000)
        assert board["sources"] and all("https://" in s for s in board["sources"])
    assert pi5["facenet_ms_per_face"][1] < pi4["facenet_ms_per_face"][0]


def test_the_emulated_cpuinfo_names_the_board_core() -> None:
    text = pi.PI4.cpuinfo(3)
    assert text.count("processor\t:") == 3 and text.count("CPU part\t: 0xd08") == 3
    assert "asimddp" in pi.PI5.cpuinfo(1) and "asimddp" not in text
    assert "Raspberry Pi 4" in text


@pytest.mark.real
def test_one_reference_crop_per_person_and_split() -> None:
    reference = artifacts_root() / "reference"
    if not (reference / "index.json").is_file():
        pytest.skip(f"{reference} missing: run `nox -s recover` first")
    rows = arm64.probe_rows(reference)
    assert rows[0] == 0 and len(rows) == len(set(rows)) == 10


def test_embedding_differences_and_tolerances() -> None:
    a = [[1.0, 0.0], [0.6, 0.8]]
    b = [[1.0, 0.0], [0.8, 0.6]]
    diff = arm64.difference(a, b)
    assert math.isclose(diff["max_abs"], 0.2) and math.isclose(diff["min_cos"], 0.96)
    assert arm64.within(diff, {"max_abs": None, "min_cos": 0.95})
    assert not arm64.within(diff, {"max_abs": 1e-5, "min_cos": 0.95})


def test_recognitions_are_compared_by_photo_and_face() -> None:
    """Faces as ``recognize --json`` writes them (``Match.to_dict``: a box of x, y, width and
    height; an unknown face's name is null, its label ``unknown``), matched left to right."""
    from toolchain.core.boxes import box_dict

    def run(name: str | None, distance: float, x: float = 10.0) -> dict[str, object]:
        faces = [{"name": name, "label": name or "unknown", "distance": distance,
                  "box": box_dict((x, 20.0, 30.0, 40.0))},
                 {"name": None, "label": "unknown", "distance": 1.3,
                  "box": box_dict((5.0, 20.0, 30.0, 40.0))}]
        return {"results": [{"file": "/x/a.jpg", "faces": faces},
                            {"file": "/x/b.jpg", "faces": None}]}

    same = arm64.compare_recognitions(run("obama", 0.5), run("obama", 0.5000002))
    assert same["photos_named_differently"] == [] and same["faces"] == 2
    assert same["names"] == {"a.jpg": ["unknown", "obama"], "b.jpg": []}
    assert same["max_distance_diff"] < 1e-6 and same["max_box_diff_px"] == 0
    moved = arm64.compare_recognitions(run("obama", 0.5), run("obama", 0.5, x=12.5))
    assert moved["max_box_diff_px"] == 2.5
    other = arm64.compare_recognitions(run("obama", 0.5), run(None, 0.5))
    assert other["photos_named_differently"] == ["a.jpg"]


@pytest.mark.slow
@pytest.mark.timeout(4 * 3600)
def test_the_pipeline_runs_on_emulated_arm64_as_on_x86(tmp_path: Path,
                                                       runtime_python: Path) -> None:
    """The quick scope (two people, two photos, two crops) through the whole target."""
    artifacts, shared = models_artifacts(), shared_data()
    if os.geteuid() != 0:
        pytest.skip("the arm64 root needs root (debootstrap, a private /proc/cpuinfo): "
                    "run `nox -s arm64` as root")
    try:
        report = arm64.main(ROOT, artifacts, shared, CACHE, tmp_path, runtime_python,
                            scope=arm64.QUICK, reuse=False)
    except DeployError as exc:
        pytest.fail(str(exc))
    assert (tmp_path / arm64.REPORT).is_file()
    assert report["runs_on_aarch64"] and report["problems"] == []
    recognized = report["recognize"]
    assert recognized["photos_named_differently"] == []
    assert recognized["names"]["obama1.jpg"] == ["obama"]
    assert {"obama", "biden"} <= set(recognized["names"]["obama_and_biden.jpg"])
    fp32 = report["embeddings"][f"{pi.PI4.cpu} {contracts.ONNX_FILE}"]
    assert fp32["vs_x86"]["max_abs"] <= 1e-5
    assert all(result["ok"] for result in report["embeddings"].values())
    assert report["crops"]["rows"] == arm64.probe_rows(artifacts / "reference")[:2]
    assert report["onnxruntime"]["aarch64"] == report["onnxruntime"]["x86_64"]
    assert "EMULATION" in report["seconds_note"]
    assert report["emulation_reused"] == {pi.PI4.cpu: False, pi.PI5.cpu: False}
