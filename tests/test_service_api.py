"""``facenet serve`` over HTTP: every endpoint on the shared real photos, every refusal as the one
JSON error shape with nothing written, the token, the limits, and concurrent enrollments.

Each server is a real process on 127.0.0.1 (see ``service_server``) with its own gallery.
"""

from __future__ import annotations

import base64
import io
import sqlite3
import struct
import threading
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from helpers.cli import python_env
from helpers.pool_gate import WAIT_S, PoolGate
from helpers.service_server import Server, assert_error, examples, running_server
from PIL import Image

pytestmark = [pytest.mark.real, pytest.mark.slow, pytest.mark.services]

TOKEN = "s3cret-token-for-the-tests-0123456789"


def people(server: Server, headers: dict[str, str] | None = None) -> dict[str, int]:
    response = server.get("/v1/people", headers=headers or {})
    assert response.status_code == 200, response.text
    return {p["name"]: p["embeddings"] for p in response.json()["people"]}


def names(response: requests.Response) -> list[str | None]:
    assert response.status_code == 200, response.text
    return [face["name"] for face in response.json()["faces"]]


def png_header_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * 64)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows)
            + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server (2 workers, 1 MiB bodies) with obama and biden enrolled."""
    with running_server(tmp_path_factory.mktemp("serve"), "--max-request-mb", "1") as running:
        data = examples()
        assert running.enroll("obama", data / "people/obama/obama.jpg").status_code == 201
        response = running.enroll("biden", *sorted((data / "people/biden").iterdir()))
        assert response.status_code == 201, response.text
        yield running


def test_health_readiness_and_people(server: Server) -> None:
    assert server.get("/healthz").json() == {"status": "ok"}
    ready = server.get("/readyz").json()
    assert ready["status"] == "ready" and ready["people"] == 2 and ready["workers"] == 2
    assert people(server) == {"biden": 2, "obama": 1}


def test_recognize_names_both_people_of_a_real_photo(server: Server) -> None:
    response = server.recognize(examples() / "photos/two_people.jpg")
    faces = sorted(response.json()["faces"], key=lambda f: f["box"]["x"])
    assert [f["name"] for f in faces] == ["obama", "biden"]
    for face in faces:
        assert face["distance"] <= response.json()["threshold"]
        assert face["margin"] > 0 and face["candidates"][0]["name"] == face["name"]
        assert face["runner_up"]["name"] != face["name"]
    assert response.json()["image"] == {"width": 1126, "height": 661}


def test_base64_json_equals_multipart(server: Server) -> None:
    photo = examples() / "photos/obama1.jpg"
    as_json = server.post("/v1/faces", json={
        "image": "data:image/jpeg;base64," + base64.b64encode(photo.read_bytes()).decode(),
        "embeddings": True})
    as_form = server.post("/v1/faces", files={"image": (photo.name, photo.read_bytes())},
                          data={"embeddings": "true"})
    assert as_json.status_code == as_form.status_code == 200
    assert as_json.json() == as_form.json()
    (face,) = as_json.json()["faces"]
    vector = np.asarray(face["embedding"])
    assert vector.shape == (128,) and abs(np.linalg.norm(vector) - 1) < 1e-4
    assert set(face["landmarks"]) == {"left_eye", "right_eye", "nose", "mouth_left",
                                      "mouth_right"}
    plain = server.post("/v1/faces", files={"image": (photo.name, photo.read_bytes())})
    assert "embedding" not in plain.json()["faces"][0]


def test_compare_same_and_different_people(server: Server) -> None:
    data = examples()

    def compare(a: Path, b: Path, **fields: str) -> dict[str, object]:
        response = server.post("/v1/compare", files={"a": (a.name, a.read_bytes()),
                                                     "b": (b.name, b.read_bytes())}, data=fields)
        assert response.status_code == 200, response.text
        result: dict[str, object] = response.json()
        return result

    same = compare(data / "photos/obama1.jpg", data / "photos/obama3.jpg")
    assert same["decision"] == "same"
    different = compare(data / "photos/obama1.jpg", data / "people/biden/biden.jpg")
    assert different["decision"] == "different"
    assert different["distance"] > same["distance"]  # type: ignore[operator]
    picked = compare(data / "photos/two_people.jpg", data / "people/biden/biden.jpg",
                     face_a="2")
    assert picked["a"] == {**picked["a"], "face": 2, "faces": 2}  # type: ignore[dict-item]


def test_enrolling_the_same_photo_again_adds_nothing(server: Server) -> None:
    response = server.enroll("obama", examples() / "people/obama/obama.jpg")
    assert response.status_code == 200, response.text
    assert response.json()["added"] == 0
    assert response.json()["results"][0]["status"] == "already"
    assert people(server)["obama"] == 1


def test_enroll_then_recognize_then_remove(server: Server) -> None:
    data = examples()
    kit = sorted((data / "people/kit_harington").iterdir())
    response = server.enroll("kit harington", *kit)
    assert response.status_code == 201 and response.json()["added"] == 2, response.text
    assert "kit harington" in names(server.recognize(data / "photos/johnsnow_test1.jpg"))
    removed = server.delete("/v1/people/kit harington")
    assert removed.json() == {"name": "kit harington", "removed": 2}
    assert "kit harington" not in people(server)
    assert "kit harington" not in names(server.recognize(data / "photos/johnsnow_test1.jpg"))
    assert_error(server.delete("/v1/people/kit harington"), 404, "not_found", 3)


def bad_requests() -> list[tuple[str, dict[str, object], int, str, int]]:
    photo = (examples() / "photos/obama1.jpg").read_bytes()
    truncated = photo[: len(photo) // 3]
    return [
        ("/v1/recognize", {"files": {"image": ("x.jpg", b"not an image at all")}},
         400, "bad_image", 3),
        ("/v1/recognize", {"files": {"image": ("x.jpg", truncated)}}, 400, "bad_image", 3),
        ("/v1/faces", {"files": {"image": ("bomb.png", png_header_bomb(20000, 20000))}},
         400, "bad_image", 3),
        ("/v1/recognize", {"files": {"image": ("empty.jpg", b"")}}, 400, "bad_image", 3),
        ("/v1/recognize", {"files": {"photo": ("x.jpg", photo)}}, 400, "bad_request", 2),
        ("/v1/recognize", {"data": {"image": "x"}}, 415, "unsupported_media_type", 2),
        ("/v1/recognize", {"json": {}}, 400, "bad_request", 2),
        ("/v1/recognize", {"json": {"image": "!!not base64!!"}}, 400, "bad_request", 2),
        ("/v1/recognize", {"json": {"image": "https://example.com/face.jpg"}},
         400, "bad_request", 2),
        ("/v1/recognize", {"json": {"image": "//10.0.0.1/face.jpg"}}, 400, "bad_request", 2),
        ("/v1/recognize", {"data": b"[1, 2", "headers": {"content-type": "application/json"}},
         400, "bad_request", 2),
        ("/v1/compare", {"json": {"a": base64.b64encode(photo).decode()}},
         400, "bad_request", 2),
        ("/v1/compare", {"files": {"a": ("a.jpg", photo), "b": ("b.jpg", photo)},
                         "data": {"face_a": "3"}}, 400, "bad_image", 3),
        ("/v1/compare", {"files": {"a": ("a.jpg", photo), "b": ("b.jpg", photo)},
                         "data": {"face_a": "zero"}}, 400, "bad_request", 2),
        ("/v1/people/%20/faces", {"files": {"image": ("a.jpg", photo)}},
         400, "bad_request", 2),
        ("/v1/people/nobody/faces", {"files": {"image": ("x.jpg", b"GIF89a broken")}},
         400, "bad_image", 3),
        ("/v1/people/nobody/faces", {"files": {"image": ("bomb.png",
                                                        png_header_bomb(9000, 9000))}},
         400, "bad_image", 3),
        ("/v1/people/nobody/faces", {"json": {"images": []}}, 400, "bad_request", 2),
        ("/v1/nothing-here", {"json": {}}, 404, "not_found", 3),
    ]


def test_bad_requests_get_the_json_error_and_write_nothing(server: Server) -> None:
    before = people(server)
    size = server.gallery.stat().st_size
    for path, options, status, code, exit_code in bad_requests():
        message = assert_error(server.post(path, **options), status, code, exit_code)
        assert "Traceback" not in message, (path, message)
    assert people(server) == before
    assert server.gallery.stat().st_size == size
    with sqlite3.connect(server.gallery) as conn:
        assert conn.execute("SELECT COUNT(*) FROM people WHERE name = 'nobody'").fetchone() == (0,)


def test_bomb_refused_by_the_pixel_limit_before_decoding(server: Server) -> None:
    """81 Mpx is under Pillow's own limit but over the server's 40 Mpx: refused from the header
    (the PNG holds 64 bytes of pixels; decoding it would allocate 81 MB)."""
    message = assert_error(
        server.post("/v1/faces", files={"image": ("b.png", png_header_bomb(9000, 9000))}),
        400, "bad_image", 3)
    assert "81,000,000 pixels" in message and "40,000,000-pixel limit" in message


def test_a_photo_without_a_face_is_not_enrolled(server: Server, tmp_path: Path) -> None:
    blank = io.BytesIO()
    Image.new("RGB", (320, 240), (90, 140, 200)).save(blank, "JPEG")
    response = server.post("/v1/people/sky/faces", files={"image": ("sky.jpg", blank.getvalue())})
    assert_error(response, 400, "bad_image", 3)
    assert response.json()["error"]["details"] == ["upload sky.jpg: no face found"]
    assert "sky" not in people(server)


def test_a_photo_of_two_people_names_the_apis_largest_field(server: Server) -> None:
    """The refusal tells an API client what to send (``largest=true``), not the command line's
    ``--largest``; with it the largest face is enrolled."""
    photo = examples() / "photos" / "two_people.jpg"
    response = server.post("/v1/people/pair/faces",
                           files={"image": (photo.name, photo.read_bytes())})
    assert_error(response, 400, "bad_image", 3)
    details = response.json()["error"]["details"]
    assert len(details) == 1 and "largest=true" in details[0] and "--" not in details[0], details
    assert "pair" not in people(server)


def test_oversized_bodies_are_refused_declared_or_streamed(server: Server) -> None:
    big = b"\xff" * (1 << 20) + b"more"
    assert_error(server.post("/v1/recognize", files={"image": ("big.jpg", big)}),
                 413, "too_large", 3)

    def chunks() -> Iterator[bytes]:
        for _ in range(24):
            yield b"\0" * 65536

    streamed = server.post("/v1/recognize", data=chunks(),
                           headers={"content-type": "application/json"})
    assert_error(streamed, 413, "too_large", 3)
    assert server.get("/healthz").status_code == 200


def test_wrong_method_and_metrics(server: Server) -> None:
    assert_error(server.get("/v1/recognize"), 405, "method_not_allowed", 2)
    text = server.get("/metrics").text
    assert 'facenet_http_requests_total{method="POST",route="/v1/recognize",status="200"}' in text
    assert 'facenet_errors_total{code="bad_image"}' in text
    assert 'route="/v1/people/{name:path}/faces"' in text
    assert "facenet_http_request_duration_seconds_bucket" in text
    assert "facenet_faces_total" in text and "facenet_worker_slots 10.0" in text


def test_docs_and_page_are_served_without_a_cdn(server: Server) -> None:
    docs = server.get("/docs")
    assert docs.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in docs.text
    assert "://" not in docs.text
    assert server.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    schema = server.get("/openapi.json").json()
    assert {"/v1/faces", "/v1/compare", "/v1/recognize", "/v1/people",
            "/v1/people/{name}/faces", "/v1/people/{name}"} <= set(schema["paths"])
    page = server.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    script = server.get("/static/app.js").text
    for html_sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
        assert html_sink not in script
    assert "://" not in script


def test_concurrent_enrollments_and_recognitions_keep_the_gallery_whole(
        tmp_path: Path) -> None:
    """Every shared person's photos enrolled twice (as NAME-0 and NAME-1) by 8 concurrent
    clients while 8 others recognize: each photo's face is stored exactly once, the database is
    sound and no person is left without faces. The queue has room for all 16 clients and the
    timeout is a hang guard, so every request is answered on a machine of any speed."""
    with running_server(tmp_path, "--queue", "16", "--timeout", "600") as server:
        concurrent_enrollments(server)


def concurrent_enrollments(server: Server) -> None:
    data = examples()
    jobs: list[tuple[str, Path]] = [
        (f"{person.name}-{copy}", photo)
        for person in sorted((data / "people").iterdir())
        for copy in range(2)
        for photo in sorted(person.iterdir())
    ]
    start = threading.Barrier(8)

    def enroll(job: tuple[str, Path]) -> int:
        name, photo = job
        response = server.post(f"/v1/people/{name}/faces",
                               files={"image": (photo.name, photo.read_bytes())},
                               data={"largest": "true"})
        return response.status_code

    def recognize(_: int) -> int:
        start.wait()
        return server.recognize(data / "photos/two_people.jpg").status_code

    with ThreadPoolExecutor(8) as pool:
        readers = [pool.submit(recognize, i) for i in range(8)]
        statuses = list(pool.map(enroll, jobs))
    assert set(statuses) <= {200, 201}, statuses
    assert [r.result() for r in readers] == [200] * 8
    enrolled = people(server)
    expected: dict[str, int] = {}
    for name, _ in jobs:
        expected[name] = expected.get(name, 0) + 1
    # The same photo under two names is one face: the second request finds it "already".
    for person in sorted((data / "people").iterdir()):
        copies = [enrolled.get(f"{person.name}-{c}", 0) for c in range(2)]
        assert sum(copies) == expected[f"{person.name}-0"]
    with sqlite3.connect(server.gallery) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT COUNT(*) FROM people p WHERE NOT EXISTS (SELECT 1 FROM "
                            "embeddings e WHERE e.person_id = p.id)").fetchone() == (0,)


def test_a_damaged_server_gallery_is_the_servers_error(tmp_path: Path) -> None:
    """The server's gallery file damaged behind its back: 500 ``gallery`` with the reason, not
    400 ``bad_image`` (which tells the client its image is at fault); the exit code is the
    command line's for that gallery (3)."""
    data = examples()
    with running_server(tmp_path) as server:
        assert server.enroll("obama", data / "people/obama/obama.jpg").status_code == 201
        Path(server.gallery).write_bytes(b"not a gallery any more, " * 64)
        message = assert_error(server.get("/v1/people"), 500, "gallery", 3)
        assert "gallery.db" in message, message
        assert_error(server.recognize(data / "photos/two_people.jpg"), 500, "gallery", 3)


def test_token_guards_the_api_not_the_probes(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    with running_server(tmp_path, "--token-file", str(token_file)) as server:
        photo = examples() / "photos/obama1.jpg"
        assert server.get("/healthz").status_code == 200
        ready = server.get("/readyz")
        assert ready.status_code == 200 and ready.json()["people"] is None, ready.text
        assert server.get("/").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"},
                        {"Authorization": f"Basic {TOKEN}"},
                        {"Authorization": f"Bearer {TOKEN}x"}):
            response = server.recognize(photo, headers=headers)
            assert_error(response, 401, "unauthorized", 2)
            assert response.headers["www-authenticate"] == "Bearer"
            assert_error(server.enroll("mallory", photo, headers=headers), 401, "unauthorized", 2)
            assert_error(server.get("/metrics", headers=headers), 401, "unauthorized", 2)
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert people(server, good) == {}
        assert server.enroll("obama", photo, headers=good).status_code == 201
        assert names(server.recognize(photo, headers=good)) == ["obama"]


def test_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o644)
    with (pytest.raises(AssertionError, match="readable by every user"),
          running_server(tmp_path, "--token-file", str(token_file))):
        pass


def test_a_burst_beyond_the_queue_gets_503_with_retry_after(tmp_path: Path) -> None:
    """20 recognitions against ``--workers 2 --queue 4`` while the gate (``helpers.pool_gate``)
    holds the workers: exactly 6 are admitted and 14 refused with 503 and ``Retry-After``,
    whatever the machine's speed; once every request has reached the pool the 6 are let go and
    answered 200."""
    photo = (examples() / "photos/two_people.jpg").read_bytes()
    with PoolGate(capacity=6, arrivals=20) as gate, running_server(
            tmp_path, "--workers", "2", "--queue", "4", "--timeout", "600",
            env=gate.install(tmp_path / "hook", python_env()["PYTHONPATH"])) as server:

        def one(_: int) -> requests.Response:
            return server.post("/v1/recognize", files={"image": ("p.jpg", photo)})

        with ThreadPoolExecutor(20) as pool:
            responses = list(pool.map(one, range(20)))
        assert (gate.count("admitted"), gate.count("busy")) == (6, 14), gate.reports
        statuses = [r.status_code for r in responses]
        assert (statuses.count(200), statuses.count(503)) == (6, 14), statuses
        for response in responses:
            if response.status_code == 503:
                assert_error(response, 503, "busy", 1)
                assert int(response.headers["Retry-After"]) >= 1
        assert names(server.recognize(examples() / "photos/obama1.jpg")) == [None]
        metrics = server.get("/metrics").text
        assert 'facenet_errors_total{code="busy"} 14.0' in metrics


def test_a_timed_out_enrollment_writes_nothing(tmp_path: Path) -> None:
    """The gate holds the enrollment's job past ``--timeout 0.1``: the answer is 504 whatever
    the machine's speed; let go, the job stops at its ticket (it reports ``TimedOut``) and the
    gallery holds nobody."""
    from toolchain.gallery import open_gallery

    photos = sorted((examples() / "people/biden").iterdir())
    with PoolGate() as gate, running_server(
            tmp_path, "--timeout", "0.1", "--workers", "1",
            env=gate.install(tmp_path / "hook", python_env()["PYTHONPATH"])) as server:
        response = server.enroll("slow", *photos)
        assert_error(response, 504, "timeout", 1)
        assert "nothing was written" in response.json()["error"]["message"]
        gate.release()
        reports = gate.wait(lambda got: any(r.event.startswith("done") for r in got),
                            "the end of the enrollment's job")
        assert [r.event for r in reports if r.event.startswith("done")] == ["done TimedOut"]
        with open_gallery(server.gallery) as gallery:
            assert gallery.people() == []


def test_sigkill_during_enrollments_leaves_only_whole_enrollments(tmp_path: Path) -> None:
    """8 clients enroll two photos per request (bytes made unique per request, so every request
    adds two faces); the server is SIGKILLed mid-way: the gallery is sound and every person in it
    has both faces of their request, never one."""
    from toolchain.gallery import open_gallery

    photos = [p.read_bytes() for p in sorted((examples() / "people" / "biden").iterdir())]
    stop, enough = threading.Event(), threading.Event()
    answered: list[int] = []

    with running_server(tmp_path, "--queue", "16") as server:
        def client(worker: int) -> None:
            with requests.Session() as session:
                for k in range(50):
                    if stop.is_set():
                        return
                    tail = f"{worker}-{k}".encode()
                    files = [("image", (f"{i}.jpg", data + tail)) for i, data in
                             enumerate(photos)]
                    try:
                        response = session.post(f"{server.url}/v1/people/p{worker}-{k}/faces",
                                                files=files, timeout=60)
                    except requests.ConnectionError:
                        return
                    answered.append(response.status_code)
                    if len(answered) >= 6:
                        enough.set()

        threads = [threading.Thread(target=client, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        assert enough.wait(WAIT_S), f"6 enrollments never answered: {answered}"
        server.process.kill()
        server.process.wait(10)
        stop.set()
        for thread in threads:
            thread.join(60)
    assert answered and set(answered) == {201}, answered
    with sqlite3.connect(server.gallery) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with open_gallery(server.gallery) as gallery:
        enrolled = gallery.people()
        assert len(gallery.entries()) == 2 * len(enrolled)
    assert len(enrolled) >= len(answered)
    assert all(person.embeddings == 2 for person in enrolled), enrolled
