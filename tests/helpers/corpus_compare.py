"""Bad-input corpus, ``facenet compare``: a photo with no face, a file that is not an image, a
face number the photo does not have (exit 3, the file named), a face number below 1 (exit 2).

Registered on import (``test_bad_inputs`` imports every ``corpus_*.py``); each case is checked by
``test_bad_inputs.test_refused``: exit code, one error line, nothing in the workspace changed (in
particular no gallery created: compare needs none).
"""

from __future__ import annotations

from functools import partial

from helpers.cli import facenet
from helpers.corpus import (
    Command,
    Outcome,
    Store,
    Workspace,
    case,
    face_photo,
    jpeg_bytes,
    no_face_image,
)


def _models_and_face(ws: Workspace, store: Store | None) -> str:
    """Models only (no gallery), and one real face photo; its path."""
    assert store is not None
    ws.link_models(store)
    return str(ws.photo("face.jpg", data=jpeg_bytes(face_photo())))


@case("compare-photo-without-face", needs="models")
def _no_face(ws: Workspace, store: Store | None) -> tuple[Command, Outcome]:
    face = _models_and_face(ws, store)
    empty = ws.photo("gradient.png", no_face_image())
    return (partial(facenet, "compare", face, empty, "--artifacts", ws.artifacts),
            Outcome(3, "gradient.png", ("no face found",)))


@case("compare-not-an-image", needs="models")
def _not_image(ws: Workspace, store: Store | None) -> tuple[Command, Outcome]:
    face = _models_and_face(ws, store)
    notes = ws.photo("notes.jpg", data=b"meeting notes, not a photo\n")
    return (partial(facenet, "compare", notes, face, "--artifacts", ws.artifacts),
            Outcome(3, "notes.jpg", ("not an image",)))


@case("compare-face-number-out-of-range", needs="models")
def _out_of_range(ws: Workspace, store: Store | None) -> tuple[Command, Outcome]:
    face = _models_and_face(ws, store)
    return (partial(facenet, "compare", face, face, "--face-a", "5", "--artifacts", ws.artifacts),
            Outcome(3, "face.jpg", ("no face number 5", "1 face(s) found")))


@case("usage-compare-face-number-zero")
def _zero(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    photo = ws.photo("a.jpg", data=b"unused: refused while the command line is parsed")
    return (partial(facenet, "compare", photo, photo, "--face-b", "0",
                    "--artifacts", ws.artifacts),
            Outcome(2, "--face-b", ("greater than or equal to 1",)))
