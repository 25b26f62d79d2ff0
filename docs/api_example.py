"""The README's API example: enroll the 5-celebrity train photos, then name the faces of a photo.

Run from the repository root: ``python docs/api_example.py [ARTIFACTS_DIR] [GALLERY]``.
"""

import sys
from pathlib import Path

from toolchain import Recognizer

artifacts = Path(sys.argv[1] if len(sys.argv) > 1 else "artifacts")
gallery = Path(sys.argv[2] if len(sys.argv) > 2 else "demo_gallery.db")
photos = artifacts / "source" / "5-celebrity-faces-dataset"
query = photos / "val" / "madonna" / "httpcdnfuncheapcomwpcontentuploadsVOGUEjpg.jpg"

with Recognizer.from_artifacts(artifacts, gallery=gallery) as rec:
    rec.enroll_many([(p.parent.name, p) for p in sorted(photos.glob("train/*/*.jpg"))],
                    largest=True)
    for match in rec.recognize(query):
        print(match.label, f"{match.distance:.3f}", match.box)
