"""ONNX Runtime session settings and the cached optimized graph (next to the model, else in the
user's cache folder)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.allowances import read_only_mount

from toolchain.core.atomic import sha256_file
from toolchain.runtime.ort_options import (
    DEFAULT_SETTINGS,
    OrtSettings,
    core_count,
    create_session,
    model_sha256,
    optimized_path,
    session_options,
)


def _write_model(path: Path, scale: float) -> None:
    """A tiny Conv + Relu model (enough for the optimizer to fuse something; its weight is big
    enough to go to the cache's weights file)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.full((16, 3, 3, 3), scale, np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 16, 8, 8])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _run(session: object, value: float = 1.0) -> np.ndarray:
    x = np.full((1, 3, 8, 8), value, np.float32)
    return np.asarray(session.run(None, {"x": x})[0])  # type: ignore[attr-defined]


def test_settings_resolve_threads_and_levels() -> None:
    import onnxruntime as ort

    opts = session_options(OrtSettings(graph_optimization="extended", execution_mode="parallel",
                                       inter_op_threads=2))
    assert opts.intra_op_num_threads == core_count()
    assert opts.inter_op_num_threads == 2
    assert opts.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    assert DEFAULT_SETTINGS.describe()["intra_op_threads"] == core_count()
    with pytest.raises(ValueError):
        OrtSettings(graph_optimization="max")


def test_cache_is_created_reused_and_rebuilt_when_the_model_changes(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    _write_model(model, 1.0)
    first = _run(create_session(model))
    cached = optimized_path(model)
    sidecar = json.loads((tmp_path / "m.onnx.optimized.json").read_text())
    assert cached.is_file() and sidecar["optimized_size"] == cached.stat().st_size
    assert sidecar["optimized_sha256"] == sha256_file(cached)
    weights = tmp_path / "m.onnx.optimized.data"
    assert weights.stat().st_size >= 16 * 27 * 4, "the weights are kept out of the graph"
    assert sidecar["data_size"] == weights.stat().st_size
    assert sidecar["data_sha256"] == sha256_file(weights)
    assert b"m.onnx.optimized.data" in cached.read_bytes(), "the graph names its weights file"
    mtime = cached.stat().st_mtime_ns

    np.testing.assert_allclose(_run(create_session(model)), first)
    assert cached.stat().st_mtime_ns == mtime, "a matching cache must be reused, not rewritten"

    _write_model(model, 2.0)  # new content: the cache is stale
    np.testing.assert_allclose(_run(create_session(model)), 2 * first)
    assert json.loads((tmp_path / "m.onnx.optimized.json").read_text())["source_sha256"] != (
        sidecar["source_sha256"]
    )


def test_touched_model_with_the_same_content_keeps_the_cache(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    _write_model(model, 1.0)
    create_session(model)
    cached = optimized_path(model)
    mtime = cached.stat().st_mtime_ns
    stat = model.stat()
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    _run(create_session(model))
    assert cached.stat().st_mtime_ns == mtime, "same sha256: the cache must be reused"
    record = json.loads((tmp_path / "m.onnx.optimized.json").read_text())
    assert record["source_mtime_ns"] == model.stat().st_mtime_ns, "next time: no re-hash"


@pytest.mark.parametrize("part, key", [("", "optimized_sha256"), (".data", "data_sha256")])
def test_corrupt_cache_is_rebuilt(tmp_path: Path, part: str, key: str) -> None:
    """A flipped byte in the cached graph or in its weights: rebuilt, never run."""
    model = tmp_path / "m.onnx"
    _write_model(model, 1.0)
    expected = _run(create_session(model))
    cached = optimized_path(model).with_name(f"m.onnx.optimized{part}")
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0x55  # same size and sidecar, one byte flipped
    cached.write_bytes(bytes(data))
    np.testing.assert_allclose(_run(create_session(model)), expected)
    assert sha256_file(cached) == json.loads(
        (tmp_path / "m.onnx.optimized.json").read_text())[key]


def test_a_cache_of_the_single_file_layout_is_replaced(tmp_path: Path) -> None:
    """A cache written before the weights had a file of their own (no ``weights`` key in its
    sidecar) is rebuilt in the new layout."""
    model = tmp_path / "m.onnx"
    _write_model(model, 1.0)
    expected = _run(create_session(model))
    sidecar = tmp_path / "m.onnx.optimized.json"
    record = json.loads(sidecar.read_text())
    del record["weights"]
    sidecar.write_text(json.dumps(record))
    np.testing.assert_allclose(_run(create_session(model)), expected)
    assert json.loads(sidecar.read_text())["weights"] == "external"


READ_ONLY_SESSION = """
import sys
import numpy as np
from toolchain.runtime.ort_options import create_session
session = create_session(sys.argv[1])
print(session.run(None, {"x": np.ones((1, 3, 8, 8), np.float32)})[0].sum())
"""


@read_only_mount
def test_read_only_directory_caches_in_the_user_cache_or_runs_without(tmp_path: Path) -> None:
    from helpers.real import run_read_only

    folder = tmp_path / "models"
    folder.mkdir()
    model = folder / "m.onnx"
    _write_model(model, 1.0)
    expected = _run(create_session(model, OrtSettings(cache_optimized=False))).sum()
    cache = tmp_path / "cache"
    name = f"{sha256_file(model)}.onnx.optimized"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    mtimes: list[int] = []
    for cache_dir, cached in ((cache, True), (cache, True), (folder / "cache", False)):
        done = run_read_only(folder, [sys.executable, "-c", READ_ONLY_SESSION, str(model)],
                             env={**env, "FACENET_CACHE_DIR": str(cache_dir)}, timeout=300)
        assert done.returncode == 0, done.stderr
        assert float(done.stdout) == pytest.approx(float(expected))
        assert sorted(p.name for p in folder.iterdir()) == ["m.onnx"]
        assert ("running without it" in done.stderr) != cached, done.stderr
        if cached:
            kept = sorted(p.name for p in cache.iterdir() if p.name != "digests")  # see digests
            assert kept == [name, f"{name}.data", f"{name}.json"]
            mtimes.append((cache / name).stat().st_mtime_ns)
    assert mtimes[0] == mtimes[1], "the user cache was rebuilt, not reused"


def test_a_given_digest_spares_reading_the_source(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import toolchain.core.integrity.digests as digests
    import toolchain.runtime.ort_options as ort_options

    model = tmp_path / "m.onnx"
    _write_model(model, 1.0)
    digest = sha256_file(model)
    read: list[str] = []

    def counting(path: Path, *args: object) -> str:
        read.append(Path(path).name)
        return sha256_file(path)

    monkeypatch.setattr(ort_options, "sha256_file", counting)
    monkeypatch.setattr(digests, "sha256_file", counting)
    first = _run(create_session(model, sha256=digest))
    again = _run(create_session(model, sha256=digest))
    np.testing.assert_allclose(again, first)
    written = ["m.onnx.optimized", "m.onnx.optimized.data"]
    assert read == written * 2  # written, then checked: never m.onnx
    assert json.loads((tmp_path / "m.onnx.optimized.json").read_text())["source_sha256"] == digest


def test_no_cache_settings_write_nothing(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    _write_model(model, 1.0)
    _run(create_session(model, OrtSettings(cache_optimized=False)))
    _run(create_session(model, OrtSettings(graph_optimization="disabled")))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_model_sha256_uses_the_sidecar_only_while_the_file_is_unchanged(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    _write_model(model, 1.0)
    create_session(model)
    sidecar = tmp_path / "m.onnx.optimized.json"
    record = json.loads(sidecar.read_text())
    assert model_sha256(model) == sha256_file(model) == record["source_sha256"]
    record["source_sha256"] = "recorded"
    sidecar.write_text(json.dumps(record))
    assert model_sha256(model) == "recorded"
    _write_model(model, 2.0)
    os.utime(model, ns=(0, 0))
    assert model_sha256(model) == sha256_file(model)
