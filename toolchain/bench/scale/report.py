"""What ``facenet bench scale`` records: :class:`ScaleReport`, its rows, its markdown tables."""

from __future__ import annotations

from dataclasses import dataclass, field

from toolchain.bench.scale.distractors import DISTRACTOR_MODELS
from toolchain.bench.scale.probes import SCAN_QUERIES, SYNTHETIC_QUERIES


@dataclass(frozen=True)
class SearchRow:
    """Latency and quality of one backend's search at one gallery size."""

    model: str
    """The distractor model (a key of :data:`DISTRACTOR_MODELS`)."""
    backend: str
    size: int
    queries: int
    p50_ms: float
    p99_ms: float
    recall_at_1: dict[str, float]
    """Per probe kind, the share of probes whose top-1 person is the exact search's."""
    found: dict[str, float]
    """Per kind with a truth (``real``, ``enrolled``): the share whose top-1 is their own."""
    ef_search: int | None = None
    """``hnsw.ef_search`` of an HNSW row."""
    build: int = 1
    """Which independent build of the HNSW index an HNSW row searched (see ``--builds``)."""
    load: tuple[float, ...] = ()
    """The machine's 1, 5 and 15 minute load averages when the row was timed (a shared machine's
    other work lengthens every latency)."""


@dataclass(frozen=True)
class BuildRow:
    """Building one backend's gallery of one size."""

    model: str
    backend: str
    size: int
    rows: int
    """Rows added to grow the gallery to ``size`` identities."""
    seconds: float
    rows_per_s: float
    index_seconds: float | None = None
    """PostgreSQL: building the HNSW index after the load (included in ``seconds``)."""
    indexed_add_rows_per_s: float | None = None
    """PostgreSQL: ``Gallery.add`` into the built index, a batch at a time."""
    insert_rows_per_s: float | None = None
    """The rows/s of the load alone (PostgreSQL: before the index is built)."""
    build: int = 1
    """Which independent build (PostgreSQL: loaded in another order, the index built anew)."""
    index_mb: float | None = None
    """PostgreSQL: the HNSW index's size, what it needs in memory to be searched fast."""
    table_mb: float | None = None
    """PostgreSQL: the embeddings table's size (the vectors and their rows)."""
    load: tuple[float, ...] = ()
    """The load averages when the build finished."""


@dataclass(frozen=True)
class BatchRow:
    """One batch recognition job over the same photos."""

    label: str
    photos: int
    seconds: float
    photos_per_s: float


@dataclass
class ScaleReport:
    """Everything ``facenet bench scale`` measured."""

    sizes: list[int]
    models: list[str]
    cpu: str
    isa: list[str]
    cores: int
    real_people: int
    real_train_faces: int
    real_val_faces: int
    search: list[SearchRow] = field(default_factory=list)
    build: list[BuildRow] = field(default_factory=list)
    batch: list[BatchRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    order_seed: int = 0
    """The permutation seed of the load order (0: the pool's order)."""
    goals: list[str] = field(default_factory=list)
    """Each goal of the scale bench: met or not, by how much, and the cause where not."""


def _load(values: tuple[float, ...]) -> str:
    return " / ".join(f"{v:.1f}" for v in values)


def markdown(report: ScaleReport) -> str:
    """The report as markdown tables."""
    lines = [
        "# Gallery search at scale, enrollment, batch recognition",
        "",
        f"CPU: {report.cpu} ({', '.join(report.isa) or 'features unknown'}), "
        f"{report.cores} cores. Load order seed: {report.order_seed or 'none (pool order)'}.",
        "",
        f"{report.real_train_faces} real train faces of {report.real_people} people plus "
        "synthetic distractor identities, one embedding each, of each model: "
        + "; ".join(f"{m}: {DISTRACTOR_MODELS[m].description}" for m in report.models)
        + f". Probes: the {report.real_val_faces} real val faces (real; in the models that hold "
        "the real faces), "
        f"{SYNTHETIC_QUERIES} second photos of enrolled distractors (enrolled) and "
        f"{SYNTHETIC_QUERIES} identities not enrolled (new); pgvector exact times about "
        f"{SCAN_QUERIES} of them. Recall@1 is against the exact search; found is the share "
        "whose top-1 person is their own.",
        "",
        *(["## Goals", "", *(f"- {goal}" for goal in report.goals), ""] if report.goals
          else []),
        "| distractors | identities | backend | build | ef_search | probes | p50 ms | p99 ms "
        "| recall@1 real | enrolled | new | found real | found enrolled | load 1/5/15 min |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| --- |",
    ]

    def share(values: dict[str, float], kind: str) -> str:
        return f"{values[kind]:.4f}" if kind in values else ""

    lines += [f"| {r.model} | {r.size:,} | {r.backend} | {r.build} | {r.ef_search or ''} "
              f"| {r.queries} "
              f"| {r.p50_ms:.2f} | {r.p99_ms:.2f} | {share(r.recall_at_1, 'real')} "
              f"| {share(r.recall_at_1, 'enrolled')} | {share(r.recall_at_1, 'new')} "
              f"| {share(r.found, 'real')} | {share(r.found, 'enrolled')} | {_load(r.load)} |"
              for r in report.search]
    lines += ["", "| distractors | identities | backend | build | rows added | seconds | rows/s "
              "| HNSW build s | index MB | table MB | add into the index, rows/s "
              "| load 1/5/15 min |",
              "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in report.build:
        index = "" if r.index_seconds is None else f"{r.index_seconds:.1f}"
        indexed = "" if r.indexed_add_rows_per_s is None else f"{r.indexed_add_rows_per_s:,.0f}"
        sizes = ["" if mb is None else f"{mb:,.0f}" for mb in (r.index_mb, r.table_mb)]
        lines.append(f"| {r.model} | {r.size:,} | {r.backend} | {r.build} | {r.rows:,} "
                     f"| {r.seconds:.1f} | {r.rows_per_s:,.0f} | {index} | {' | '.join(sizes)} "
                     f"| {indexed} | {_load(r.load)} |")
    lines += ["", "| job | photos | seconds (whole process) | photos/s |",
              "| --- | ---: | ---: | ---: |"]
    lines += [f"| {b.label} | {b.photos} | {b.seconds:.1f} | {b.photos_per_s:.2f} |"
              for b in report.batch]
    lines += ["", *(f"- {note}" for note in report.notes)]
    return "\n".join(lines) + "\n"
