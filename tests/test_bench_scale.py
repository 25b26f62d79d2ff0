"""``bench --scale``: the probes it builds and one small run against a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from toolchain.bench.scale import distractors, goals, search
from toolchain.bench.scale.report import BuildRow, ScaleReport, SearchRow, markdown
from toolchain.core.paths import Layout
from toolchain.gallery import Entry, open_gallery


def _person(name: str, vectors: np.ndarray) -> list[Entry]:
    return [Entry(name, v, "t", f"{name}{i}", (0.0, 0.0, 1.0, 1.0), None)
            for i, v in enumerate(vectors)]


def test_second_photos_sit_at_a_real_pair_distance_on_the_sphere() -> None:
    rng = np.random.default_rng(0)
    faces = rng.standard_normal((6, 128))
    faces /= np.linalg.norm(faces, axis=1, keepdims=True)
    real = _person("a", faces[:3]) + _person("b", faces[3:])
    genuine = {round(float(np.linalg.norm(faces[i] - faces[j])), 5)
               for group in ((0, 1, 2), (3, 4, 5)) for i in group for j in group if i != j}
    identities = rng.standard_normal((50, 128))
    identities /= np.linalg.norm(identities, axis=1, keepdims=True)

    probes = distractors.second_photos(identities.astype(np.float32), real)

    assert np.allclose(np.linalg.norm(probes, axis=1), 1.0, atol=1e-6)
    moved = np.linalg.norm(probes - identities, axis=1)
    assert all(min(abs(m - g) for g in genuine) < 1e-5 for m in moved)
    assert len({round(float(m), 5) for m in moved}) > 1


def test_two_nn_finds_the_dimension_of_a_flat_point_set() -> None:
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.standard_normal((128, 6)))[0]
    points = rng.uniform(size=(2000, 6)) @ basis.T

    assert 5.0 < distractors.two_nn_dimension(points) < 7.0


def _fake_real(rng: np.random.Generator) -> distractors.RealFaces:
    centre = 3.0 * rng.standard_normal(128)
    faces = rng.standard_normal((40, 128)) + centre
    faces /= np.linalg.norm(faces, axis=1, keepdims=True)
    return distractors.RealFaces(_person("a", faces[:20]) + _person("b", faces[20:]),
                                 faces[:2], ["a", "b"])


@pytest.mark.parametrize("model", sorted(distractors.DISTRACTOR_MODELS))
def test_distractor_models_draw_unit_vectors_of_their_dimensionality(model: str) -> None:
    real = _fake_real(np.random.default_rng(2))

    pool = distractors.DISTRACTOR_MODELS[model].pool(real, 2000, 5)

    drawn = pool.vectors
    assert drawn.shape == (2000, 128) and drawn.dtype == np.float32
    assert np.allclose(np.linalg.norm(drawn, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(drawn, distractors.DISTRACTOR_MODELS[model].pool(real, 2000, 5).vectors)
    dimension = distractors.two_nn_dimension(drawn)
    if model == "face-like":
        assert distractors.LATENT_DIM - 3 < dimension < distractors.LATENT_DIM + 5
    else:
        assert dimension > 2 * distractors.LATENT_DIM
    targets = np.arange(0, 2000, 10)
    second = pool.second_photos(targets)
    assert np.allclose(np.linalg.norm(second, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(second, pool.second_photos(targets))
    moved = np.linalg.norm(second - drawn[targets], axis=1)
    assert abs(float(np.median(moved)) - real.genuine_median) < 0.05


@pytest.mark.parametrize("model", sorted(distractors.DISTRACTOR_MODELS))
def test_a_small_scale_run_measures_every_backend_and_kind(
        real_artifact: Callable[[str], Path], postgres_url: str, tmp_path: Path,
        model: str) -> None:
    layout = Layout(real_artifact("models").parent)
    sizes = [300, 600]
    report = ScaleReport(sizes=sizes, models=[model], cpu="", isa=[], cores=2,
                         real_people=0, real_train_faces=0, real_val_faces=0)
    saved: list[int] = []
    real = distractors.real_faces(layout)
    with_real = distractors.DISTRACTOR_MODELS[model].with_real
    kinds = ["real", "enrolled", "new"] if with_real else ["enrolled", "new"]

    search.describe_real(real, report, tmp_path)
    search.measure_search(real, model, sizes, report, tmp_path, postgres_url,
                          lambda: saved.append(len(report.search)), builds=2, order_seed=3)

    assert report.real_people == 5
    assert any("real faces: median distance" in note for note in report.notes)
    assert any(note.startswith(f"{model} distractors:") for note in report.notes)
    each = 2 + len(search.EF_SEARCHES)
    assert saved == [0, each, each, 2 * each, 2 * each, 2 * each + len(search.EF_SEARCHES)]
    assert {r.model for r in report.search} == {model}
    rebuilt = [r for r in report.search if r.build == 2]
    assert [(r.size, r.backend, r.ef_search) for r in rebuilt] == [
        (600, "pgvector HNSW", ef) for ef in search.EF_SEARCHES]
    assert all(min(r.recall_at_1.values()) > 0.95 and len(r.load) == 3 for r in rebuilt)
    rows = {(r.size, r.backend, r.ef_search): r for r in report.search if r.build == 1}
    assert set(rows) == {(size, backend, ef) for size in sizes for backend, ef in
                         [("sqlite exact", None), ("pgvector exact", None),
                          *(("pgvector HNSW", ef) for ef in search.EF_SEARCHES)]}
    for size in sizes:
        exact = rows[size, "sqlite exact", None]
        assert exact.recall_at_1 == dict.fromkeys(kinds, 1.0)
        assert exact.found.get("real", 1.0) == 1.0
        assert 0.5 < exact.found["enrolled"] <= 1.0
        assert rows[size, "pgvector exact", None].recall_at_1 == dict.fromkeys(kinds, 1.0)
        best = rows[size, "pgvector HNSW", search.EF_SEARCHES[-1]]
        assert set(best.recall_at_1) == set(kinds) and min(best.recall_at_1.values()) > 0.95
    first = 300 - 5 + 92 if with_real else 300
    built = [(b.backend, b.size, b.rows) for b in report.build]
    assert built == [("sqlite", 300, first), ("postgresql", 300, first),
                     ("sqlite", 600, 300), ("postgresql", 600, 300),
                     ("postgresql", 600, 600 - 5 + 92 if with_real else 600)]
    assert all(b.index_mb and b.table_mb and b.insert_rows_per_s
               for b in report.build if b.backend == "postgresql")
    probes = 425 if with_real else 400
    report.goals = goals.judge(report)
    text = markdown(report)
    assert f"| {model} | 600 | pgvector HNSW | 2 | 400 | {probes} |" in text
    assert f"search at 600, {model}, 2 independent build(s)" in text


def test_ef_search_outside_pgvector_limits_is_refused(postgres_url: str) -> None:
    from toolchain.core.errors import InputError
    from toolchain.gallery.postgres import PostgresGallery

    with open_gallery(postgres_url, fingerprint="5" * 64, create=True) as gallery:
        assert isinstance(gallery, PostgresGallery)
        gallery.set_ef_search(400)
        with pytest.raises(InputError, match="ef_search 99"):
            gallery.set_ef_search(99)
        with pytest.raises(InputError, match="ef_search 1001"):
            gallery.set_ef_search(1001)


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--sizes", "10000,abc", "is not a list of sizes"),
    ("--sizes", "100000,10000", "sizes ascending"),
    ("--distractors", "face-like,uniform", "name each of face-like, gaussian"),
    ("--distractors", "gaussian,gaussian", "at most once"),
])
def test_bad_scale_options_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path, option: str, value: str,
                                                   message: str) -> None:
    from helpers.cli import invoke

    code, _, err = invoke(capsys, "bench", "scale", option, value, "--artifacts", tmp_path)

    assert code == 2
    assert message in err


def test_the_goals_are_judged_on_every_build_at_the_largest_size() -> None:
    """Met only where one ef_search meets recall and p99 on every build; else how far off and
    why; the bulk load judged on its rate before the index build."""
    report = ScaleReport(sizes=[1000, 10_000], models=["face-like"], cpu="", isa=[], cores=2,
                         real_people=0, real_train_faces=0, real_val_faces=0)

    def row(ef: int, build: int, recall: float, p99: float) -> SearchRow:
        return SearchRow("face-like", "pgvector HNSW", 10_000, 400, 1.0, p99,
                         {"enrolled": recall, "new": 1.0}, {}, ef, build, (3.0, 2.0, 1.0))

    report.search = [row(100, 1, 0.98, 5.0), row(100, 2, 0.995, 5.0),
                     row(200, 1, 0.99, 12.0), row(200, 2, 0.996, 19.0)]
    report.build = [BuildRow("face-like", "postgresql", 10_000, 10_000, 1.0, 10_000.0, 0.5,
                             insert_rows_per_s=25_000.0, load=(3.0, 2.0, 1.0))]
    verdict = goals.judge(report)
    assert verdict[0].startswith("bulk load, face-like, build 1, 10,000 rows: met: 25,000")
    assert verdict[1].startswith("search at 10,000, face-like, 2 independent build(s): met at "
                                 "ef_search 200")
    report.search[3] = row(200, 2, 0.996, 26.5)
    report.build[0] = BuildRow("face-like", "postgresql", 10_000, 10_000, 1.0, 10_000.0, 0.5,
                               insert_rows_per_s=5_000.0, load=(3.0, 2.0, 1.0))
    verdict = goals.judge(report)
    assert "NOT met: 5,000 rows/s, 0.25x the goal" in verdict[0]
    assert "NOT met: recall reached at ef_search 200 but its p99 is 6.5 ms over 20 ms" in verdict[1]
    report.search = [row(100, 1, 0.98, 5.0), row(100, 2, 0.97, 5.0)]
    assert "best 0.9700 at ef_search 100, 0.0200 short" in goals.judge(report)[1]
