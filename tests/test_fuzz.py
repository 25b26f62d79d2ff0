"""Property tests: the photo decoder and the legacy-h5 inspector on hostile bytes.

Whatever the input (random bytes, real headers with flipped bytes, truncations, mutated Keras
configs), the only outcomes allowed are a clean result or a typed :class:`ToolchainError`, within a
bounded time: a per-example hard timeout (``SIGALRM``) catches hangs. Hypothesis' own deadline is
off: it turns a slow moment of a shared machine into a "flaky" failure, and speed is the
benchmarks' business.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import io
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from helpers.legacy_h5 import (
    TINY_LAYERS,
    TINY_PARAMETERS,
    TINY_TENSORS,
    TINY_WEIGHTED,
    tiny_config,
    write_legacy_h5,
)
from helpers.real import artifacts_root
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from toolchain.core.errors import ToolchainError
from toolchain.legacy.h5file import read_legacy
from toolchain.legacy.inspect import inspect_file
from toolchain.runtime.images import decode_bytes

HARD_TIMEOUT_S = 10
"""No single example may take longer than this (a hang fails the test instead of blocking CI)."""

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
"""Bounded and reproducible: the same examples on every run, about 5-15 s per test here."""


@contextlib.contextmanager
def hard_timeout(seconds: int = HARD_TIMEOUT_S) -> Iterator[None]:
    """Raise ``TimeoutError`` in the main thread if the block runs longer than ``seconds``."""

    def expire(_signum: int, _frame: Any) -> None:
        raise TimeoutError(f"example ran longer than {seconds} s (hang)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _synthetic_seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    rgb = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    frames = [rgb, rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    exif = Image.Exif()
    exif[0x0112] = 6
    return {
        "png": _encode(rgb, "PNG"),
        "png16": _encode(Image.fromarray(rng.integers(0, 65535, (16, 16), dtype=np.uint16)),
                         "PNG"),
        "jpeg_exif": _encode(rgb, "JPEG", exif=exif.tobytes()),
        "cmyk_jpeg": _encode(rgb.convert("CMYK"), "JPEG"),
        "gif": gif.getvalue(),
        "bmp": _encode(rgb, "BMP"),
        "tiff": _encode(rgb, "TIFF"),
        "webp": _encode(rgb, "WEBP"),
    }


@pytest.fixture(scope="module")
def image_seeds() -> dict[str, bytes]:
    """Small valid images of many formats, plus the head of a real dataset JPEG if fetched."""
    seeds = _synthetic_seeds()
    dataset = artifacts_root() / "source" / "5-celebrity-faces-dataset"
    real = sorted(dataset.glob("train/*/*.jpg"))
    if real:
        seeds["real_jpeg"] = min(real, key=lambda p: p.stat().st_size).read_bytes()
    return seeds


def _check_decoded(data: bytes) -> None:
    with hard_timeout():
        try:
            pixels = decode_bytes(data, Path("fuzz.jpg"))
        except ToolchainError as exc:
            assert "fuzz.jpg" in str(exc) and "\n" not in str(exc)
            return
    assert isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8
    assert pixels.ndim == 3 and pixels.shape[2] == 3 and min(pixels.shape[:2]) >= 1


def _mutate(data: st.DataObject, seed: bytes) -> bytes:
    """Flip/overwrite up to 12 bytes, then maybe truncate or append junk."""
    out = bytearray(seed)
    edits = data.draw(st.lists(st.tuples(st.integers(0, len(out) - 1), st.integers(0, 255)),
                               min_size=1, max_size=12))
    for position, value in edits:
        out[position] = value
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(out))))
    if cut is not None:
        del out[cut:]
    return bytes(out) + data.draw(st.binary(max_size=16))


def test_unmutated_seeds_decode(image_seeds: dict[str, bytes]) -> None:
    """The positive side of the decoder fuzzing: every seed decodes to its upright RGB pixels."""
    for name, data in image_seeds.items():
        pixels = decode_bytes(data, Path(f"seed.{name}"))
        expected = (32, 24) if name == "jpeg_exif" else (16, 16) if name == "png16" else None
        if name != "real_jpeg":
            assert pixels.shape[:2] == (expected or (24, 32)), name
        assert pixels.dtype == np.uint8 and pixels.shape[2] == 3, name


@FUZZ
@given(blob=st.binary(max_size=4096))
def test_decoder_on_random_bytes(blob: bytes) -> None:
    _check_decoded(blob)


@FUZZ
@given(data=st.data())
def test_decoder_on_mutated_real_headers(image_seeds: dict[str, bytes], data: st.DataObject
                                         ) -> None:
    name = data.draw(st.sampled_from(sorted(image_seeds)))
    _check_decoded(_mutate(data, image_seeds[name]))


@FUZZ
@given(data=st.data(), width=st.integers(1, 70_000), height=st.integers(1, 70_000))
def test_decoder_on_lying_png_dimensions(image_seeds: dict[str, bytes], data: st.DataObject,
                                         width: int, height: int) -> None:
    """A PNG whose header claims any size (bomb-sized included) over a tiny pixel stream."""
    png = bytearray(image_seeds["png"])
    png[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    _check_decoded(bytes(png))


def _check_inspected(path: Path) -> None:
    with hard_timeout():
        try:
            report = inspect_file(path)
        except ToolchainError as exc:
            assert str(path) in str(exc) or "Lambda layer" in str(exc)
            return
    assert report.layers >= 1 and report.layers == sum(report.layers_by_class.values())
    assert 0 <= report.weighted_layers <= report.layers and report.tensors >= 0
    assert report.parameters >= 0 and (report.parameters == 0) == (report.tensors == 0)


@pytest.fixture(scope="module")
def h5_seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A tiny legacy-layout file and, if fetched, the first 64 KiB of the real FaceNet file."""
    path = tmp_path_factory.mktemp("h5seed") / "tiny.h5"
    write_legacy_h5(path)
    seeds = {"tiny": path.read_bytes()}
    real = artifacts_root() / "source" / "facenet_keras.h5"
    if real.is_file():
        with open(real, "rb") as fh:
            seeds["real_head"] = fh.read(64 * 1024)
    return seeds


def test_unmutated_seeds_inspect_cleanly(tmp_path: Path, h5_seeds: dict[str, bytes]) -> None:
    """The positive side of the inspector fuzzing: its seed file is read, whole and vetted."""
    path = tmp_path / "tiny.h5"
    path.write_bytes(h5_seeds["tiny"])
    report = inspect_file(path)
    assert (report.layers, report.weighted_layers) == (TINY_LAYERS, TINY_WEIGHTED)
    assert (report.tensors, report.parameters) == (TINY_TENSORS, TINY_PARAMETERS)
    assert report.executable_code and report.all_lambdas_vetted


@FUZZ
@given(blob=st.binary(max_size=4096))
def test_inspector_on_random_bytes(tmp_path: Path, blob: bytes) -> None:
    path = tmp_path / "random.h5"
    path.write_bytes(blob)
    _check_inspected(path)


@FUZZ
@given(data=st.data())
def test_inspector_on_mutated_h5(tmp_path: Path, h5_seeds: dict[str, bytes],
                                 data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(h5_seeds)))
    path = tmp_path / "mutated.h5"
    path.write_bytes(_mutate(data, h5_seeds[name]))
    _check_inspected(path)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
"""Any small JSON value."""


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (sequence of keys/indices) into a JSON document."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_paths(value, (*prefix, index)))
    return found


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


@FUZZ
@given(data=st.data())
def test_inspector_on_mutated_model_config(tmp_path: Path, data: st.DataObject) -> None:
    """Nodes of a valid Keras 2.1.2 config replaced by any JSON value (up to three times).

    Half the draws aim at the structure (model class, layer list, a layer's name, class, config,
    inbound nodes), half at any node down to single config values.
    """
    config = copy.deepcopy(tiny_config())
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(config)
        structural = [p for p in paths if len(p) <= 4]
        where = data.draw(st.sampled_from(structural) | st.sampled_from(paths))
        config = _replace(config, where, data.draw(JSON))
    path = tmp_path / "config.h5"
    write_legacy_h5(path)
    with h5py.File(path, "r+") as h5:
        h5.attrs["model_config"] = json.dumps(config).encode("utf-8")
    _check_inspected(path)


@FUZZ
@given(code=st.binary(max_size=512), arguments=JSON)
def test_inspector_on_random_lambda_bytes(tmp_path: Path, code: bytes, arguments: Any) -> None:
    """Random 'marshaled bytecode' in the Lambda is decoded or refused, never run or crashing."""
    path = tmp_path / "lambda.h5"
    write_legacy_h5(path, function=[base64.encodebytes(code).decode("ascii"), None, None],
                    arguments=arguments)
    _check_inspected(path)
    with hard_timeout():
        read_legacy(path)
