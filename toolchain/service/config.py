"""The options of one server: where the models and gallery are, its limits, its token."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from toolchain.core.errors import InputError

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
"""The names of this machine a server always answers to."""

MIB = 1 << 20

MAX_TOKEN_FILE_BYTES = 4096
"""A token file larger than this is not a token file."""

MIN_TOKEN_CHARS = 16
"""A bearer token shorter than this is refused: it could be guessed."""


@dataclass(frozen=True)
class Limits:
    """What one request may cost the server.

    Attributes:
        max_request_bytes: Largest request body, whatever its encoding (413 beyond).
        max_pixels: Largest image in pixels, checked from the header before decoding (a
            decompression bomb is refused before it is expanded).
        max_images: Most images in one enrollment request.
        timeout_s: Seconds a request may wait for and use an inference worker (504 beyond;
            an enrollment that times out writes nothing).
        workers: Inference threads: requests computed at the same time.
        queue: Requests waiting for a worker; past ``workers + queue`` requests a new one gets
            503 with ``Retry-After`` at once instead of holding memory.
    """

    max_request_bytes: int = 20 * MIB
    max_pixels: int = 40_000_000
    max_images: int = 16
    timeout_s: float = 30.0
    workers: int = 2
    queue: int = 8

    def __post_init__(self) -> None:
        for name in ("max_request_bytes", "max_pixels", "max_images", "workers"):
            if getattr(self, name) < 1:
                raise InputError(f"{name.replace('_', ' ')} must be at least 1")
        if self.queue < 0:
            raise InputError("the queue length must not be negative")
        if not self.timeout_s > 0:
            raise InputError("the request timeout must be positive")


@dataclass(frozen=True)
class ServiceConfig:
    """One server: its models, its gallery, its limits and its access rules.

    Attributes:
        artifacts: The artifacts directory: its model pack (or ``models/``) unless ``models``
            names one, and the default place of the gallery.
        gallery: The gallery file or ``postgresql://`` URL (created at start if it does not
            exist).
        limits: See :class:`Limits`.
        token: Bearer token required on ``/v1/*`` and ``/metrics`` (``None``: no token).
        cors_origins: Origins allowed to call the API from another site's pages (none by
            default: only the page the server itself serves; ``*``: any).
        allowed_hosts: The host names requests may be addressed to (``Host``), see
            :mod:`toolchain.service.guard` (default: this machine's loopback names; ``*``: any).
        threshold: Match threshold given on the command line (default: the gallery's, else the
            model's).
        detection: Keywords of the MTCNN detector (``min_face_size``, ``max_side``).
        runtime: ``onnxruntime`` or ``openvino`` (``Recognizer.load``).
        precision: ``fp32`` or ``int8``: which FaceNet model embeds.
        models: The model pack served (:mod:`toolchain.runtime.pack`, ``--models PACK``);
            ``None``: the artifacts' own, ``<artifacts>/pack`` (or ``<artifacts>/models``
            checked against ``SHA256SUMS`` in a tree exported before packs).
    """

    artifacts: Path
    gallery: Path | str
    limits: Limits = field(default_factory=Limits)
    token: str | None = field(default=None, repr=False)
    cors_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = LOOPBACK_NAMES
    threshold: float | None = None
    detection: dict[str, object] = field(default_factory=dict)
    runtime: str = "onnxruntime"
    precision: str = "fp32"
    models: Path | None = None


def read_token(path: Path) -> str:
    """The bearer token in ``path``: its one line, stripped.

    The file must be a regular file, not readable by other users (a token others can read is
    no secret), at most :data:`MAX_TOKEN_FILE_BYTES`, and hold at least :data:`MIN_TOKEN_CHARS`
    printable ASCII characters without spaces.

    Raises:
        InputError: missing, unreadable, not a regular file, readable by others, or not a token.
    """
    try:
        info = os.stat(path)
    except OSError as exc:
        raise InputError(f"token file {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"token file {path}: not a regular file")
    if info.st_mode & stat.S_IROTH:
        raise InputError(f"token file {path}: readable by every user; chmod 600 it")
    if info.st_size > MAX_TOKEN_FILE_BYTES:
        raise InputError(f"token file {path}: {info.st_size} bytes is not a token")
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"token file {path}: cannot read an ASCII token ({exc})") from exc
    if len(text) < MIN_TOKEN_CHARS or not all(33 <= ord(c) < 127 for c in text):
        raise InputError(f"token file {path}: the token must be one line of at least "
                         f"{MIN_TOKEN_CHARS} printable ASCII characters without spaces")
    return text
