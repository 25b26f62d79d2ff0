"""The model fingerprint galleries are bound to, read without ONNX Runtime or the ``onnx`` package.

Every FaceNet export of the toolchain records the sha256 of the weights manifest it was made from
in its ONNX ``metadata_props`` (``weights_manifest_sha256``); :class:`toolchain.runtime.embedder.
Embedder` fingerprints a model by it, so fp32 and int8 models, on either runtime, and re-exports
of the same weights share their galleries. ``facenet model verify`` compares galleries with the same
value, found here in the model's protobuf bytes: ``metadata_props`` (field 14 of ``ModelProto``)
is serialized after the graph, so the entry lies in the file's tail.
"""

from __future__ import annotations

import re
from pathlib import Path

WEIGHTS_KEY = "weights_manifest_sha256"
"""The metadata key of the weights manifest's sha256."""

TAIL_BYTES = 1 << 20
"""How much of the end of a model file is searched for the entry."""

_ENTRY = re.compile(
    rb"\x0a" + bytes([len(WEIGHTS_KEY)]) + WEIGHTS_KEY.encode() + rb"\x12\x40([0-9a-f]{64})"
)
"""``StringStringEntryProto{key: WEIGHTS_KEY, value: <64 hex digits>}`` on the wire."""


def recorded_weights_sha256(model: Path) -> str | None:
    """The ``weights_manifest_sha256`` an ONNX model records, or ``None``."""
    with open(model, "rb") as fh:
        fh.seek(0, 2)
        fh.seek(max(0, fh.tell() - TAIL_BYTES))
        found = _ENTRY.findall(fh.read())
    return found[-1].decode() if found else None


def model_fingerprint(model: Path, file_sha256: str) -> str:
    """What a gallery made with ``model`` records: its weights' sha256, else ``file_sha256``."""
    return recorded_weights_sha256(model) or file_sha256
