"""Two ``facenet serve`` replicas on one PostgreSQL gallery: what one enrolls or removes over HTTP,
the other sees at its next request (each replica's open gallery re-reads when the gallery's
revision moved), on the shared real photos.

The replicas are separate processes on their own ports (see ``service_server``); the gallery is a
fresh one on the session's throwaway PostgreSQL server (``postgres_url``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from helpers.service_server import Server, assert_error, examples, running_server

pytestmark = [pytest.mark.real, pytest.mark.slow, pytest.mark.services]

PERSON = "kit harington"


def names(response: requests.Response) -> list[str | None]:
    assert response.status_code == 200, response.text
    return [face["name"] for face in response.json()["faces"]]


def people(server: Server) -> dict[str, int]:
    response = server.get("/v1/people")
    assert response.status_code == 200, response.text
    return {p["name"]: p["embeddings"] for p in response.json()["people"]}


def test_replicas_share_enrollments_and_removals(postgres_url: str, tmp_path: Path) -> None:
    data = examples()
    enrolled = data / "people" / "kit_harington" / "john1.jpeg"
    query = data / "photos" / "johnsnow_test1.jpg"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with running_server(tmp_path / "a", gallery=postgres_url) as a, \
            running_server(tmp_path / "b", gallery=postgres_url) as b:
        assert a.url != b.url and a.process.pid != b.process.pid
        for replica in (a, b):
            ready = replica.get("/readyz")
            assert ready.status_code == 200 and ready.json()["people"] == 0, ready.text
        assert PERSON not in names(b.recognize(query))

        response = a.enroll(PERSON, enrolled)
        assert response.status_code == 201 and response.json()["added"] == 1, response.text
        assert people(b) == {PERSON: 1}
        assert PERSON in names(b.recognize(query))
        again = b.enroll(PERSON, enrolled)
        assert again.status_code == 200 and again.json()["added"] == 0, again.text
        assert again.json()["results"][0]["status"] == "already"

        assert PERSON in names(a.recognize(query))
        removed = b.delete(f"/v1/people/{PERSON}")
        assert removed.status_code == 200, removed.text
        assert removed.json() == {"name": PERSON, "removed": 1}
        assert people(a) == {}
        assert PERSON not in names(a.recognize(query))
        gone = a.delete(f"/v1/people/{PERSON}")
        assert gone.status_code == 404, gone.text


SECRET = "s3cret-Pw"


def test_readiness_never_names_the_gallery_nor_its_password(postgres_url: str,
                                                           tmp_path: Path) -> None:
    """``/readyz`` is open without the token: ready or not, it says so without the URL (a
    password in it, a host, a schema); the server's log never holds the password either."""
    from helpers.gallery_backends import pg_connection

    url = f"{postgres_url}&password={SECRET}&sslpassword={SECRET}"
    schema = postgres_url.rsplit("gallery=", 1)[1]
    with running_server(tmp_path, gallery=url) as server:
        ready = server.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.text
        for word in (SECRET, "postgresql", schema, "gallery"):
            assert word not in ready.text, ready.text
        with pg_connection(postgres_url) as (conn, _):
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
        gone = server.get("/readyz")
        message = assert_error(gone, 503, "not_ready", 6)
        for word in (SECRET, "postgresql", schema):
            assert word not in gone.text, gone.text
        assert "gallery" in message
        assert server.get("/healthz").status_code == 200
        log = "".join(server.log)
    assert SECRET not in log and "password=***" in log, log
