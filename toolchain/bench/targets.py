"""Ratios against each row's baseline, and the issue's targets computed from them."""

from __future__ import annotations

from toolchain.bench.rows import (
    COLD_OURS,
    DETECT_OURS,
    DETECT_PACKAGE,
    DLIB_REAL,
    E2E_OURS,
    E2E_SEED,
    GFLOP_PER_FACE,
    LARGE_ROW,
    OURS_REAL,
    UPSCALED_SIZE,
    VIDEO_CLIP_RATE,
    Row,
    Section,
    Target,
    embedding_row,
    find_row,
    paired_row,
    sgemm_rate,
    video_row,
)

EMBED_BASELINE = "savedmodel"
"""Bench label of the runtime every embedding row is compared with (same batch)."""

COLD_START_GOAL_S = 0.5
"""Target wall time of ``facenet recognize one.jpg`` in a fresh process of the runtime
environment, from process start to exit (issue 25, goal 4): the median of the cold-start rows'
fresh processes, the command a user types (table output), with the real models and a gallery."""


def add_ratios(rows: list[Row]) -> None:
    """Fill ``ratio`` (speed vs the row's baseline), ``gflops`` and ``sgemm_fraction``."""
    rate = sgemm_rate(rows)
    for row in rows:
        if row.section == Section.EMBEDDING:
            batch = row.name.rsplit(" ", 1)[1]
            row.baseline = f"{EMBED_BASELINE} {batch}"
            row.gflops = row.median * GFLOP_PER_FACE
            if rate:
                row.sgemm_fraction = row.gflops / rate
        if row.baseline is None:
            continue
        base = find_row(rows, row.section, row.baseline)
        if base is not None and base.median:
            row.ratio = (row.median / base.median if row.higher_is_better
                         else base.median / row.median)


def _ratio_target(name: str, a: Row | None, b: Row | None, goal: float) -> Target:
    """``a`` against ``b`` (speed, whichever direction is faster), goal ``>= goal`` x."""
    if a is None or b is None:
        return Target(name, None, f">= {goal}x", False, "not measured")
    value = a.median / b.median if a.higher_is_better else b.median / a.median
    return Target(name, value, f">= {goal}x", value >= goal,
                  f"{a.name} {a.median:.3g} {a.unit} vs {b.name} {b.median:.3g} {b.unit}")


def _upscaled_video_target(rows: list[Row]) -> Target:
    """The clip at 1080p, one frame in three, faster than real time with the tracks and names
    it has at its own size."""
    name = (f"video at {UPSCALED_SIZE[0]}x{UPSCALED_SIZE[1]}: recognize --every 3 vs real time, "
            "same tracks")
    big = find_row(rows, Section.VIDEO, video_row(3, UPSCALED_SIZE))
    target = _ratio_target(name, big, find_row(rows, Section.VIDEO, VIDEO_CLIP_RATE), 1.0)
    if big is not None and target.value is not None:
        same = bool(big.detail.get("same_tracks_as_clip"))
        target.met = target.met and same
        target.detail += ("; tracks (name, first and last frame) "
                          + ("as at the clip's own size" if same else
                             "DIFFER from the clip's own size"))
    return target


def evaluate_targets(rows: list[Row]) -> list[Target]:
    """The issue's targets, each a ratio or value measured in this run."""
    targets: list[Target] = []
    fp32 = find_row(rows, Section.EMBEDDING, embedding_row("ort-fp32", 16))
    if fp32 is not None and fp32.sgemm_fraction is not None:
        targets.append(Target(
            "ORT fp32 batch 16 vs the sgemm rate", fp32.sgemm_fraction, ">= 0.9",
            fp32.sgemm_fraction >= 0.9,
            f"{fp32.gflops:.1f} GFLOP/s achieved ({GFLOP_PER_FACE} GFLOP/face)",
        ))
    int8 = _ratio_target("ORT int8 vs ORT fp32, batch 16",
                         find_row(rows, Section.EMBEDDING, embedding_row("ort-int8", 16)), fp32,
                         1.5)
    alternated = find_row(rows, Section.PAIRED, paired_row("ort-int8", 16))
    if alternated is not None and alternated.ratio is not None and int8.value:
        int8.detail += f"; alternated in one process: x{alternated.ratio:.2f}"
    targets.append(int8)
    targets.append(_ratio_target(
        "ORT fp32 vs TF SavedModel, batch 1",
        find_row(rows, Section.EMBEDDING, embedding_row("ort-fp32", 1)),
        find_row(rows, Section.EMBEDDING, embedding_row(EMBED_BASELINE, 1)), 2.0))
    targets.append(_ratio_target(
        "detection: onnx mtcnn vs mtcnn package", find_row(rows, Section.DETECTION, DETECT_OURS),
        find_row(rows, Section.DETECTION, DETECT_PACKAGE), 4.0))
    targets.append(_ratio_target(
        "end to end: recognize vs seed-style", find_row(rows, Section.END_TO_END, E2E_OURS),
        find_row(rows, Section.END_TO_END, E2E_SEED), 4.0))
    ours_real = find_row(rows, Section.REAL_SIZE, OURS_REAL)
    targets.append(Target(
        "real-size photos: recognize images/s", ours_real.median if ours_real else None,
        ">= 10", ours_real is not None and ours_real.median >= 10,
        "not measured" if ours_real is None else
        f"{ours_real.detail.get('photos')} shared photos, "
        f"{ours_real.detail.get('megapixels', {}).get('median')} MP median",
    ))
    targets.append(_ratio_target(
        "real-size photos: recognize vs face_recognition CLI", ours_real,
        find_row(rows, Section.REAL_SIZE, DLIB_REAL), 8.0))
    large = find_row(rows, Section.REAL_SIZE, LARGE_ROW)
    targets.append(Target(
        "peak RSS of `facenet recognize` on a 24 MP photo (MB)",
        large.peak_rss_mb if large else None, "<= 1024",
        large is not None and large.peak_rss_mb is not None and large.peak_rss_mb <= 1024,
        "not measured" if large is None else f"{large.median:.2f} s wall, fresh process",
    ))
    targets.append(_ratio_target(
        "video: recognize --every 3 with tracking vs real time",
        find_row(rows, Section.VIDEO, video_row(3)),
        find_row(rows, Section.VIDEO, VIDEO_CLIP_RATE), 1.0))
    targets.append(_upscaled_video_target(rows))
    cold = find_row(rows, Section.COLD_START, COLD_OURS)
    if cold is not None:
        targets.append(Target("cold start of `facenet recognize one.jpg`", cold.median,
                              f"<= {COLD_START_GOAL_S} s", cold.median <= COLD_START_GOAL_S,
                              f"median of {len(cold.samples)} fresh processes"
                              + (f"; bytecode {cold.detail['bytecode']}"
                                 if cold.detail.get("bytecode") else "")))
    return targets
