"""Embed some of the parity reference crops with one model and write them as JSON: what
:mod:`toolchain.deploy.arm64` compares between machines. It runs inside the environment under
test (numpy, ONNX Runtime; e.g. an arm64 Python under qemu), so the host side stays standard
library only.

    python -m toolchain.deploy.probe MODEL REFERENCE_NPZ ROWS OUT_JSON

``ROWS`` is a comma-separated list of rows of ``crops`` in the reference npz. The JSON holds the
L2-normalized embeddings (float32 values written exactly), the model's export format with the
parity tolerance the format table holds it to and its parent format, the ONNX Runtime version,
the machine and the seconds the session and the embedding took.
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import numpy as np

from toolchain.convert.formats import FORMATS
from toolchain.core.atomic import write_json
from toolchain.runtime.embedder import Embedder


def main(argv: list[str]) -> int:
    """Embed, write the JSON; 0 on success, 2 with one line on a wrong command line."""
    if len(argv) != 4:
        print(__doc__.split("\n\n")[1].strip(), file=sys.stderr)
        return 2
    model, reference, rows_text, out = Path(argv[0]), Path(argv[1]), argv[2], Path(argv[3])
    import onnxruntime

    rows = [int(row) for row in rows_text.split(",")]
    crops = np.load(reference)["crops"][rows]
    spec = next(s for s in FORMATS.values() if s.files == (model.name,))
    assert spec.tolerance is not None, f"{spec.name} has no parity tolerance"
    start = time.perf_counter()
    embedder = Embedder(model)
    loaded = time.perf_counter()
    embeddings = embedder.embed(crops)
    done = time.perf_counter()
    write_json(out, {
        "model": model.name, "format": spec.name, "parent": spec.parent,
        "tolerance": {"max_abs": spec.tolerance.max_abs, "min_cos": spec.tolerance.min_cos},
        "machine": platform.machine(), "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__, "rows": rows,
        "seconds_session": round(loaded - start, 3), "seconds_embed": round(done - loaded, 3),
        "embeddings": embeddings.astype(np.float64).tolist(),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
