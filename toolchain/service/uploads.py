"""Images from a request body: multipart files or base64 strings in JSON, never URLs.

A request sends its images either as ``multipart/form-data`` files (the web page, ``curl -F``) or
as ``application/json`` with each image a base64 string (a ``data:`` URL prefix is accepted);
other fields (``face_a``, ``largest``, ...) come the same way. The server never fetches anything
a client names: a string that looks like a URL is refused, so the API cannot be used to reach
hosts behind it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request

from toolchain.service.config import Limits
from toolchain.service.engine import Upload, upload_label
from toolchain.service.errors import ApiError, BodyTooLarge

MAX_FIELD_BYTES = 64 * 1024
"""Largest non-file multipart field."""

MAX_FIELDS = 32
"""Most non-file fields in one multipart form."""

URL_LIKE = re.compile(r"^\s*([a-z][a-z0-9+.-]*://|//)", re.IGNORECASE)
"""What a URL looks like (``scheme://`` or protocol-relative ``//``); ``data:`` is not one."""

DATA_URL = re.compile(r"^data:[\w.+/-]*(;[\w=.+-]+)*;base64,", re.IGNORECASE)


@dataclass
class Body:
    """The images and the other fields of one request."""

    images: dict[str, list[Upload]] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)

    def image(self, name: str) -> Upload:
        """The one image of field ``name``.

        Raises:
            ApiError: missing, or given more than once.
        """
        found = self.images.get(name, [])
        if not found:
            raise ApiError("bad_request", f"missing image field {name!r}: a multipart file "
                           "or, in JSON, the image's bytes in base64")
        if len(found) > 1:
            raise ApiError("bad_request", f"field {name!r} takes one image, got {len(found)}")
        return found[0]

    def integer(self, name: str, minimum: int = 1) -> int | None:
        """Optional integer field ``name`` (``None`` when absent or empty).

        Raises:
            ApiError: not an integer, or below ``minimum``.
        """
        value = self.fields.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ApiError("bad_request", f"field {name!r} must be an integer")
        try:
            number = int(value)
        except ValueError:
            raise ApiError("bad_request", f"field {name!r} must be an integer, got "
                           f"{str(value)[:40]!r}") from None
        if number < minimum:
            raise ApiError("bad_request", f"field {name!r} must be at least {minimum}")
        return number

    def flag(self, name: str) -> bool:
        """Optional boolean field ``name`` (``true``/``false``, ``1``/``0``; absent: false).

        Raises:
            ApiError: not a boolean.
        """
        value = self.fields.get(name)
        if value is None or value == "":
            return False
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise ApiError("bad_request", f"field {name!r} must be true or false")


def decode_base64(field_name: str, value: object) -> bytes:
    """The bytes of one base64 image string.

    Raises:
        ApiError: not a string, a URL, or not base64.
    """
    if not isinstance(value, str):
        raise ApiError("bad_request", f"field {field_name!r} must be a base64 string")
    if URL_LIKE.match(value):
        raise ApiError("bad_request", f"field {field_name!r} looks like a URL: this server "
                       "never fetches URLs; send the image's bytes (multipart) or its base64")
    text = DATA_URL.sub("", value.strip(), count=1)
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError("bad_request", f"field {field_name!r} is not valid base64") from None


async def read_body(request: Request, image_fields: Sequence[str], limits: Limits) -> Body:
    """Parse the request's images (fields ``image_fields``) and other fields.

    Raises:
        ApiError: not multipart or JSON, malformed, an unknown file field, or too many images.
    """
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        body = await _multipart(request, image_fields, limits)
    elif kind == "application/json":
        body = await _json(request, image_fields)
    else:
        raise ApiError("unsupported_media_type", "send multipart/form-data (image files) or "
                       f"application/json (base64 images), not {kind or 'no content type'!r}")
    count = sum(len(found) for found in body.images.values())
    if count > limits.max_images:
        raise ApiError("bad_request", f"{count} images in one request; at most "
                       f"{limits.max_images}")
    return body


async def _multipart(request: Request, image_fields: Sequence[str], limits: Limits) -> Body:
    try:
        form = await request.form(max_files=limits.max_images + len(image_fields),
                                  max_fields=MAX_FIELDS, max_part_size=MAX_FIELD_BYTES)
    except (ApiError, BodyTooLarge):
        raise
    except Exception as exc:  # starlette's MultiPartException / HTTPException: malformed form
        detail = getattr(exc, "detail", None) or getattr(exc, "message", None) or exc
        raise ApiError("bad_request", f"malformed multipart form: {detail}") from None
    body = Body()
    try:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key not in image_fields:
                    raise ApiError("bad_request", f"unexpected file field {key!r}; image fields: "
                                   f"{', '.join(image_fields)}")
                label = upload_label(value.filename, key)
                body.images.setdefault(key, []).append(Upload(label, await value.read()))
            else:
                body.fields[key] = value
    finally:
        await form.close()
    return body


async def _json(request: Request, image_fields: Sequence[str]) -> Body:
    try:
        document = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise ApiError("bad_request", "the body is not valid JSON") from None
    except RecursionError:  # thousands of nested arrays or objects: the parser's stack runs out
        raise ApiError("bad_request", "the JSON body is nested too deeply (no request of this "
                       "API nests more than two levels)") from None
    if not isinstance(document, dict):
        raise ApiError("bad_request", "the JSON body must be an object")
    body = Body()
    for key, value in document.items():
        if key in image_fields:
            values = value if isinstance(value, list) else [value]
            body.images[key] = [
                Upload(key if len(values) == 1 else f"{key}[{i}]", decode_base64(key, item))
                for i, item in enumerate(values)
            ]
        else:
            body.fields[key] = value
    return body
