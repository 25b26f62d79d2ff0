"""The service's OpenAPI document is its contract: every route declares its responses, and the
real answers of a real ``facenet serve`` on real photos validate against the document.

The schemas come from the pydantic response models (``toolchain.service.schemas``); the answers
from the library's one serializer per result (``to_dict()``). A field one side has and the other
has not fails here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
from helpers.service_server import Server, examples, running_server
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

pytestmark = [pytest.mark.real, pytest.mark.slow, pytest.mark.services]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("openapi")) as running:
        yield running


@pytest.fixture(scope="module")
def document(server: Server) -> dict[str, Any]:
    response = server.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def check(document: dict[str, Any], method: str, route: str, response: requests.Response
          ) -> None:
    """Validate ``response`` against the schema the document declares for its status."""
    declared = document["paths"][route][method]["responses"]
    assert str(response.status_code) in declared, (route, response.status_code, list(declared))
    content = declared[str(response.status_code)]["content"]["application/json"]
    registry: Registry[Any] = Registry().with_resource(
        "urn:openapi", Resource.from_contents(document, default_specification=DRAFT202012))
    schema = {"$ref": "urn:openapi#" + content["schema"]["$ref"].removeprefix("#")}
    jsonschema.Draft202012Validator(schema, registry=registry).validate(response.json())


def test_every_route_declares_a_response_schema(document: dict[str, Any]) -> None:
    missing = []
    for route, methods in document["paths"].items():
        for method, operation in methods.items():
            for status, declared in operation["responses"].items():
                if status.startswith("2") and route != "/metrics":
                    schema = declared.get("content", {}).get("application/json", {})
                    if "$ref" not in schema.get("schema", {}):
                        missing.append(f"{method.upper()} {route} {status}")
    assert not missing, missing
    assert "ErrorResponse" in document["components"]["schemas"]


def test_real_answers_validate_against_the_document(server: Server,
                                                    document: dict[str, Any]) -> None:
    people = examples() / "people"
    photos = examples() / "photos"
    obama = sorted((people / "obama").iterdir())
    check(document, "get", "/healthz", server.get("/healthz"))
    check(document, "get", "/readyz", server.get("/readyz"))
    added = server.enroll("obama", *obama)
    assert added.status_code == 201, added.text
    check(document, "post", "/v1/people/{name}/faces", added)
    again = server.enroll("obama", *obama)
    assert again.status_code == 200, again.text
    check(document, "post", "/v1/people/{name}/faces", again)
    assert server.enroll("biden", *sorted((people / "biden").iterdir())).status_code == 201
    recognized = server.recognize(photos / "two_people.jpg")
    check(document, "post", "/v1/recognize", recognized)
    assert sorted(f["label"] for f in recognized.json()["faces"]) == ["biden", "obama"]
    for embeddings in ("true", "false"):
        found = server.post("/v1/faces", data={"embeddings": embeddings},
                            files={"image": ("obama1.jpg", (photos / "obama1.jpg").read_bytes())})
        check(document, "post", "/v1/faces", found)
        assert ("embedding" in found.json()["faces"][0]) == (embeddings == "true")
    compared = server.post("/v1/compare", files={
        "a": ("obama1.jpg", (photos / "obama1.jpg").read_bytes()),
        "b": ("obama3.jpg", (photos / "obama3.jpg").read_bytes())})
    check(document, "post", "/v1/compare", compared)
    assert compared.json()["decision"] == "same"
    check(document, "get", "/v1/people", server.get("/v1/people"))
    check(document, "delete", "/v1/people/{name}", server.delete("/v1/people/biden"))
    check(document, "delete", "/v1/people/{name}", server.delete("/v1/people/nobody"))
    not_an_image = server.post("/v1/recognize", files={"image": ("x.jpg", b"not a photo")})
    assert not_an_image.status_code == 400
    check(document, "post", "/v1/recognize", not_an_image)


def test_a_box_is_the_same_object_in_every_answer(server: Server, tmp_path: Path) -> None:
    photo = examples() / "photos" / "obama1.jpg"
    files = {"image": (photo.name, photo.read_bytes())}
    boxes = [server.post("/v1/faces", files=files).json()["faces"][0]["box"],
             server.post("/v1/recognize", files=files).json()["faces"][0]["box"]]
    assert all(set(box) == {"x", "y", "width", "height"} for box in boxes)
    assert boxes[0] == boxes[1]
