"""The identities of the scale galleries: the real faces and the synthetic distractor models.

The real faces are the 5-celebrity photos embedded by the recognizer, one face per photo, as
``facenet enroll --largest`` would: ``train/`` enrolled, ``val/`` as probes. How hard a gallery is
to search depends on the distractors' intrinsic dimensionality, so each model of
:data:`DISTRACTOR_MODELS` is measured on its own: ``face-like`` lies on a manifold of the
dimensionality measured for FaceNet embeddings, ``gaussian`` fills nearly all 128 dimensions (the
worst case for a graph index). Both crowd the region of the sphere the real faces occupy (random
unit vectors would sit near-orthogonal to everything and make search trivially easy), and
:func:`two_nn_dimension` measures each model's dimensionality for the report. Each model makes
its own second photos of an identity (:attr:`Pool.second_photos`), as far from it as two real
photos of one person are apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from toolchain.core.paths import Layout
from toolchain.gallery import Entry
from toolchain.gallery.ranking import pairwise_distances

ISOTROPIC = 1.0
"""Gaussian distractors: share of the mean variance added on the diagonal of the fitted
covariance (the five real people alone would make distractors closer to each other than
different real people are)."""
LATENT_DIM = 12
"""Face-like distractors: dimensions of the latent space mapped onto the sphere. FaceNet's
128-d embeddings have an intrinsic dimensionality of 9 to 12 (Gong, Boddeti and Jain, "On the
Intrinsic Dimensionality of Image Representations", CVPR 2019); the upper end is taken (a
higher dimensionality is harder for a graph index)."""
LATENT_FREQUENCY = 0.5
"""Face-like distractors: scale of the map's random frequencies. Low enough that the manifold's
measured dimensionality (:func:`two_nn_dimension`) stays near :data:`LATENT_DIM` from a hundred
to twenty thousand points; higher folds it so much that it looks higher-dimensional."""


@dataclass(frozen=True)
class RealFaces:
    """The real embeddings: train entries (enrolled) and labelled val queries."""

    train: list[Entry]
    val: np.ndarray
    val_names: list[str]

    def pair_distances(self) -> tuple[np.ndarray, np.ndarray]:
        """Distances of every pair of train faces, and whether each pair is one person."""
        vectors = np.stack([e.vector for e in self.train])
        same = np.array([[a.name == b.name for b in self.train] for a in self.train])
        upper = np.triu_indices(len(self.train), 1)
        return pairwise_distances(vectors, vectors)[upper], same[upper]

    @property
    def genuine_median(self) -> float:
        """The median distance between two train faces of one person."""
        distances, same = self.pair_distances()
        return float(np.median(distances[same]))


def real_faces(layout: Layout) -> RealFaces:
    """Embed the largest face of every 5-celebrity photo with the recognizer."""
    from toolchain.core.preprocess import largest_face
    from toolchain.runtime.recognizer import Recognizer

    dataset = layout.dataset_dir
    rec = Recognizer.from_artifacts(layout.root, gallery=None)
    train: list[Entry] = []
    val: list[np.ndarray] = []
    names: list[str] = []
    for split in ("train", "val"):
        photos = sorted(p for p in (dataset / split).glob("*/*") if p.is_file())
        for photo in rec.analyze(photos):
            if not photo.faces or photo.image is None:
                continue
            face = photo.faces[largest_face([f.box for f in photo.faces])]
            if split == "train":
                train.append(Entry(photo.path.parent.name, face.embedding, str(photo.path),
                                   photo.image.sha256, face.box, face.confidence))
            else:
                val.append(face.embedding)
                names.append(photo.path.parent.name)
    return RealFaces(train, np.stack(val), names)


@dataclass(frozen=True)
class Pool:
    """A model's distractor identities, and how to take another photo of some of them."""

    vectors: np.ndarray
    """``(N, D)`` unit vectors, one per identity."""
    second_photos: Callable[[np.ndarray], np.ndarray]
    """``second_photos(indices)``: one more unit vector of each identity at those indices."""


def gaussian_pool(real: RealFaces, count: int, seed: int) -> Pool:
    """``count`` unit vectors from a Gaussian fitted to the real train embeddings, with
    :data:`ISOTROPIC` variance added: high-dimensional, the hardest case for a graph index.
    Second photos move along real same-person differences (:func:`second_photos`)."""
    train = np.stack([e.vector for e in real.train])
    mean = train.mean(axis=0)
    cov = np.cov(train, rowvar=False)
    cov += np.eye(train.shape[1]) * ISOTROPIC * float(np.trace(cov)) / train.shape[1]
    rng = np.random.default_rng(seed)
    out = np.empty((count, train.shape[1]), np.float32)
    for start in range(0, count, 100_000):
        chunk = rng.multivariate_normal(mean, cov, size=min(100_000, count - start))
        out[start:start + len(chunk)] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return Pool(out, lambda indices: second_photos(out[indices], real.train))


@dataclass(frozen=True)
class FaceLikeMap:
    """A smooth random map from the latent space onto the unit sphere: random Fourier features
    ``sqrt(2) sin(z W + phase)`` mixed into the embedding dimensions around a mean."""

    freqs: np.ndarray
    phase: np.ndarray
    mix: np.ndarray
    mean: np.ndarray

    @classmethod
    def random(cls, mean: np.ndarray, seed: int) -> FaceLikeMap:
        """A map of :data:`LATENT_DIM` latent dimensions around ``mean``."""
        dim = len(mean)
        rng = np.random.default_rng(seed)
        return cls(rng.standard_normal((LATENT_DIM, dim)) * LATENT_FREQUENCY,
                   rng.uniform(0.0, 2.0 * np.pi, dim),
                   rng.standard_normal((dim, dim)) / np.sqrt(dim), mean)

    def __call__(self, latent: np.ndarray) -> np.ndarray:
        out = np.empty((len(latent), len(self.mean)), np.float32)
        for start in range(0, len(latent), 100_000):
            z = latent[start:start + 100_000]
            chunk = self.mean + (np.sqrt(2.0) * np.sin(z @ self.freqs + self.phase)) @ self.mix
            out[start:start + len(chunk)] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
        return out


def latent_step(embed: FaceLikeMap, distance: float, seed: int) -> float:
    """The latent step whose random moves carry a point of ``embed`` a median ``distance`` away
    (found by bisection over a sample of points)."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((2_000, LATENT_DIM))
    moves = rng.standard_normal(latent.shape)
    start = embed(latent)
    low, high = 0.0, 8.0
    for _ in range(40):
        step = (low + high) / 2.0
        moved = float(np.median(np.linalg.norm(embed(latent + step * moves) - start, axis=1)))
        low, high = (step, high) if moved < distance else (low, step)
    return (low + high) / 2.0


def face_like_pool(real: RealFaces, count: int, seed: int) -> Pool:
    """``count`` unit vectors on a :data:`LATENT_DIM`-dimensional manifold around the real train
    embeddings' mean (standard normal latent points through a :class:`FaceLikeMap`). A second
    photo is a random latent move that carries an identity as far, in median, as two real photos
    of one person are apart: it stays on the manifold, as the gallery's faces do."""
    embed = FaceLikeMap.random(np.stack([e.vector for e in real.train]).mean(axis=0), seed)
    rng = np.random.default_rng(seed + 1)
    latent = rng.standard_normal((count, LATENT_DIM))
    step = latent_step(embed, real.genuine_median, seed + 2)

    def second(indices: np.ndarray) -> np.ndarray:
        moves = np.random.default_rng(seed + 3).standard_normal((len(indices), LATENT_DIM))
        return embed(latent[indices] + step * moves)

    return Pool(embed(latent), second)


@dataclass(frozen=True)
class DistractorModel:
    """How one kind of synthetic distractor identity is drawn."""

    description: str
    pool: Callable[[RealFaces, int, int], Pool]
    """``pool(real, count, seed)``: ``count`` identities given the real faces."""
    with_real: bool
    """Whether the real faces join the gallery (and their val faces probe it): only where they
    lie in the model's distribution, else they would be an island no real gallery has."""


DISTRACTOR_MODELS = {
    "face-like": DistractorModel(
        f"a {LATENT_DIM}-dimensional manifold (FaceNet's measured intrinsic dimensionality) "
        "around the real faces' mean; the real faces are not on it, so its galleries and probes "
        "are all on the manifold", face_like_pool, with_real=False),
    "gaussian": DistractorModel(
        "a Gaussian fitted to the real faces plus as much isotropic variance (high-dimensional: "
        "the worst case for a graph index), with the real faces", gaussian_pool, with_real=True),
}
"""The distractor models ``facenet bench scale`` can measure, the face-like one first."""


def two_nn_dimension(vectors: np.ndarray) -> float:
    """The intrinsic dimensionality of a point set by the TWO-NN estimator (Facco et al.,
    Scientific Reports 2017): the count over the sum of ``log(r2 / r1)``, the ratios of each
    point's second to first nearest-neighbour distance (duplicates left out)."""
    distances = pairwise_distances(vectors, vectors).astype(np.float64)
    np.fill_diagonal(distances, np.inf)
    nearest = np.sort(distances, axis=1)[:, :2]
    kept = nearest[:, 0] > 0
    ratios = nearest[kept, 1] / nearest[kept, 0]
    return float(len(ratios) / np.log(ratios).sum())


def second_photos(identities: np.ndarray, real: Sequence[Entry], seed: int = 16) -> np.ndarray:
    """Another "photo" of each of ``identities`` (unit vectors): each turned on the sphere, in the
    direction of the difference between two real photos of one real person, by their distance.

    The turn is in the plane of the identity and that difference, so the probe stays a unit
    vector at exactly the real pair's Euclidean distance from its identity.
    """
    vectors = np.stack([e.vector for e in real]).astype(np.float64)
    pairs = [(i, j) for i, a in enumerate(real) for j, b in enumerate(real)
             if i != j and a.name == b.name]
    rng = np.random.default_rng(seed)
    chosen = np.asarray(pairs)[rng.integers(0, len(pairs), len(identities))]
    step = vectors[chosen[:, 0]] - vectors[chosen[:, 1]]
    base = identities.astype(np.float64)
    across = step - (step * base).sum(1, keepdims=True) * base
    across /= np.linalg.norm(across, axis=1, keepdims=True)
    angle = 2.0 * np.arcsin(np.linalg.norm(step, axis=1) / 2.0)
    return (np.cos(angle)[:, None] * base + np.sin(angle)[:, None] * across).astype(np.float32)


def distractor_name(index: int) -> str:
    """The name of the distractor identity at ``index`` of the pool."""
    return f"distractor {index:07d}"


def distractor_entries(vectors: np.ndarray, first: int) -> list[Entry]:
    """One identity per vector, named and keyed by its number."""
    return [Entry(distractor_name(first + i), vector, "synthetic distractor",
                  f"distractor:{first + i:010d}", (0.0, 0.0, 0.0, 0.0), None)
            for i, vector in enumerate(vectors)]
