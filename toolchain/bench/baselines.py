"""The pipelines ``facenet bench runtimes`` compares ``recognize`` with (seed, face_recognition)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolchain.core.contracts import INPUT_SIZE


class SeedPipeline:
    """The seed's recognition (``utils/fmkf.py``): mtcnn package, abs() crop, Keras predict.

    Differences from the seed, all in its favour: the detector and model are built once (the
    seed builds a new ``MTCNN()`` per photo), every face is embedded (the seed takes the first
    one) and matching is nearest-neighbour on L2-normalized vectors (the seed fits an SVC on
    each call).
    """

    def __init__(self, keras_path: Path, gallery_npz: Path):
        """Build the detector, load the Keras model and the ``vectors``/``names`` gallery npz."""
        import keras

        import toolchain.convert.architecture  # noqa: F401  (registers the custom layers)
        from toolchain.convert.mtcnn_weights import package_detector

        self.detector = package_detector()
        self.model = keras.saving.load_model(keras_path, safe_mode=True, compile=False)
        with np.load(gallery_npz, allow_pickle=False) as npz:
            vectors, self.names = npz["vectors"], [str(n) for n in npz["names"]]
        self.gallery = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def recognize(self, photo: Path) -> list[str | None]:
        """The nearest gallery name of every face the mtcnn package finds in ``photo``."""
        from PIL import Image

        pixels = np.asarray(Image.open(photo).convert("RGB"))
        names: list[str | None] = []
        for result in self.detector.detect_faces(pixels):
            x1, y1, width, height = result["box"]
            x1, y1 = abs(x1), abs(y1)
            face = pixels[y1 : y1 + height, x1 : x1 + width]
            if face.size == 0:
                continue
            face = np.asarray(Image.fromarray(face).resize((INPUT_SIZE, INPUT_SIZE)))
            face = face.astype("float32")
            face = (face - face.mean()) / face.std()
            emb = self.model.predict(face[None], verbose=0)
            vector = np.asarray(emb[0] if isinstance(emb, list | tuple) else emb)[0]
            vector = vector / np.linalg.norm(vector)
            names.append(self.names[int(np.argmax(self.gallery @ vector))])
        return names


FACE_RECOGNITION_SCRIPT = """
import contextlib, io, json, sys, time
from pathlib import Path

import face_recognition
from face_recognition import face_recognition_cli as cli

spec = json.loads(Path(sys.argv[1]).read_text())
names, known = [], []
for name, path in spec["people"]:
    found = face_recognition.face_encodings(face_recognition.load_image_file(path))
    if found:
        names.append(name)
        known.append(found[0])

def job():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for photo in spec["photos"]:
            cli.test_image(photo, names, known)
    return out.getvalue().splitlines()

job()
times = []
for _ in range(spec["repeats"]):
    start = time.perf_counter()
    lines = job()
    times.append(time.perf_counter() - start)
Path(sys.argv[2]).write_text(json.dumps({
    "samples": [len(spec["photos"]) / t for t in times], "known": len(names),
    "lines": len(lines), "no_face": sum(ln.endswith(",no_persons_found") for ln in lines)}))
"""
"""The ``face_recognition`` CLI's own per-photo code (``face_recognition_cli.test_image``: photos
wider than 1600 px thumbnailed, HOG detection upsampled once, 5-point landmarks, 128-d dlib
encodings, tolerance 0.6) on the bench's photos, known people scanned once like the CLI does, one
warm-up pass; run as ``python -c`` in the baseline environment (no toolchain there)."""
