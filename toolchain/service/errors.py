"""The one JSON error shape of the service, with the exit codes the command line uses.

Every refused or failed request answers::

    {"error": {"code": "bad_image", "status": 400, "exit_code": 3,
               "message": "upload photo.jpg: not an image Pillow can read"}}

``code`` says what went wrong in HTTP terms; ``exit_code`` is what ``facenet`` exits with for the
same problem (:mod:`toolchain.core.errors`: 2 usage, 3 input, 4 integrity, 6 missing artifact,
1 anything else), so a script can treat the CLI and the API alike. ``details`` (optional) lists
per-item messages, e.g. why each photo of an enrollment was not used.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from toolchain.core.errors import (
    InputError,
    IntegrityError,
    MissingArtifactError,
    ToolchainError,
)
from toolchain.gallery.names import NameRefused

USAGE_EXIT = 2
"""The exit code of a usage error (typer's)."""


class GalleryUnavailable(ToolchainError):
    """The server's own gallery cannot be opened, read or written (a damaged file, a database
    that went away): the server's problem, not the client's input, so ``gallery`` (500), not
    ``bad_image``. The exit code is the command line's for the same gallery (3)."""

    exit_code = InputError.exit_code


@contextlib.contextmanager
def gallery_errors() -> Iterator[None]:
    """Within the block, an :class:`InputError` (other than a refused name) is the server's
    gallery failing: :class:`GalleryUnavailable`."""
    try:
        yield
    except NameRefused:
        raise
    except InputError as exc:
        raise GalleryUnavailable(str(exc)) from exc


@dataclass(frozen=True)
class ErrorKind:
    """One error code: its HTTP status and the CLI exit code of the same problem."""

    status: int
    exit_code: int


ERROR_KINDS: dict[str, ErrorKind] = {
    "bad_request": ErrorKind(400, USAGE_EXIT),
    "bad_image": ErrorKind(400, InputError.exit_code),
    "unauthorized": ErrorKind(401, USAGE_EXIT),
    "forbidden": ErrorKind(403, USAGE_EXIT),
    "not_found": ErrorKind(404, InputError.exit_code),
    "method_not_allowed": ErrorKind(405, USAGE_EXIT),
    "too_large": ErrorKind(413, InputError.exit_code),
    "unsupported_media_type": ErrorKind(415, USAGE_EXIT),
    "misdirected": ErrorKind(421, USAGE_EXIT),
    "integrity": ErrorKind(500, IntegrityError.exit_code),
    "gallery": ErrorKind(500, GalleryUnavailable.exit_code),
    "internal": ErrorKind(500, ToolchainError.exit_code),
    "not_ready": ErrorKind(503, MissingArtifactError.exit_code),
    "busy": ErrorKind(503, ToolchainError.exit_code),
    "timeout": ErrorKind(504, ToolchainError.exit_code),
}
"""Every error code the service answers with."""


class ApiError(Exception):
    """A request the service refuses or cannot serve; becomes the JSON error response."""

    def __init__(self, code: str, message: str, *, details: list[str] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.kind = ERROR_KINDS[code]
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON document of the response."""
        error: dict[str, Any] = {"code": self.code, "status": self.kind.status,
                                 "exit_code": self.kind.exit_code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}


class BodyTooLarge(Exception):
    """The request body passed the size limit while it was being read."""


def from_toolchain(exc: ToolchainError) -> ApiError:
    """The API error of a library error (a refused name is a bad request, any other
    :class:`InputError` the client's image)."""
    if isinstance(exc, NameRefused):
        return ApiError("bad_request", str(exc))
    if isinstance(exc, GalleryUnavailable):
        return ApiError("gallery", str(exc))
    if isinstance(exc, InputError):
        return ApiError("bad_image", str(exc))
    if isinstance(exc, IntegrityError):
        return ApiError("integrity", str(exc))
    if isinstance(exc, MissingArtifactError):
        return ApiError("not_ready", str(exc))
    return ApiError("internal", str(exc))


STATUS_CODES: dict[int, str] = {400: "bad_request", 401: "unauthorized", 404: "not_found",
                                405: "method_not_allowed", 413: "too_large",
                                415: "unsupported_media_type", 422: "bad_request"}
"""The code of an HTTP error raised by the framework itself (unknown route, wrong method)."""
