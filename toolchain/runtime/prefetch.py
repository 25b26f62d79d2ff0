"""Photos read and decoded one ahead of the face pipeline, in a background thread.

Reading a file, hashing it and decoding the JPEG (:func:`~toolchain.runtime.images.read_image`)
happen in Pillow's, hashlib's and the kernel's C code with the GIL released, as do the ONNX Runtime
sessions that detect and embed faces. So while the pipeline works on one photo, the next one is
decoded beside it: the decode of a real-size photo is about a quarter of its time in the pipeline,
and it no longer adds up with the rest. The results are exactly those of reading the photos one by
one, in order (the same function decodes them); at most :data:`AHEAD` decoded photos wait, so
memory stays bounded whatever the number of photos.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from toolchain.core.errors import InputError
from toolchain.runtime.images import LoadedImage, read_image

AHEAD = 1
"""Photos decoded ahead of the one the pipeline works on."""

Decoded = tuple[Path, LoadedImage | None, str | None]
"""A photo's path, its pixels, or why it cannot be used (the :class:`InputError`'s line)."""


def _decode(path: Path) -> Decoded:
    try:
        return path, read_image(path), None
    except InputError as exc:
        return path, None, str(exc)


def read_ahead(paths: Iterable[Path | str], ahead: int = AHEAD) -> Iterator[Decoded]:
    """Each photo of ``paths`` decoded (or its error), in order, ``ahead`` photos decoded in a
    background thread while the caller works on the current one.

    Errors other than :class:`InputError` (a bug, ``MemoryError``) are raised where that photo
    would have been yielded. Closing the iterator early drops the photos decoded ahead.
    """
    pending: deque[Future[Decoded]] = deque()
    todo = iter(paths)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as pool:
        try:
            for raw in todo:
                pending.append(pool.submit(_decode, Path(raw)))
                if len(pending) > ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
