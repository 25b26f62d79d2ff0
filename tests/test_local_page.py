"""The in-browser page (``facenet serve`` at ``/local``) in Debian's Chromium, against Python.

The page runs the exported ONNX models on ONNX Runtime Web (WASM) with the pipeline of
``web/local/facenet-core.js``. Held to the Python toolchain: its embeddings of the stored reference
crops against the ORIGINAL graph's reference embeddings (the fp32 tolerance of the format table),
and the whole page pipeline on the shared real photos against ``facenet recognize --json`` on the
same gallery (same faces, same names, the same boxes). While it recognizes, the page sends nothing
but GETs for its own files and models: no photo byte leaves it. The same files also work served
as plain files by any static server. Its timings (model load, detection and embedding per face)
go to ``<artifacts>/reports/web/local.json``.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.cli import facenet
from helpers.real import artifacts_root, shared_data, write_web_report
from helpers.service_server import Server, running_server
from test_service_browser import CHROMIUM_ARGS, chromium

from toolchain.convert.formats import FP32
from toolchain.convert.parity import load_reference
from toolchain.core.boxes import iou
from toolchain.core.paths import Layout

pytestmark = [pytest.mark.real, pytest.mark.slow, pytest.mark.services]

ROOT = Path(__file__).resolve().parents[1]
LOCAL_DIR = ROOT / "toolchain" / "service" / "web" / "local"
PAGE_MODELS = ("facenet.onnx", "mtcnn_pnet.onnx", "mtcnn_rnet.onnx", "mtcnn_onet.onnx")
CROPS_PER_CALL = 16

BOX_SLACK = 2.0
"""Pixels a box may differ by: WASM and the CPU kernels round the nets' float32 differently."""
MIN_IOU = 0.85
"""Overlap every face must keep. P-Net probabilities that saturate at exactly 1.0 tie; numpy's
sort kernel orders such ties in Python (CPU-dependent), the page by position, and where a tie
decides the NMS the box moves by a few pixels (32bit.png)."""
MIN_EXACT_SHARE = 0.9
"""Share of faces whose box must be within :data:`BOX_SLACK`."""


def _vendored() -> Path:
    folder = LOCAL_DIR / "ort"
    if not (folder / "ort-wasm-simd-threaded.wasm").is_file():
        pytest.skip(f"{folder} is empty: run `nox -s web` (`nox -s tests` runs it)")
    return folder


def _facenet(*args: str | Path) -> subprocess.CompletedProcess[str]:
    proc = facenet(*args)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The shared people enrolled by ``facenet enroll`` (fp32, ONNX Runtime) and its export."""
    folder = tmp_path_factory.mktemp("local-gallery")
    db, export = folder / "people.db", folder / "people.json"
    _facenet("enroll", shared_data() / "people", "--gallery", db, "--artifacts", artifacts_root())
    _facenet("gallery", "export", export, "--gallery", db)
    return db, export


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    _vendored()
    with running_server(tmp_path_factory.mktemp("local")) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium()), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def open_page(browser: Any, url: str) -> tuple[Any, list[Any]]:
    """The page at ``url``, ready (models loaded), and the list its requests are recorded in."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    requests: list[Any] = []
    page.on("request", lambda request: requests.append(request))
    page.goto(url)
    page.wait_for_selector("body[data-ready='true']", timeout=180_000)
    return page, requests


@pytest.fixture(scope="module")
def local(browser: Any, server: Server) -> Iterator[tuple[Any, list[Any]]]:
    page, requests = open_page(browser, f"{server.url}/local")
    yield page, requests
    page.context.close()


def report(**values: Any) -> None:
    """Merge ``values`` into ``<artifacts>/reports/web/local.json``."""
    path = artifacts_root() / "reports" / "web" / "local.json"
    current = json.loads(path.read_text()) if path.is_file() else {}
    write_web_report("local.json", (json.dumps({**current, **values}, indent=2) + "\n").encode())


def test_the_page_is_isolated_and_loads_its_models(local: tuple[Any, list[Any]],
                                                   server: Server) -> None:
    page, requests = local
    assert page.evaluate("self.crossOriginIsolated") is True
    cores = page.evaluate("navigator.hardwareConcurrency")
    assert f"WASM, {cores} thread" in page.inner_text("#status")
    models = {r.url.rsplit("/", 1)[-1] for r in requests if "/local/models/" in r.url}
    assert models == set(PAGE_MODELS)
    load_ms = page.evaluate("window.facenetLocal.state.timings.modelLoadMs")
    report(model_load_ms=round(load_ms), threads=cores)
    assert server.get("/local/models/gallery.db").status_code == 404


def test_reference_crops_embed_within_the_fp32_tolerance(local: tuple[Any, list[Any]]) -> None:
    page, _ = local
    reference = load_reference(Layout(artifacts_root()))
    parts = []
    start = time.perf_counter()
    for i in range(0, len(reference.crops), CROPS_PER_CALL):
        chunk = reference.crops[i : i + CROPS_PER_CALL]
        got = page.evaluate(
            """async ([b64, n]) => {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                return Array.from(await window.facenetLocal.embedCrops(bytes, n));
            }""", [base64.b64encode(chunk.tobytes()).decode(), len(chunk)])
        parts.append(np.asarray(got, np.float32).reshape(len(chunk), -1))
    seconds = time.perf_counter() - start
    embeddings = np.concatenate(parts)
    assert embeddings.shape == reference.embeddings.shape
    max_abs = float(np.abs(embeddings - reference.embeddings).max())
    unit = [x / np.linalg.norm(x, axis=1, keepdims=True)
            for x in (embeddings.astype(np.float64), reference.embeddings.astype(np.float64))]
    min_cos = float((unit[0] * unit[1]).sum(axis=1).min())
    report(reference_crops=len(embeddings), reference_max_abs=max_abs, reference_min_cos=min_cos,
           embed_ms_per_crop_batch16=round(1000 * seconds / len(embeddings), 1))
    assert FP32.max_abs is not None
    assert max_abs <= FP32.max_abs and min_cos >= FP32.min_cos, (max_abs, min_cos)


def recognize_on_page(page: Any, gallery_json: Path, photos: list[Path]
                      ) -> tuple[dict[str, list[tuple[str | None, list[float]]]], list[Any]]:
    """Every photo through the page's file input: its faces' names and boxes, and timings."""
    page.set_input_files("#gallery-input", str(gallery_json))
    page.wait_for_selector("body[data-gallery]")
    found: dict[str, list[tuple[str | None, list[float]]]] = {}
    timings = []
    done = int(page.evaluate("Number(document.body.dataset.photos || 0)"))
    for photo in photos:
        page.set_input_files("#photo-input", str(photo))
        done += 1
        page.wait_for_selector(f"body[data-photos='{done}']", timeout=180_000)
        items = page.eval_on_selector_all(
            "#faces li", "items => items.map((i) => [i.dataset.name, i.dataset.box])")
        found[photo.name] = [(name or None, [float(v) for v in box.split(",")])
                             for name, box in items]
        timings.append(page.evaluate("window.facenetLocal.state.timings.last"))
    return found, timings


def test_the_whole_page_names_the_faces_facenet_recognize_names(
        local: tuple[Any, list[Any]], gallery: tuple[Path, Path]) -> None:
    page, requests = local
    db, export = gallery
    photos = sorted(p for p in (shared_data() / "photos").iterdir() if p.is_file())
    expected = json.loads(_facenet("recognize", shared_data() / "photos", "--gallery", db,
                                   "--artifacts", artifacts_root(), "--json").stdout)
    before = len(requests)
    found, timings = recognize_on_page(page, export, photos)
    sent = requests[before:]
    origin = page.evaluate("location.origin")
    assert all(r.method == "GET" and r.post_data_buffer is None and r.url.startswith(origin)
               for r in sent), [(r.method, r.url) for r in sent]
    faces = exact = 0
    problems = []
    for result in expected["results"]:
        name = Path(result["file"]).name
        want = [(f["name"], [f["box"][k] for k in ("x", "y", "width", "height")])
                for f in result["faces"]]
        got = found[name]
        if [n for n, _ in got] != [n for n, _ in want]:
            problems.append(f"{name}: page {[n for n, _ in got]}, recognize {[n for n, _ in want]}")
            continue
        for (_, box), (_, want_box) in zip(got, want, strict=True):
            faces += 1
            exact += max(abs(a - b) for a, b in zip(box, want_box, strict=True)) <= BOX_SLACK
            if iou(box, want_box) < MIN_IOU:
                problems.append(f"{name}: page box {box}, recognize {want_box}")
    assert not problems, problems
    assert faces >= 20 and exact >= MIN_EXACT_SHARE * faces, (exact, faces)
    per_face = [t["detectMs"] / t["faces"] + t["embedMs"] / t["faces"] for t in timings
                if t["faces"]]
    report(photos=len(photos), faces=faces, boxes_within_2px=exact,
           median_ms_per_photo_detect=round(float(np.median([t["detectMs"] for t in timings]))),
           median_ms_per_face_embed=round(float(np.median(
               [t["embedMs"] / t["faces"] for t in timings if t["faces"]]))),
           median_ms_per_face_total=round(float(np.median(per_face))))
    write_web_report("local.png", page.screenshot(full_page=True))


@contextmanager
def static_site(site: Path, runtime: bool = True) -> Iterator[str]:
    """The page's files (with ONNX Runtime Web unless not ``runtime``) and the four models in
    ``site``, served by a plain static server; yields the page's URL."""
    _vendored()
    (site / "ort").mkdir(parents=True)
    (site / "models").mkdir()
    for file in LOCAL_DIR.glob("*.*"):
        (site / file.name).symlink_to(file)
    for file in (LOCAL_DIR / "ort").iterdir() if runtime else ():
        (site / "ort" / file.name).symlink_to(file)
    for name in PAGE_MODELS:
        (site / "models" / name).symlink_to(Layout(artifacts_root()).models_dir / name)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0),
                                partial(SimpleHTTPRequestHandler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/index.html"
    finally:
        httpd.shutdown()
        thread.join(5)


@pytest.fixture
def plain_site(tmp_path: Path) -> Iterator[str]:
    with static_site(tmp_path / "site") as url:
        yield url


def test_the_page_works_as_plain_files(browser: Any, plain_site: str,
                                       gallery: tuple[Path, Path]) -> None:
    page, _ = open_page(browser, plain_site)
    try:
        assert "1 thread" in page.inner_text("#status")
        photo = shared_data() / "photos" / "two_people.jpg"
        found, _ = recognize_on_page(page, gallery[1], [photo])
        assert [name for name, _ in found["two_people.jpg"]] == ["obama", "biden"]
    finally:
        page.context.close()


def test_without_onnxruntime_web_the_page_says_how_to_vendor_it(browser: Any,
                                                                tmp_path: Path) -> None:
    with static_site(tmp_path / "bare", runtime=False) as url:
        page = browser.new_page()
        try:
            page.goto(url)
            page.wait_for_selector("#status:has-text('nox -s web')")
        finally:
            page.close()
