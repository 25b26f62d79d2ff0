"""The FastAPI application: routes, limits, the token, metrics, the page and the offline docs.

FastAPI on uvicorn because it is the Python ecosystem's default for JSON APIs: an ASGI server
that keeps answering (health, metrics, 503s) while inference runs on the worker threads, request
parsing from Starlette (multipart streamed to a spooled file, not held whole in memory), and an
OpenAPI document generated from the routes. Its ``/docs`` page normally loads Swagger UI from a
CDN; here ``/docs`` is the package's own page loading the Swagger UI files that the pinned
``fastapi-offline`` wheel ships, so it works with no network.

Middleware, outermost first: metrics (status and latency of every answer), security headers
(a strict Content-Security-Policy: scripts only from this server, no inline script), the guard
(421 for a ``Host`` this server does not answer to, 403 for a write from another origin's page:
:mod:`toolchain.service.guard`), the body limit (413 from the ``Content-Length`` or as soon as
the streamed body passes the limit), and CORS only when origins are configured. The bearer
token, when set, guards ``/v1/*`` and ``/metrics``; ``/healthz``, ``/readyz`` (without the people
count then), the page, its models (published weights, no data) and the docs stay open.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from toolchain.core.contracts import MTCNN_FILES, ONNX_FILE
from toolchain.core.errors import ToolchainError
from toolchain.core.paths import Layout
from toolchain.gallery.names import NameRefused, person_name
from toolchain.service.engine import Engine
from toolchain.service.errors import STATUS_CODES, ApiError, BodyTooLarge, from_toolchain
from toolchain.service.guard import Guard
from toolchain.service.metrics import Metrics, method_label
from toolchain.service.pool import Busy, Ticket, TimedOut
from toolchain.service.schemas import (
    CompareResponse,
    EnrollResponse,
    ErrorResponse,
    FacesResponse,
    HealthResponse,
    PeopleResponse,
    ReadyResponse,
    RecognizeResponse,
    RemoveResponse,
)
from toolchain.service.uploads import read_body

log = logging.getLogger(__name__)

T = TypeVar("T")

API_VERSION = "v1"
WEB_DIR = Path(str(files("toolchain.service") / "web"))
"""The page at ``/`` and the docs page (package data)."""

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; media-src 'self' blob: mediastream:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""Scripts and connections only to this server: even an injected tag could run nothing."""

LOCAL_PREFIX = "/local"
"""The page that recognizes inside the browser (``web/local/``, ONNX Runtime Web) and its files."""

LOCAL_CONTENT_SECURITY_POLICY = CONTENT_SECURITY_POLICY.replace(
    "script-src 'self'", "script-src 'self' 'wasm-unsafe-eval'")
"""The same policy, letting the page compile ONNX Runtime's WebAssembly (no other script)."""

LOCAL_ISOLATION = [(b"cross-origin-opener-policy", b"same-origin"),
                   (b"cross-origin-embedder-policy", b"require-corp")]
"""Cross-origin isolation of the local page: ONNX Runtime Web's threads need SharedArrayBuffer."""

LOCAL_MODELS = frozenset({ONNX_FILE, *MTCNN_FILES.values()})
"""The models the local page may fetch from the served models' folder (the pack's)."""


def swagger_assets() -> Path:
    """The folder of Swagger UI's JavaScript and CSS in the ``fastapi-offline`` wheel."""
    return Path(str(files("fastapi_offline") / "static"))


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope["headers"]:
            if key == b"content-length" and (not value.isdigit() or int(value) > self.limit):
                await send_error(too_large(self.limit), scope, send)
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge
            return message

        await self.app(scope, counted, send)


def too_large(limit: int) -> ApiError:
    """The 413 error."""
    return ApiError("too_large", f"the request body is larger than this server's limit of "
                    f"{limit:,} bytes")


async def send_error(error: ApiError, scope: Scope, send: Send) -> None:
    """Answer with ``error`` outside of the routes (from a middleware)."""
    response = JSONResponse(error.body(), status_code=error.kind.status, headers=error.headers)
    await response(scope, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


class Observe:
    """Count and time every answer by route template and status; add the security headers."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                path = str(scope.get("path", ""))
                local = path == LOCAL_PREFIX or path.startswith(LOCAL_PREFIX + "/")
                policy = LOCAL_CONTENT_SECURITY_POLICY if local else CONTENT_SECURITY_POLICY
                headers += [(b"content-security-policy", policy.encode()),
                            (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"no-referrer"),
                            *(LOCAL_ISOLATION if local else [])]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(method_label(scope["method"]), template,
                                         str(status)).inc()
            self.metrics.latency.labels(template).observe(time.perf_counter() - start)


BEARER = HTTPBearer(auto_error=False, description="The token of `facenet serve --token-file` "
                    "(only when the server was started with one).")


class Authorize:
    """The dependency that checks the bearer token (in constant time), if one is set."""

    def __init__(self, token: str | None):
        self.token = token.encode() if token is not None else None

    async def __call__(
        self, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    ) -> None:
        if self.token is None:
            return
        given = credentials.credentials.encode() if credentials is not None else b""
        if not hmac.compare_digest(given, self.token):
            raise ApiError("unauthorized", "a valid bearer token is required "
                           "(Authorization: Bearer <token>)",
                           headers={"WWW-Authenticate": "Bearer"})


def image_body(fields: dict[str, str], files_: dict[str, str], many: bool = False
               ) -> dict[str, Any]:
    """The OpenAPI request body of an image endpoint: multipart files or base64 JSON."""
    binary = {"type": "string", "format": "binary"}
    text = {"type": "string", "contentEncoding": "base64"}
    multipart: dict[str, Any] = {}
    as_json: dict[str, Any] = {}
    for name, description in files_.items():
        multipart[name] = ({"type": "array", "items": binary} if many else binary) | {
            "description": description}
        as_json[name] = ({"type": "array", "items": text} if many else text) | {
            "description": description + " (base64; a data: URL prefix is accepted)"}
    for name, description in fields.items():
        multipart[name] = as_json[name] = {"type": "string", "description": description}
    required = list(files_)
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": multipart,
                                           "required": required}},
        "application/json": {"schema": {"type": "object", "properties": as_json,
                                        "required": required}},
    }}}


IMAGE_ERRORS = (400, 401, 403, 413, 415, 500, 503, 504)
"""The statuses an image endpoint may answer with besides its success."""


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of these error statuses and of 421 (a ``Host`` this server does
    not answer to, on every route): each the one error shape."""
    return {status: {"model": ErrorResponse, "description": "The error shape of the service."}
            for status in (*statuses, 421)}


def create_app(engine: Engine) -> FastAPI:
    """The application serving ``engine`` (loaded; see :meth:`Engine.load`)."""
    config = engine.config
    limits = config.limits
    metrics = Metrics(lambda: engine.pool.held, engine.pool.capacity)
    app = FastAPI(
        title="facenet", version=API_VERSION,
        summary="Face detection, recognition, comparison and enrollment (FaceNet on ONNX "
                "Runtime).",
        docs_url=None, redoc_url=None, swagger_ui_oauth2_redirect_url=None,
    )
    app.state.engine = engine
    guarded = [Depends(Authorize(config.token))]

    async def run(job: Callable[[Ticket], T]) -> T:
        try:
            return await engine.pool.run(job, limits.timeout_s)
        except Busy as exc:
            raise ApiError("busy", str(exc),
                           headers={"Retry-After": str(exc.retry_after)}) from None
        except TimedOut as exc:
            raise ApiError("timeout", str(exc)) from None

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        metrics.errors.labels(exc.code).inc()
        return JSONResponse(exc.body(), status_code=exc.kind.status, headers=exc.headers)

    @app.exception_handler(ToolchainError)
    async def toolchain_error(request: Request, exc: ToolchainError) -> JSONResponse:
        return await api_error(request, from_toolchain(exc))

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(request: Request, _: BodyTooLarge) -> JSONResponse:
        return await api_error(request, too_large(limits.max_request_bytes))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
                   for e in exc.errors()]
        return await api_error(request, ApiError("bad_request", "invalid request",
                                                 details=details))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = STATUS_CODES.get(exc.status_code, "bad_request")
        return await api_error(request, ApiError(code, str(exc.detail),
                                                 headers=dict(exc.headers or {})))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return await api_error(request, ApiError(
            "internal", f"internal error ({type(exc).__name__}); the server log has details"))

    @app.get("/healthz", tags=["operations"], summary="The process is up.",
             response_model=HealthResponse)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"],
             summary="Models loaded and the gallery opens (503 otherwise).",
             response_model=ReadyResponse, responses=errors(503))
    async def readyz() -> dict[str, Any]:
        try:
            described = await asyncio.to_thread(engine.readiness)
        except ToolchainError as exc:
            log.warning("not ready: %s", exc)
            raise ApiError("not_ready", "the gallery cannot be opened; the server log says "
                           "why") from None
        if config.token is not None:  # open without the token: no count of the data it guards
            described["people"] = None
        return {"status": "ready", **described}

    @app.get("/metrics", tags=["operations"], dependencies=guarded,
             summary="Prometheus text: requests, latencies, faces, errors, worker slots.",
             response_class=Response, responses={
                 200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                       "description": "Prometheus text exposition format 0.0.4."},
                 **errors(401)})
    async def metrics_text() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.post(f"/{API_VERSION}/faces", tags=["faces"], dependencies=guarded,
              summary="Detect and embed every face of an image.",
              response_model=FacesResponse, response_model_exclude_unset=True,
              responses=errors(*IMAGE_ERRORS),
              openapi_extra=image_body({"embeddings": "true: include each 128-d embedding"},
                                       {"image": "The photo"}))
    async def faces(request: Request) -> dict[str, Any]:
        body = await read_body(request, ["image"], limits)
        upload, embeddings = body.image("image"), body.flag("embeddings")
        result = await run(lambda _: engine.faces(upload))
        metrics.faces.labels("/v1/faces").inc(len(result.faces))
        return {"image": {"width": result.size[0], "height": result.size[1]},
                "faces": [f.to_dict(embeddings) for f in result.faces]}

    @app.post(f"/{API_VERSION}/recognize", tags=["faces"], dependencies=guarded,
              summary="Who is in an image: every face with a name or unknown.",
              response_model=RecognizeResponse, responses=errors(*IMAGE_ERRORS),
              openapi_extra=image_body({}, {"image": "The photo"}))
    async def recognize(request: Request) -> dict[str, Any]:
        body = await read_body(request, ["image"], limits)
        upload = body.image("image")
        result = await run(lambda _: engine.recognize(upload))
        metrics.faces.labels("/v1/recognize").inc(len(result.matches))
        return {"image": {"width": result.size[0], "height": result.size[1]},
                "threshold": result.threshold,
                "threshold_source": result.threshold_source.value,
                "faces": [m.to_dict() for m in result.matches]}

    @app.post(f"/{API_VERSION}/compare", tags=["faces"], dependencies=guarded,
              summary="Are the faces of two images the same person?",
              response_model=CompareResponse, responses=errors(*IMAGE_ERRORS),
              openapi_extra=image_body(
                  {"face_a": "Face number in image a, 1 = most confident (default: largest)",
                   "face_b": "Face number in image b (default: largest)"},
                  {"a": "Photo A", "b": "Photo B"}))
    async def compare(request: Request) -> dict[str, Any]:
        body = await read_body(request, ["a", "b"], limits)
        a, b = body.image("a"), body.image("b")
        face_a, face_b = body.integer("face_a"), body.integer("face_b")
        result = await run(lambda _: engine.compare(a, b, face_a, face_b))
        return result.to_dict()

    @app.post(f"/{API_VERSION}/people/{{name:path}}/faces", tags=["people"],
              dependencies=guarded, summary="Enroll a person from one or more photos.",
              status_code=201, response_model=EnrollResponse,
              responses={200: {"model": EnrollResponse,
                               "description": "Every face was enrolled already."},
                         **errors(*IMAGE_ERRORS)},
              openapi_extra=image_body(
                  {"largest": "true: enroll the largest face of a photo with several"},
                  {"image": "Photos of the person, one face each"}, many=True))
    async def enroll(name: str, request: Request, response: Response) -> dict[str, Any]:
        try:
            name = person_name(name)
        except NameRefused as exc:
            raise ApiError("bad_request", str(exc)) from None
        body = await read_body(request, ["image"], limits)
        uploads = body.images.get("image", [])
        if not uploads:
            raise ApiError("bad_request", "missing image field 'image': one or more photos")
        largest = body.flag("largest")
        result = await run(lambda ticket: engine.enroll(name, uploads, largest, ticket))
        metrics.enrolled.inc(result.added)
        if not any(o.ok for o in result.outcomes):
            raise ApiError("bad_image", f"no face of these {len(uploads)} photo(s) was "
                           f"enrolled as {name!r}", details=[o.message for o in result.outcomes])
        if not result.added:
            response.status_code = 200
        return {"name": result.name, "added": result.added,
                "results": [o.to_dict() for o in result.outcomes]}

    @app.get(f"/{API_VERSION}/people", tags=["people"], dependencies=guarded,
             summary="Everyone enrolled, by name.", response_model=PeopleResponse,
             responses=errors(401, 500, 503, 504))
    async def people() -> dict[str, Any]:
        found = await run(lambda _: engine.people())
        return {"people": [p.to_dict() for p in found]}

    @app.delete(f"/{API_VERSION}/people/{{name:path}}", tags=["people"], dependencies=guarded,
                summary="Remove a person and all their faces.", response_model=RemoveResponse,
                responses=errors(400, 401, 403, 404, 500, 503, 504))
    async def remove(name: str) -> dict[str, Any]:
        stored, removed = await run(lambda ticket: engine.remove(name, ticket))
        if removed is None:
            raise ApiError("not_found", f"no person named {stored!r}")
        return {"name": stored, "removed": removed}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> FileResponse:
        return FileResponse(WEB_DIR / "docs.html")

    @app.get(LOCAL_PREFIX, include_in_schema=False)
    async def local_page() -> RedirectResponse:
        return RedirectResponse(f"{LOCAL_PREFIX}/")

    @app.get(f"{LOCAL_PREFIX}/models/{{name}}", include_in_schema=False)
    async def local_model(name: str) -> FileResponse:
        folder = engine.models or Layout(config.artifacts).models_dir
        if name not in LOCAL_MODELS or not (folder / name).is_file():
            raise ApiError("not_found", f"no model named {name!r} for the local page")
        return FileResponse(folder / name, media_type="application/octet-stream")

    app.mount(f"{LOCAL_PREFIX}/", StaticFiles(directory=WEB_DIR / "local", html=True),
              name="local")
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    app.mount("/docs-assets", StaticFiles(directory=swagger_assets()), name="docs-assets")

    if config.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins),
                           allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(BodyLimit, limit=limits.max_request_bytes)
    app.add_middleware(Guard, hosts=config.allowed_hosts, origins=config.cors_origins)
    app.add_middleware(Observe, metrics=metrics)
    return app

