"""``facenet serve``: the HTTP API and the web page (the ``serve`` extra; no TensorFlow).

The models are loaded and the gallery opened (created if missing) before the server binds, so a
missing model or a gallery of another model is one line and its exit code, not a server that
answers 503. Only typer and the standard library at import time; FastAPI, uvicorn and the runtime
are imported in the command body.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from toolchain.cli.common import ArtifactsOption
from toolchain.cli.options import (
    GalleryOption,
    MaxDetectSideOption,
    MinFaceOption,
    ModelsOption,
    PrecisionChoice,
    PrecisionOption,
    RuntimeChoice,
    RuntimeOption,
    detection_keywords,
    threshold_value,
)
from toolchain.core.paths import DEFAULT_ARTIFACTS, Layout

app = typer.Typer()
"""``facenet serve`` (added to the root app by :mod:`toolchain.cli.app`)."""

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@app.command()
def serve(
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
    models: ModelsOption = None,
    gallery: GalleryOption = None,
    host: Annotated[str, typer.Option(
        help="Address to bind. The default is this machine only; another address exposes "
             "the API to the network (use --token-file then).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: any free one).")
                    ] = 8000,
    token_file: Annotated[Path | None, typer.Option(
        "--token-file", dir_okay=False, show_default=False,
        help="File holding a bearer token that /v1/* and /metrics then require (not readable "
             "by other users; at least 16 characters).")] = None,
    workers: Annotated[int, typer.Option(
        min=1, help="Inference threads (requests computed at once).")] = 2,
    queue: Annotated[int, typer.Option(
        min=0, help="Requests waiting for a worker; beyond, 503 with Retry-After.")] = 8,
    timeout: Annotated[float, typer.Option(
        min=0.1, help="Seconds a request may wait for and use a worker (504 beyond).")] = 30.0,
    max_request_mb: Annotated[float, typer.Option(
        min=0.01, help="Largest request body in MiB (413 beyond).")] = 20.0,
    max_pixels: Annotated[int, typer.Option(
        min=1, help="Largest image in pixels, checked before decoding (decompression bombs)."
    )] = 40_000_000,
    max_images: Annotated[int, typer.Option(
        min=1, help="Most photos in one enrollment request.")] = 16,
    cors_origin: Annotated[list[str] | None, typer.Option(
        "--cors-origin", show_default=False,
        help="An origin (scheme://host[:port]) whose pages may call the API, writes included "
             "(repeatable; none by default; * for any, refused with --token-file).")] = None,
    allowed_host: Annotated[list[str] | None, typer.Option(
        "--allowed-host", show_default=False,
        help="A host name requests may be addressed to, besides 127.0.0.1, localhost, [::1] "
             "and --host (repeatable; needed with --host 0.0.0.0: the names clients use; "
             "* for any, which lets DNS rebinding through).")] = None,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", callback=threshold_value, show_default=False,
        help="Match threshold [default: the gallery's calibrated one, else the model's].")
    ] = None,
    min_face: MinFaceOption = None,
    max_detect_side: MaxDetectSideOption = None,
    runtime: RuntimeOption = RuntimeChoice.onnxruntime,
    precision: PrecisionOption = PrecisionChoice.fp32,
) -> None:
    """Serve the HTTP API (/v1/...), the web page (/) and the offline API docs (/docs)."""
    import uvicorn

    from toolchain.service.app import create_app
    from toolchain.service.config import MIB, Limits, ServiceConfig, read_token
    from toolchain.service.engine import Engine

    origins, hosts = _access(host, cors_origin or [], allowed_host or [], token_file is not None)
    token = read_token(token_file) if token_file is not None else None
    if token is None and host not in LOOPBACK:
        log.warning("serving on %s without --token-file: anyone who reaches this address can "
                    "enroll and remove people", host)
    limits = Limits(max_request_bytes=int(max_request_mb * MIB), max_pixels=max_pixels,
                    max_images=max_images, timeout_s=timeout, workers=workers, queue=queue)
    detection = detection_keywords(min_face, max_detect_side).get("detection", {})
    config = ServiceConfig(
        artifacts=artifacts, gallery=gallery or Layout(artifacts).gallery, limits=limits,
        token=token, cors_origins=origins, allowed_hosts=hosts, threshold=threshold,
        detection=detection, runtime=runtime.value, precision=precision.value, models=models)
    engine = Engine.load(config)
    try:
        uvicorn.run(create_app(engine), host=host, port=port, log_level="info",
                    access_log=False, server_header=False, timeout_graceful_shutdown=10)
    finally:
        engine.close()


def _access(host: str, cors_origins: list[str], allowed: list[str], token: bool
            ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The checked ``--cors-origin`` and the host names to answer to (see
    :mod:`toolchain.service.guard`); warnings for what opens the server to every page or name.

    Raises:
        typer.BadParameter: an origin or a host name that is not one, or ``--cors-origin *``
            with a token (every page on the web could use the API with a token it holds).
    """
    from toolchain.service.guard import ANY, WILDCARD_ADDRESSES, allowed_hosts, origin

    for given in cors_origins:
        if origin(given) is None:
            raise typer.BadParameter(f"{given!r} is not an origin (scheme://host[:port], no "
                                     "path) nor *", param_hint="--cors-origin")
    if ANY in cors_origins and token:
        raise typer.BadParameter(
            "* with --token-file would let every web page use the API with the token it is "
            "given; name the origins that may", param_hint="--cors-origin")
    if ANY in cors_origins:
        log.warning("--cors-origin *: EVERY web page the user visits can read the gallery, "
                    "enroll and remove people through this server (no token is set); name the "
                    "origins that may instead")
    try:
        hosts = allowed_hosts(host, allowed)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--allowed-host") from exc
    if ANY in hosts:
        log.warning("--allowed-host *: requests to any host name are answered, so a page whose "
                    "name is made to resolve to this server (DNS rebinding) can use it")
    elif host.strip().lower() in WILDCARD_ADDRESSES and not allowed:
        log.warning("bound to every interface: only requests addressed to 127.0.0.1, localhost "
                    "or [::1] are answered; add --allowed-host NAME for each name or address "
                    "clients use")
    return tuple(cors_origins), hosts
