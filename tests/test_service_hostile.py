"""``facenet serve`` against a hostile client: what a client sends cannot grow the server's
metrics, and a web page of another site cannot write through the user's browser.

Each server is a real process on 127.0.0.1 (see ``service_server``); requests go over real
sockets (raw ones where a library would refuse to send what a hostile client sends).
"""

from __future__ import annotations

import random
import re
import socket
import string
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from helpers.service_server import Server, assert_error, examples, running_server

pytestmark = [pytest.mark.real, pytest.mark.slow, pytest.mark.services]

SERIES = re.compile(r"^(facenet_\w+)\{(.*)\} ", re.MULTILINE)
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server with obama enrolled."""
    with running_server(tmp_path_factory.mktemp("hostile")) as running:
        photo = examples() / "people" / "obama" / "obama.jpg"
        assert running.enroll("obama", photo).status_code == 201
        yield running


def raw_request(server: Server, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send ``head`` (request line and headers, without the blank line) and ``body`` on a new
    connection; the status and the whole answer."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(f"{head}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                     .encode("latin-1") + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return status, answer


def series(server: Server) -> list[tuple[str, dict[str, str]]]:
    """Every labelled series of ``/metrics``: its name and labels."""
    response = server.get("/metrics")
    assert response.status_code == 200, response.text
    return [(name, dict(LABEL.findall(labels)))
            for name, labels in SERIES.findall(response.text)]


def test_random_methods_and_paths_cannot_grow_the_metrics(server: Server) -> None:
    """300 requests, each with a random 2,000-character method and a random path (counted before
    any route or token is looked at): every label keeps to its fixed set, so the only new series
    are the method ``other`` on the routes and statuses a plain GET had already met."""
    host = server.url.removeprefix("http://")
    paths = ["/healthz", "/v1/people", "/v1/people/x/faces", "/nothing-here"]
    for path in paths:  # every route and status the attack meets, seen once by a plain GET
        raw_request(server, f"GET {path} HTTP/1.1\r\nHost: {host}")
    series(server)  # /metrics itself is counted once answered
    before = series(server)
    rng = random.Random(26)

    def hostile(_: int) -> int:
        method = "".join(rng.choice(string.ascii_uppercase) for _ in range(2000))
        unmatched = "/" + "".join(rng.choices(string.ascii_lowercase, k=40))
        path = rng.choice([*paths[:3], unmatched])
        return raw_request(server, f"{method} {path} HTTP/1.1\r\nHost: {host}")[0]

    with ThreadPoolExecutor(4) as pool:
        statuses = set(pool.map(hostile, range(300)))
    assert statuses and all(400 <= status < 500 for status in statuses), statuses
    after = series(server)
    new = [(name, labels) for name, labels in after if (name, labels) not in before]
    assert len(new) <= 8, [labels for _, labels in new]  # "other" on 4 (route, status) pairs
    routes = route_templates(server)
    for name, labels in after:
        assert labels.get("method", "GET") in METHODS, (name, labels["method"][:40])
        assert labels.get("route", "/healthz") in routes, (name, labels["route"][:40])
        assert re.fullmatch(r"[1-5]\d\d", labels.get("status", "200")), labels
        assert len(labels.get("code", "")) <= 30, labels
    assert any(labels.get("method") == "other" for _, labels in after)
    assert server.get("/healthz").status_code == 200
    assert "obama" in {p["name"] for p in server.get("/v1/people").json()["people"]}


def route_templates(server: Server) -> set[str]:
    """The route templates the server may label a request with: the API's (from its OpenAPI
    document, ``{name}`` as the router writes it), the pages and mounted folders, and
    ``unmatched``."""
    paths = server.get("/openapi.json").json()["paths"]
    return {*(p.replace("{name}", "{name:path}") for p in paths), "/", "/docs", "/local",
            "/local/models/{name}", "/static", "/docs-assets", "/openapi.json", "unmatched"}


def people(server: Server) -> set[str]:
    response = server.get("/v1/people")
    assert response.status_code == 200, response.text
    return {p["name"] for p in response.json()["people"]}


def photo_files() -> dict[str, tuple[str, bytes]]:
    photo = examples() / "people" / "biden" / "biden.jpg"
    return {"image": (photo.name, photo.read_bytes())}


def test_a_cross_site_form_post_cannot_enroll(server: Server) -> None:
    """What any page the user visits can send without a CORS preflight: a multipart form post
    with a file. Refused whatever says it is cross-site; nothing written."""
    before = people(server)
    port = server.url.rsplit(":", 1)[1]
    for headers in ({"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
                    {"Origin": "https://evil.example"},
                    {"Origin": f"http://127.0.0.1:{int(port) + 1}"},  # same site, other port
                    {"Origin": f"https://127.0.0.1:{port}.evil.example"},
                    {"Origin": "null"},
                    {"Sec-Fetch-Site": "cross-site"},
                    {"Sec-Fetch-Site": "same-site"}):
        response = server.post("/v1/people/mallory/faces", files=photo_files(), headers=headers)
        message = assert_error(response, 403, "forbidden", 2)
        assert "origin" in message.lower(), message
        removal = server.delete("/v1/people/obama", headers=headers)
        assert_error(removal, 403, "forbidden", 2)
    assert people(server) == before


def test_the_servers_own_pages_and_plain_clients_still_write(server: Server) -> None:
    """The page's own requests (Origin of this server, under each loopback name) and clients
    that are no browser (no Origin, no Sec-Fetch-Site: curl, scripts) enroll and remove."""
    port = server.url.rsplit(":", 1)[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LocalHost:{port}"):
        for headers in ({"Host": host, "Origin": f"http://{host.lower()}",
                         "Sec-Fetch-Site": "same-origin"},
                        {"Host": host, "Sec-Fetch-Site": "same-origin"},
                        {"Host": host, "Sec-Fetch-Site": "none"},
                        {"Host": host}):
            response = server.post("/v1/people/biden/faces", files=photo_files(),
                                   headers=headers)
            assert response.status_code in (200, 201), (headers, response.text)
            removed = server.delete("/v1/people/biden", headers=headers)
            assert removed.status_code == 200, (headers, removed.text)


def test_only_this_servers_names_are_answered(server: Server) -> None:
    """DNS rebinding: a page whose name comes to resolve to 127.0.0.1 sends its requests with
    its own name in Host; they are refused (421), reads included, and nothing is removed."""
    port = server.url.rsplit(":", 1)[1]
    for host in ("rebind.attacker.example", f"rebind.attacker.example:{port}",
                 f"127.0.0.1.attacker.example:{port}", f"localhost.attacker.example:{port}",
                 f"127.0.0.1:{port}@attacker.example", f"127.0.0.1:x{port}", "[::1"):
        for method, path in (("DELETE", "/v1/people/obama"), ("GET", "/v1/people"),
                             ("GET", "/readyz"), ("GET", "/")):
            status, answer = raw_request(server, f"{method} {path} HTTP/1.1\r\nHost: {host}")
            assert status in (400, 421), (host, method, path, answer[:300])
            if status == 421:
                assert b'"code":"misdirected"' in answer and b'"exit_code":2' in answer, answer
    for host in (f"127.0.0.1:{port}", f"[::1]:{port}", f"localhost:{port}", "localhost",
                 f"localhost.:{port}"):
        status, answer = raw_request(server, f"GET /v1/people HTTP/1.1\r\nHost: {host}")
        assert status == 200 and b"obama" in answer, (host, answer[:300])


def test_allowed_hosts_and_origins_are_options(tmp_path: Path) -> None:
    """--allowed-host adds a name to answer to; --cors-origin lets one other site's pages write
    (with CORS for reading the answers); any other origin is still refused."""
    with running_server(tmp_path, "--allowed-host", "faces.example",
                        "--cors-origin", "https://app.example") as server:
        port = server.url.rsplit(":", 1)[1]
        host = {"Host": f"faces.example:{port}"}
        assert server.get("/v1/people", headers=host).status_code == 200
        allowed = {**host, "Origin": "https://app.example", "Sec-Fetch-Site": "cross-site"}
        response = server.post("/v1/people/biden/faces", files=photo_files(), headers=allowed)
        assert response.status_code == 201, response.text
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        own = {**host, "Origin": f"http://faces.example:{port}"}
        assert server.delete("/v1/people/biden", headers=own).status_code == 200
        other = {**host, "Origin": "https://other.example"}
        assert_error(server.post("/v1/people/biden/faces", files=photo_files(), headers=other),
                     403, "forbidden", 2)
        rebound = {"Host": f"other.example:{port}"}
        assert_error(server.get("/v1/people", headers=rebound), 421, "misdirected", 2)
        assert server.get("/v1/people").json()["people"] == []


def test_any_origin_with_a_token_is_refused_and_without_one_is_a_warning(
        tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token-for-the-tests-0123456789\n")
    token.chmod(0o600)
    with (pytest.raises(AssertionError) as refused,
          running_server(tmp_path, "--cors-origin", "*", "--token-file", str(token))):
        pass
    output = str(refused.value).removeprefix("facenet serve did not start: ")
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("facenet: error: "), lines
    assert "--cors-origin" in lines[0] and "token" in lines[0], lines
    for bad in (("--cors-origin", "https://app.example/path"),
                ("--cors-origin", "app.example"), ("--allowed-host", "http://faces.example"),
                ("--allowed-host", "faces.example:8000")):
        with pytest.raises(AssertionError, match="facenet: error: "), \
                running_server(tmp_path, *bad):
            pass
    with running_server(tmp_path, "--cors-origin", "*") as server:
        assert server.get("/healthz").status_code == 200
        warning = [line for line in server.log if "--cors-origin" in line]
        assert warning and "WARNING" in warning[0] and "EVERY web page" in warning[0], warning


def test_the_names_a_server_answers_to() -> None:
    """The loopback names always; the bound --host unless a wildcard address (then only the
    names given); --allowed-host names as the Host header carries them."""
    from toolchain.service.guard import allowed_hosts, host_name

    loopback = ("127.0.0.1", "localhost", "[::1]")
    for wildcard in ("0.0.0.0", "::", "::1", "localhost"):
        assert allowed_hosts(wildcard) == loopback
    assert allowed_hosts("Faces.LAN", ["x.example.", "192.168.1.5", "fe80::1", "[fe80::2]"]) \
        == (*loopback, "faces.lan", "x.example", "192.168.1.5", "[fe80::1]", "[fe80::2]")
    for bad in ("http://x.example", "x.example:8000", "x.example/", "", "a b"):
        with pytest.raises(ValueError, match="not a host name"):
            allowed_hosts("127.0.0.1", [bad])
    assert [host_name(h) for h in ("[::1]:80", "LOCALHOST.:1", "a.b", "[::1", "a:b", "a:1@b")] \
        == ["[::1]", "localhost", "a.b", None, None, None]


def test_names_that_look_alike_are_refused_or_one_person(server: Server) -> None:
    """The API applies the name rule of every path: invisible and reordering characters, control
    characters and over-long names are refused (400, nothing written); NFC and NFD ``café`` are
    one person; a DELETE strips and normalizes the name as enrollment does."""
    import unicodedata
    from urllib.parse import quote

    before = people(server)
    for name in ("obama\u202e", "bi\u200bden", "\ufeffbiden", "\x1b[31mred", "tab\tbed",
                 "n" * 129, "a\u2028b", " "):
        response = server.post(f"/v1/people/{quote(name)}/faces", files=photo_files())
        message = assert_error(response, 400, "bad_request", 2)
        assert "name" in message, message
        assert_error(server.delete(f"/v1/people/{quote(name)}"), 400, "bad_request", 2)
    # A line break in a path matches no route at all (the router's patterns stop at it).
    assert_error(server.post("/v1/people/two%0Alines/faces", files=photo_files()), 404,
                 "not_found", 3)
    assert people(server) == before
    nfc, nfd = (unicodedata.normalize(form, "café") for form in ("NFC", "NFD"))
    kit = sorted((examples() / "people" / "kit_harington").iterdir())
    for name, photo in ((nfc, kit[0]), (nfd, kit[1])):
        files = {"image": (photo.name, photo.read_bytes())}
        response = server.post(f"/v1/people/{quote(name)}/faces", files=files)
        assert response.status_code == 201 and response.json()["name"] == nfc, response.text
    listed = {p["name"]: p["embeddings"] for p in server.get("/v1/people").json()["people"]}
    assert listed[nfc] == 2 and nfd not in listed
    removed = server.delete(f"/v1/people/%20{quote(nfd)}%20")
    assert removed.status_code == 200 and removed.json() == {"name": nfc, "removed": 2}, \
        removed.text
    assert server.post("/v1/people/biden/faces", files=photo_files()).status_code == 201
    removed = server.delete("/v1/people/%20biden%20")
    assert removed.json() == {"name": "biden", "removed": 1}, removed.text
    assert people(server) == before


APP_ORIGIN = "https://app.example"


def test_the_limits_and_origins_given_on_the_command_line(tmp_path: Path) -> None:
    """``serve --max-images 1 --max-pixels 300000 --cors-origin ORIGIN``: a second image in one
    request and an image over the pixel limit are refused with their JSON errors (nothing
    enrolled), an image under it is served, and the listed origin (only it) may write from its
    pages, with the CORS headers its browser needs."""
    people_dir = examples() / "people"
    small = people_dir / "kit_harington" / "john2.jpeg"  # 630x374 = 235,620 pixels
    large = people_dir / "obama" / "obama.jpg"  # 910x1137 = 1,034,670 pixels
    with running_server(tmp_path, "--max-images", "1", "--max-pixels", "300000",
                        "--cors-origin", APP_ORIGIN) as server:
        two = [("image", (p.name, p.read_bytes())) for p in (small, small)]
        message = assert_error(server.post("/v1/people/kit/faces", files=two),
                               400, "bad_request", 2)
        assert message == "2 images in one request; at most 1"
        message = assert_error(server.recognize(large), 400, "bad_image", 3)
        assert message.endswith("910x1137 = 1,034,670 pixels exceeds this server's "
                                "300,000-pixel limit; refused"), message
        assert people(server) == set()
        assert server.recognize(small).status_code == 200
        foreign = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
        assert_error(server.post("/v1/people/kit/faces", files={"image": (small.name,
                     small.read_bytes())}, headers=foreign), 403, "forbidden", 2)
        listed = {"Origin": APP_ORIGIN, "Sec-Fetch-Site": "cross-site"}
        preflight = requests.options(
            f"{server.url}/v1/people/kit/faces",
            headers={**listed, "Access-Control-Request-Method": "POST"}, timeout=60)
        assert preflight.status_code == 200, preflight.text
        assert preflight.headers["access-control-allow-origin"] == APP_ORIGIN
        enrolled = server.post("/v1/people/kit/faces", files={"image": (small.name,
                               small.read_bytes())}, headers=listed)
        assert enrolled.status_code == 201, enrolled.text
        assert enrolled.headers["access-control-allow-origin"] == APP_ORIGIN
        assert people(server) == {"kit"}


def test_a_damaged_gallery_is_500_integrity_and_a_missing_one_503_not_ready(
        tmp_path: Path) -> None:
    """Under a running server: a stored vector edited by hand (not unit norm) makes a recognition
    answer 500 ``integrity``, and the gallery file gone makes ``/readyz`` answer 503
    ``not_ready``, each with the exit code of the same problem on the command line."""
    from helpers.gallery_backends import edit_vector

    from toolchain.core.errors import IntegrityError, MissingArtifactError

    photo = examples() / "people" / "obama" / "obama.jpg"
    with running_server(tmp_path) as server:
        assert server.enroll("obama", photo).status_code == 201
        assert server.get("/readyz").status_code == 200
        edit_vector(server.gallery, "obama", [2.0] * 128)
        message = assert_error(server.recognize(photo), 500, "integrity",
                               IntegrityError.exit_code)
        assert "'obama'" in message and "unit" in message, message
        Path(server.gallery).unlink()
        assert_error(server.get("/readyz"), 503, "not_ready", MissingArtifactError.exit_code)


def test_deeply_nested_json_is_a_bad_request_without_a_traceback(server: Server) -> None:
    """200,000 ``[`` then as many ``]``: Python's JSON parser runs out of recursion. Before: 500
    ``internal`` and two tracebacks in the log per request."""
    logged = len(server.log)
    for body in (b"[" * 200_000 + b"]" * 200_000, b'{"image": ' + b"[" * 200_000 + b"]" * 200_000
                 + b"}"):
        response = server.post("/v1/recognize", data=body,
                               headers={"Content-Type": "application/json"})
        message = assert_error(response, 400, "bad_request", 2)
        assert "nested" in message, message
    assert server.get("/healthz").status_code == 200
    assert not [line for line in server.log[logged:] if "Traceback" in line or "ERROR" in line]
