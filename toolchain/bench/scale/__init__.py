"""``facenet bench scale``: gallery search at 10k, 100k and 1M identities, enrollment rows/s
into each backend, and batch photos/s on one process vs Ray.

The gallery holds the real faces of the 5-celebrity ``train/`` photos plus synthetic distractor
identities, one embedding each, as MegaFace adds distractors to a probe set; each distractor
model is measured on its own. For each size and backend: p50/p99 latency of one query and, per
probe kind, recall@1 against the exact search; the enrollment rate of each backend; and the
batch photos/s of ``facenet recognize`` against ``facenet batch recognize`` on Ray.

:mod:`.distractors` draws the gallery's identities (the real faces and the
:data:`~.distractors.DISTRACTOR_MODELS`), :mod:`.probes` the queries, :mod:`.search` builds and
searches SQLite and PostgreSQL (exact and HNSW), :mod:`.batch` times the batch jobs,
:mod:`.report` holds the rows and renders the markdown, and :mod:`.run` runs it all and writes
``reports/bench_scale.{json,md}``.
"""

from toolchain.bench.scale.distractors import DISTRACTOR_MODELS
from toolchain.bench.scale.report import markdown
from toolchain.bench.scale.run import run_scale

__all__ = ["DISTRACTOR_MODELS", "markdown", "run_scale"]
