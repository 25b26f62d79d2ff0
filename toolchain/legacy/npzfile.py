"""Byte-for-byte deterministic ``.npz`` files.

``np.savez`` stamps the current time into every zip entry, so two dumps of the same arrays differ.
Here the zip is written with a fixed entry date, sorted keys and no compression; ``np.load`` reads
it like any ``.npz`` (with ``allow_pickle=False``).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping

import numpy as np

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Serialize ``arrays`` (name -> array, no object dtypes) as deterministic npz bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for key in sorted(arrays):
            array = np.asarray(arrays[key])
            if array.dtype.hasobject:
                raise ValueError(f"array {key!r} has an object dtype; refusing to pickle it")
            member = io.BytesIO()
            np.lib.format.write_array(member, array, allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()
