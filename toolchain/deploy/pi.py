"""The Raspberry Pi boards ``nox -s arm64`` emulates, and the speed expected on the real ones.

The emulator's own times say nothing about a board (it translates every instruction), so the
expected speed comes from ONNX Runtime times published for the boards on other convolutional
networks: the GFLOP/s reached there, applied to FaceNet's floating-point operations.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

FACENET_GFLOP = 2.83
"""One 160x160 FaceNet forward pass (2 x 1.417 G multiply-adds; ``toolchain.bench.rows``
``GFLOP_PER_FACE``, which imports numpy, so a test keeps the two equal)."""


@dataclass(frozen=True)
class Board:
    """A Raspberry Pi as the emulator presents it: qemu's CPU model and its ``/proc/cpuinfo``."""

    name: str
    cpu: str
    cores: int
    mhz: int
    part: str
    variant: str
    revision: int
    features: str

    def cpuinfo(self, processors: int) -> str:
        """The board's ``/proc/cpuinfo`` with ``processors`` entries (the host's CPU count:
        the CPU detection matches it against ``/sys/devices/system/cpu``)."""
        entry = ("processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: {features}\n"
                 "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: {variant}\n"
                 "CPU part\t: {part}\nCPU revision\t: {revision}\n")
        entries = [entry.format(n=n, **asdict(self)) for n in range(processors)]
        return "\n".join(entries) + f"\nModel\t\t: {self.name}\n"


PI4 = Board("Raspberry Pi 4 Model B", "cortex-a72", 4, 1800, "0xd08", "0x0", 3,
            "fp asimd evtstrm crc32 cpuid")
PI5 = Board("Raspberry Pi 5 Model B", "cortex-a76", 4, 2400, "0xd0b", "0x4", 1,
            "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm "
            "lrcpc dcpop asimddp")


@dataclass(frozen=True)
class Published:
    """A published ONNX Runtime (CPU, float32) time of one model on one board."""

    board: str
    model: str
    gflop: float
    ms: float
    source: str


ULTRALYTICS_V8 = ("Ultralytics, 'Quick Start Guide: Raspberry Pi with Ultralytics YOLOv8', "
                  "section 'Raspberry Pi 5 vs Raspberry Pi 4 YOLOv8 Benchmarks' (format ONNX, "
                  "FP32, 640x640), https://docs.ultralytics.com/guides/raspberry-pi/ (YOLOv8 "
                  "edition of docs/en/guides/raspberry-pi.md in github.com/ultralytics/"
                  "ultralytics); FLOPs from the YOLOv8 model table "
                  "(https://docs.ultralytics.com/models/yolov8/)")
ULTRALYTICS_11 = ("Ultralytics, 'Quick Start Guide: Raspberry Pi with Ultralytics YOLO11', "
                  "section 'Raspberry Pi 5 YOLO11 Benchmarks' (format ONNX, FP32, 640x640), "
                  "https://docs.ultralytics.com/guides/raspberry-pi/; FLOPs from the YOLO11 "
                  "model table (https://docs.ultralytics.com/models/yolo11/)")
PUBLISHED = (
    Published(PI4.name, "YOLOv8n", 8.7, 560.04, ULTRALYTICS_V8),
    Published(PI4.name, "YOLOv8s", 28.6, 1436.33, ULTRALYTICS_V8),
    Published(PI5.name, "YOLOv8n", 8.7, 198.69, ULTRALYTICS_V8),
    Published(PI5.name, "YOLOv8s", 28.6, 451.37, ULTRALYTICS_V8),
    Published(PI5.name, "YOLO11n", 6.5, 168.082, ULTRALYTICS_11),
    Published(PI5.name, "YOLO11s", 21.5, 324.17, ULTRALYTICS_11),
)
"""Convolutional networks timed with ONNX Runtime on the boards, with their FLOPs (counted as
FaceNet's: two per multiply-add)."""


def estimate() -> list[dict[str, Any]]:
    """Expected FaceNet embedding time per face on each board: the GFLOP/s ONNX Runtime reached
    there on each published network, applied to FaceNet's 2.83 GFLOP (a range: the networks
    differ in how well their layers use the cores)."""
    boards = []
    for board in (PI4, PI5):
        rows = [p for p in PUBLISHED if p.board == board.name]
        rates = [p.gflop / (p.ms / 1000) for p in rows]
        ms = sorted(FACENET_GFLOP / rate * 1000 for rate in rates)
        boards.append({
            "board": board.name, "cpu": f"{board.cores} x {board.cpu} at {board.mhz} MHz",
            "published": [{"model": p.model, "gflop": p.gflop, "ms": p.ms,
                           "gflop_per_s": round(p.gflop / (p.ms / 1000), 1)} for p in rows],
            "facenet_ms_per_face": [round(ms[0]), round(ms[-1])],
            "facenet_faces_per_s": [round(1000 / ms[-1], 1), round(1000 / ms[0], 1)],
            "sources": sorted({p.source for p in rows}),
        })
    return boards
