"""The README's video example: enroll the shared people, then track who appears in the clip.

Run from the repository root:
``python docs/video_example.py [ARTIFACTS_DIR] [GALLERY] [SHARED_EXAMPLES_DIR]``.
"""

import sys
from pathlib import Path

from toolchain import Recognizer, track

artifacts = Path(sys.argv[1] if len(sys.argv) > 1 else "artifacts")
gallery = Path(sys.argv[2] if len(sys.argv) > 2 else "video_gallery.db")
shared = Path(sys.argv[3] if len(sys.argv) > 3 else "../shared/data/face_recognition_examples")

with Recognizer.from_artifacts(artifacts, gallery=gallery) as rec:
    rec.enroll_many([(p.parent.name, p) for p in sorted(shared.glob("people/*/*"))])
    run = track(rec, shared / "video" / "short_hamilton_clip.mp4", every=3)
    for frame in run:  # one FrameResult per decoded frame
        if frame.index % 100 == 0:
            print(frame.index, [(face.track_id, face.label) for face in frame.faces])
    for found in run.summary().tracks:
        median = "-" if found.median_distance is None else f"{found.median_distance:.3f}"
        print(f"track {found.track_id}: {found.label}, frames {found.first_frame}-"
              f"{found.last_frame} ({found.first_time:.2f}-{found.last_time:.2f} s), "
              f"median distance {median}")
