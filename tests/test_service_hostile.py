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

import pytest
from service_server import Server, examples, running_server

pytestmark = [pytest.mark.real, pytest.mark.slow]

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
