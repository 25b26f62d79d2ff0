"""The page of ``facenet serve`` in a real browser: Playwright driving Debian's Chromium.

As a person would: upload a real photo and read the names off the page, enroll through the page
and then recognize, the camera with Chromium's fake device fed frames of the shared Hamilton clip
(the names drawn over the live video), a name that is an HTML tag shown as text, removing a
person, and the API docs working with no network. Chromium is ``/usr/bin/chromium`` (env
``FACENET_CHROMIUM``; ``.ci/run`` installs Debian's package); Playwright never downloads a
browser. Screenshots of each flow go to ``<artifacts>/reports/web/``.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.real import write_web_report
from helpers.service_server import Server, examples, running_server

pytestmark = [pytest.mark.real, pytest.mark.slow, pytest.mark.services]

XSS_NAME = "<img src=x onerror=alert(1)>"

CLIP_FRAMES = (95, 215)
"""Frames of the clip where lin_manuel_miranda faces the camera (see the shared README)."""

CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 "--host-resolver-rules=MAP evil.test 127.0.0.1, MAP rebind.test 127.0.0.1"]
"""Chromium's options; two names resolve to 127.0.0.1 for the cross-site tests (another
site, and a DNS-rebinding one)."""

ATTACK_PAGE = """<!doctype html>
<html><body><iframe name="sink"></iframe>
<form id="form" method="post" enctype="multipart/form-data" target="sink">
<input type="file" name="image" id="file"></form>
<script>
async function photo(name) {
  return new File([await (await fetch(name)).blob()], name, {type: "image/jpeg"});
}
async function postForm(target) {  // a form post with a file: no CORS preflight is needed
  const files = new DataTransfer();
  files.items.add(await photo("form.jpg"));
  document.getElementById("file").files = files.files;
  const form = document.getElementById("form");
  form.action = target + "/v1/people/mallory_form/faces";
  form.submit();
}
async function postFetch(target) {  // the same with fetch, its answer unreadable (no-cors)
  const data = new FormData();
  data.append("image", await photo("fetch.jpg"));
  await fetch(target + "/v1/people/mallory_fetch/faces",
              {method: "POST", body: data, mode: "no-cors"});
}
async function remove(target) {  // a DELETE needs a CORS preflight
  try {
    return String((await fetch(target + "/v1/people/obama", {method: "DELETE"})).status);
  } catch (error) {
    return error.name;
  }
}
</script></body></html>
"""
"""The page of another site: it tries to enroll faces (a form post with a file, a fetch) and to
remove a person on the server at ``target``."""


def chromium() -> Path:
    """Debian's Chromium, or skip (a failure under CI, where .ci/run installs it)."""
    path = Path(os.environ.get("FACENET_CHROMIUM", "/usr/bin/chromium"))
    if not path.is_file():
        pytest.skip(f"{path} missing: run `nox -s tests` after `apt-get install chromium` "
                    "(.ci/run installs it)")
    return path


def fake_camera(path: Path) -> Path:
    """A Y4M file of the clip's frames in :data:`CLIP_FRAMES` (Chromium loops it)."""
    av = pytest.importorskip("av")
    clip = examples() / "video" / "short_hamilton_clip.mp4"
    with path.open("wb") as out, av.open(str(clip)) as container:
        stream = container.streams.video[0]
        header_written = False
        for index, frame in enumerate(container.decode(stream)):
            if index < CLIP_FRAMES[0]:
                continue
            if index > CLIP_FRAMES[1]:
                break
            planes: np.ndarray = frame.to_ndarray(format="yuv420p")
            if not header_written:
                out.write(f"YUV4MPEG2 W{frame.width} H{frame.height} F30000:1001 Ip A1:1 "
                          "C420jpeg\n".encode())
                header_written = True
            out.write(b"FRAME\n" + planes.tobytes())
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with obama, biden and lin_manuel_miranda enrolled through the API."""
    data = examples()
    with running_server(tmp_path_factory.mktemp("web")) as running:
        for person in ("obama", "biden", "lin_manuel_miranda"):
            photos = sorted((data / "people" / person).iterdir())
            assert running.enroll(person, *photos).status_code == 201
        yield running


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Chromium with a fake camera playing the clip."""
    executable = chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    camera = fake_camera(tmp_path_factory.mktemp("camera") / "hamilton.y4m")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(executable),
            args=[*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={camera}"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    """A fresh page on the server; every alert() is recorded (and must never happen)."""
    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 1000})
    opened = context.new_page()
    opened.alerts = []

    def on_dialog(dialog: Any) -> None:
        if dialog.type == "confirm":
            dialog.accept()
        else:
            opened.alerts.append(dialog.message)
            dialog.dismiss()

    opened.on("dialog", on_dialog)
    opened.goto("/")
    opened.wait_for_selector("#status:has-text('people enrolled')")
    yield opened
    assert opened.alerts == []
    context.close()


def face_names(page: Any, selector: str) -> list[str]:
    return [str(name) for name in page.eval_on_selector_all(
        f"{selector} li", "items => items.map(i => i.dataset.name)")]


def upload(page: Any, photo: Path) -> list[str]:
    page.evaluate("document.getElementById('photo-faces').replaceChildren()")
    page.set_input_files("#photo-input", str(photo))
    page.wait_for_selector("#photo-faces li")
    return face_names(page, "#photo-faces")


def test_upload_a_photo_and_read_the_names(page: Any) -> None:
    names = upload(page, examples() / "photos" / "two_people.jpg")
    assert sorted(names) == ["biden", "obama"]
    texts = page.locator("#photo-faces li").all_inner_texts()
    assert all("(" in text for text in texts), texts
    assert page.eval_on_selector("#photo-canvas", "c => [c.width, c.height]") == [1126, 661]
    write_web_report("recognize-photo.png", page.locator("#photo-section").screenshot())


def test_enroll_through_the_page_then_recognize(page: Any, server: Server) -> None:
    data = examples()
    assert "kit_harington" not in upload(page, data / "photos" / "johnsnow_test1.jpg")
    page.fill("#enroll-name", "kit_harington")
    page.set_input_files("#enroll-files",
                         [str(p) for p in sorted((data / "people" / "kit_harington").iterdir())])
    page.click("#enroll-submit")
    page.wait_for_selector("#message:has-text('2 face(s) added')")
    page.wait_for_selector("#people tr[data-name='kit_harington']")
    assert upload(page, data / "photos" / "johnsnow_test1.jpg") == ["kit_harington"]
    write_web_report("enroll.png", page.screenshot(full_page=True))


def test_a_name_that_is_html_is_shown_as_text(page: Any, server: Server) -> None:
    data = examples()
    page.fill("#enroll-name", XSS_NAME)
    page.set_input_files("#enroll-files", str(data / "people" / "rose_leslie" / "img1.jpg"))
    page.click("#enroll-submit")
    page.wait_for_selector("#message:has-text('face(s) added')")
    assert page.inner_text("#message").startswith(XSS_NAME)
    row = page.locator("#people tbody tr").filter(has_text=XSS_NAME)
    assert row.locator("td").first.inner_text() == XSS_NAME
    names = upload(page, data / "photos" / "kit_with_rose.jpg")
    assert XSS_NAME in names
    assert any(text.startswith(f"face 1: {XSS_NAME}") or XSS_NAME in text
               for text in page.locator("#photo-faces li").all_inner_texts())
    assert page.locator("img").count() == 0
    assert page.evaluate("document.querySelectorAll('[onerror]').length") == 0
    write_web_report("escaped-name.png", page.screenshot(full_page=True))
    assert server.delete(f"/v1/people/{XSS_NAME}").status_code == 200


def test_live_camera_names_are_drawn_over_the_video(page: Any) -> None:
    """At 1 frame per second the screenshot, taken as soon as the name is listed, shows the
    boxes of the same frame."""
    page.select_option("#camera-fps", "1")
    page.click("#camera-start")
    page.wait_for_selector("#live-names li[data-name='lin_manuel_miranda']", timeout=90_000)
    assert page.eval_on_selector("#camera-video", "v => v.videoWidth") == 640
    assert page.eval_on_selector("#camera-overlay", "c => [c.width, c.height]") == [640, 360]
    drawn = page.eval_on_selector(
        "#camera-overlay",
        "c => c.getContext('2d').getImageData(0, 0, c.width, c.height).data"
        ".some((v, i) => i % 4 === 3 && v > 0)")
    assert drawn, "nothing drawn over the video"
    write_web_report("camera-live.png", page.locator("#camera-section").screenshot())


def test_enroll_a_camera_snapshot(page: Any, server: Server) -> None:
    page.click("#camera-start")
    page.wait_for_selector("#live-names li")
    page.fill("#enroll-name", "snapshot_person")
    page.click("#enroll-snapshot")
    page.wait_for_selector("#message:has-text('snapshot_person: 1 face(s) added')")
    page.click("#camera-stop")
    assert page.is_disabled("#enroll-snapshot")
    listed = {p["name"]: p["embeddings"] for p in server.get("/v1/people").json()["people"]}
    assert listed["snapshot_person"] == 1
    assert server.delete("/v1/people/snapshot_person").status_code == 200


def test_remove_a_person_from_the_page(page: Any, server: Server) -> None:
    photo = examples() / "people" / "alex_lacamoire" / "img1.jpg"
    assert server.enroll("alex_lacamoire", photo).status_code == 201
    page.click("#people-refresh")
    row = page.locator("#people tr[data-name='alex_lacamoire']")
    row.locator("button.remove").click()
    page.wait_for_selector("#message:has-text('alex_lacamoire removed')")
    # The message comes first; the list is refreshed from the server after it.
    row.wait_for(state="detached")
    assert row.count() == 0
    listed = server.get("/v1/people").json()["people"]
    assert "alex_lacamoire" not in [p["name"] for p in listed]


def test_api_docs_work_offline(browser: Any, server: Server) -> None:
    context = browser.new_context(base_url=server.url)
    requested: list[str] = []
    context.on("request", lambda request: requested.append(request.url))
    docs = context.new_page()
    docs.goto("/docs")
    docs.wait_for_selector(".opblock-summary-path[data-path='/v1/recognize']")
    assert docs.locator(".opblock").count() >= 9
    write_web_report("docs.png", docs.screenshot())
    context.close()
    assert requested and all(url.startswith(server.url) for url in requested), requested


@pytest.fixture(scope="module")
def attacker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """Another site: a plain web server on another port of 127.0.0.1 serving the attack page
    and two photos of obama that are not in the gallery; its port."""
    folder = tmp_path_factory.mktemp("attacker")
    (folder / "attack.html").write_text(ATTACK_PAGE)
    shutil.copy(examples() / "photos" / "obama1.jpg", folder / "form.jpg")
    shutil.copy(examples() / "photos" / "obama3.jpg", folder / "fetch.jpg")
    handler = partial(SimpleHTTPRequestHandler, directory=str(folder))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        yield httpd.server_address[1]
        httpd.shutdown()
        thread.join(10)


def enrolled(server: Server) -> dict[str, int]:
    response = server.get("/v1/people")
    assert response.status_code == 200, response.text
    return {p["name"]: p["embeddings"] for p in response.json()["people"]}


@pytest.mark.parametrize("site", ["127.0.0.1", "evil.test"], ids=["other-port", "other-site"])
def test_a_page_of_another_origin_cannot_enroll_or_remove(
        browser: Any, server: Server, attacker: int, site: str) -> None:
    """A page from 127.0.0.1 on another port (the same site, another origin) or from another
    site posts a form with a photo, fetches the same, and tries a DELETE: the writes reach the
    server and are refused (403), the DELETE is stopped by the browser (no CORS), and the
    gallery is unchanged."""
    before = enrolled(server)
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"http://{site}:{attacker}/attack.html")
    with page.expect_response(lambda r: "/mallory_form/" in r.url) as form:
        page.evaluate("target => postForm(target)", server.url)
    assert form.value.status == 403, form.value.status
    with page.expect_response(lambda r: "/mallory_fetch/" in r.url) as fetched:
        page.evaluate("target => postFetch(target)", server.url)
    assert fetched.value.status == 403, fetched.value.status
    assert page.evaluate("target => remove(target)", server.url) == "TypeError"
    context.close()
    assert enrolled(server) == before


def test_a_rebound_name_is_not_answered(browser: Any, server: Server) -> None:
    """DNS rebinding: a page of rebind.test, whose name now resolves to 127.0.0.1, loads and
    runs its script as rebind.test on the server's port: its same-origin requests (no CORS
    needed) are refused for their host name (421), the gallery is unchanged."""
    before = enrolled(server)
    port = server.url.rsplit(":", 1)[1]
    context = browser.new_context()
    page = context.new_page()
    loaded = page.goto(f"http://rebind.test:{port}/")
    assert loaded is not None and loaded.status == 421, loaded and loaded.status
    statuses = page.evaluate("""async () => {
        const data = new FormData();
        data.append("image", new Blob([new Uint8Array(16)]), "x.jpg");
        const enroll = await fetch("/v1/people/mallory/faces", {method: "POST", body: data});
        const listed = await fetch("/v1/people");
        const removed = await fetch("/v1/people/obama", {method: "DELETE"});
        return [enroll.status, listed.status, removed.status];
    }""")
    assert statuses == [421, 421, 421], statuses
    context.close()
    assert enrolled(server) == before
