"""The queries of a scale run, three kinds (:class:`Probes`), as a face search meets them.

- ``real``: every real ``val/`` face; each must still find its own person among the distractors.
- ``enrolled``: another photo of an enrolled distractor identity, as far from it as two real
  photos of one person are apart (each model says how: :attr:`~toolchain.bench.scale.distractors.
  Pool.second_photos`).
- ``new``: a synthetic identity that is not enrolled, drawn from the same model.

The pgvector sequential scan reads every vector per query, so it is timed on a subset
(:func:`scan_subset`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolchain.bench.scale.distractors import Pool, RealFaces, distractor_name

SYNTHETIC_QUERIES = 200
"""Synthetic probes of each kind, ``enrolled`` and ``new`` (the real val faces come on top)."""
SCAN_QUERIES = 50
"""Queries timed for the pgvector sequential scan (it reads every vector per query)."""


@dataclass(frozen=True)
class Probes:
    """The queries of one run, of every kind, with the person each should find (if enrolled)."""

    vectors: np.ndarray
    kinds: list[str]
    truth: list[str | None]
    targets: np.ndarray
    """The pool indices of the ``enrolled`` probes' identities, in their order."""

    def of(self, kind: str) -> np.ndarray:
        """Which probes are of ``kind`` (a boolean mask)."""
        return np.array([k == kind for k in self.kinds])

    def subset(self, indices: np.ndarray) -> Probes:
        """The probes at ``indices`` (their enrolled targets kept in order)."""
        enrolled = np.flatnonzero(self.of("enrolled"))
        return Probes(self.vectors[indices], [self.kinds[i] for i in indices],
                      [self.truth[i] for i in indices],
                      self.targets[np.isin(enrolled, indices)])


def make_probes(real: RealFaces, pool: Pool, enrolled: int, with_real: bool) -> Probes:
    """The run's probes: the real val faces (``with_real``), second photos of
    :data:`SYNTHETIC_QUERIES` of the first ``enrolled`` identities of ``pool`` (enrolled at every
    size), and its last :data:`SYNTHETIC_QUERIES` (never enrolled) as new identities."""
    rng = np.random.default_rng(17)
    targets = np.sort(rng.choice(enrolled, SYNTHETIC_QUERIES, replace=False))
    val = real.val if with_real else real.val[:0]
    names = real.val_names if with_real else []
    vectors = np.concatenate([val, pool.second_photos(targets),
                              pool.vectors[-SYNTHETIC_QUERIES:]]).astype(np.float32)
    kinds = ["real"] * len(val) + ["enrolled"] * SYNTHETIC_QUERIES + ["new"] * SYNTHETIC_QUERIES
    truth: list[str | None] = [*names, *map(distractor_name, targets),
                               *[None] * SYNTHETIC_QUERIES]
    return Probes(vectors, kinds, truth, targets)


def scan_subset(probes: Probes) -> np.ndarray:
    """Indices of the probes timed for the sequential scan: the first of each kind, about
    :data:`SCAN_QUERIES` in all."""
    kinds = list(dict.fromkeys(probes.kinds))
    each = -(-SCAN_QUERIES // len(kinds))
    return np.concatenate([np.flatnonzero(probes.of(kind))[:each] for kind in kinds])
