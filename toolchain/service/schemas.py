"""The service's responses as pydantic models: the OpenAPI document is the contract.

The library's results are serialized once, by their ``to_dict()`` (``toolchain.runtime.faces``,
``toolchain.gallery.vectors.Candidate``); the routes return those dictionaries and declare these
models as their ``response_model``, so FastAPI checks every answer against the model and
``/openapi.json`` carries a schema for every response, errors included. The models forbid extra
fields: a field added to a ``to_dict()`` and not here fails the response's validation (an
``internal`` error), and ``tests/test_openapi_contract.py`` validates real answers against the
published document, so the two cannot drift apart unseen.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    """Every response model: no field outside the declared ones."""

    model_config = ConfigDict(extra="forbid")


class Box(_Model):
    """A face box in pixels of the upright image (``toolchain.core.boxes.box_dict``)."""

    x: float
    y: float
    width: float
    height: float


class Candidate(_Model):
    """An enrolled person and their distance to the face."""

    name: str
    distance: float = Field(description="Euclidean distance between unit embeddings, 0 to 2.")


class Face(_Model):
    """A detected face (``Face.to_dict``)."""

    box: Box
    confidence: float
    landmarks: dict[str, list[float]] = Field(
        description="The five MTCNN landmarks: left_eye, right_eye, nose, mouth_left, "
                    "mouth_right, each [x, y].")
    embedding: list[float] | None = Field(
        default=None, description="The 128-d unit embedding (only with embeddings=true).")


class Match(_Model):
    """A recognized face (``Match.to_dict``)."""

    box: Box
    confidence: float
    name: str | None = Field(description="The enrolled person, or null when unknown.")
    label: str = Field(description="The name, or `unknown`.")
    distance: float | None = Field(description="Distance to the closest person (null: empty "
                                               "gallery).")
    margin: float | None = Field(description="threshold - distance: positive when named.")
    runner_up: Candidate | None = Field(description="The closest other person.")
    candidates: list[Candidate] = Field(description="The top-k closest people, closest first.")


class ImageSize(_Model):
    """The decoded image's size."""

    width: int
    height: int


class FacesResponse(_Model):
    """``POST /v1/faces``."""

    image: ImageSize
    faces: list[Face]


class RecognizeResponse(_Model):
    """``POST /v1/recognize``."""

    image: ImageSize
    threshold: float
    threshold_source: str
    faces: list[Match]


class ComparedFace(_Model):
    """One face of a comparison (``ComparedFace.to_dict``)."""

    source: str
    face: int = Field(description="Its number in the image, 1 = the most confident.")
    faces: int = Field(description="How many faces the image holds.")
    box: Box
    confidence: float


class CompareResponse(_Model):
    """``POST /v1/compare`` (``Comparison.to_dict``)."""

    a: ComparedFace
    b: ComparedFace
    distance: float
    threshold: float
    threshold_source: str
    margin: float
    decision: Literal["same", "different"]
    crop: str
    crop_source: str


class EnrollOutcome(_Model):
    """What happened to one uploaded photo (``EnrollOutcome.to_dict``)."""

    file: str
    name: str
    status: Literal["added", "already", "no_face", "too_small", "multiple_faces", "error"]
    message: str | None
    enrolled_as: str | None
    box: Box | None


class EnrollResponse(_Model):
    """``POST /v1/people/{name}/faces``: 201 when a face was added, 200 when all were there."""

    name: str
    added: int
    results: list[EnrollOutcome]


class Person(_Model):
    """One enrolled person."""

    name: str
    embeddings: int
    photos: int
    created: str


class PeopleResponse(_Model):
    """``GET /v1/people``."""

    people: list[Person]


class RemoveResponse(_Model):
    """``DELETE /v1/people/{name}``."""

    name: str
    removed: int = Field(description="Embeddings removed.")


class HealthResponse(_Model):
    """``GET /healthz``."""

    status: Literal["ok"]


class ReadyResponse(_Model):
    """``GET /readyz``: the models are loaded and the gallery opens."""

    status: Literal["ready"]
    model: str = Field(description="The first 16 hex digits of the model's sha256.")
    people: int | None = Field(description="People enrolled; null when a token guards the API "
                                           "(this probe is open without it).")
    workers: int
    queue: int


class ErrorBody(_Model):
    """The one error shape (``toolchain.service.errors``)."""

    code: str
    status: int
    exit_code: int = Field(description="What `facenet` exits with for the same problem.")
    message: str
    details: list[str] | None = None


class ErrorResponse(_Model):
    """Every refused or failed request."""

    error: ErrorBody
