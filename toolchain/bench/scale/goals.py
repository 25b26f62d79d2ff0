"""The scale bench's goals, judged from its rows: met or not, by how much, the cause where not.

At the largest size measured: bulk loads into PostgreSQL of at least :data:`LOAD_GOAL_ROWS_S`
rows/s, and one ``hnsw.ef_search`` at which every independent build of the index finds the exact
search's person first for at least :data:`RECALL_GOAL` of every probe kind within a p99 of
:data:`P99_GOAL_MS` (reproducible: the same setting on every build, not the luckiest build).
"""

from __future__ import annotations

from collections import defaultdict

from toolchain.bench.scale.report import ScaleReport, SearchRow

LOAD_GOAL_ROWS_S = 20_000.0
RECALL_GOAL = 0.99
P99_GOAL_MS = 20.0


def _loads(rows: list[SearchRow]) -> str:
    loads = [r.load[0] for r in rows if r.load]
    return (f"1-minute load averages {min(loads):.1f} to {max(loads):.1f} on "
            "the machine while timed") if loads else "load not recorded"


def judge(report: ScaleReport) -> list[str]:
    """One line per goal and distractor model, at the largest size of ``report``."""
    size = max(report.sizes)
    lines = []
    for row in report.build:
        if row.size == size and row.backend == "postgresql" and row.insert_rows_per_s:
            rate = row.insert_rows_per_s
            fast = rate >= LOAD_GOAL_ROWS_S
            load = " / ".join(f"{v:.1f}" for v in row.load)
            lines.append(
                f"bulk load, {row.model}, build {row.build}, {row.rows:,} rows: "
                f"{'met' if fast else 'NOT met'}: {rate:,.0f} rows/s, "
                f"{rate / LOAD_GOAL_ROWS_S:.2f}x the goal of {LOAD_GOAL_ROWS_S:,.0f}"
                + ("" if fast else f" (load averages {load} when "
                   "done: the server and the client share 2 busy cores)"))
    for model in report.models:
        by_ef: dict[int, list[SearchRow]] = defaultdict(list)
        for r in report.search:
            if r.model == model and r.size == size and r.ef_search is not None:
                by_ef[r.ef_search].append(r)
        if not by_ef:
            continue
        builds = len({r.build for rows in by_ef.values() for r in rows})
        summary = {ef: (min(min(r.recall_at_1.values()) for r in rows),
                        max(r.p99_ms for r in rows)) for ef, rows in sorted(by_ef.items())}
        met = [ef for ef, (recall, p99) in summary.items()
               if recall >= RECALL_GOAL and p99 <= P99_GOAL_MS]
        table = "; ".join(f"ef_search {ef}: worst recall@1 {recall:.4f}, worst p99 {p99:.1f} ms"
                          for ef, (recall, p99) in summary.items())
        head = f"search at {size:,}, {model}, {builds} independent build(s)"
        if met:
            lines.append(f"{head}: met at ef_search {met[0]} ({table})")
            continue
        recalled = [ef for ef, (recall, _) in summary.items() if recall >= RECALL_GOAL]
        if recalled:
            ef = recalled[0]
            cause = (f"recall reached at ef_search {ef} but its p99 is "
                     f"{summary[ef][1] - P99_GOAL_MS:.1f} ms over {P99_GOAL_MS:.0f} ms; "
                     f"{_loads(by_ef[ef])}")
        else:
            ef = max(summary, key=lambda e: summary[e][0])
            cause = (f"no ef_search measured reaches recall@1 {RECALL_GOAL} on every build and "
                     f"kind: best {summary[ef][0]:.4f} at ef_search {ef}, "
                     f"{RECALL_GOAL - summary[ef][0]:.4f} short (the graph misses the exact "
                     "nearest person of those probes)")
        lines.append(f"{head}: NOT met: {cause} ({table})")
    return lines
