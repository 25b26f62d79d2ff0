"""The command line on a PostgreSQL gallery: the same results as on SQLite, and migrate.

The tiny stand-in model and the square detector (``runtime_fakes``) make enrolling and
recognizing fast; the gallery is real, on the session's throwaway PostgreSQL server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import runtime_fakes as fakes
from helpers.cli import invoke
from helpers.gallery_backends import pg_connection

from toolchain.gallery import Entry, open_gallery
from toolchain.gallery.migrate import checksum
from toolchain.gallery.pgschema import split_url


@pytest.fixture
def photos(tmp_path: Path) -> tuple[Path, Path]:
    """A folder of two people to enroll, and a folder of queries."""
    fakes.photo(tmp_path / "People" / "Red.png", [("red", 60)])
    fakes.photo(tmp_path / "People" / "Blue.png", [("blue", 60)])
    queries = tmp_path / "queries"
    fakes.photo(queries / "a_group.jpg", [("blue", 50), ("yellow", 40), ("red", 80)])
    fakes.photo(queries / "b_red.png", [("red", 100)], mode="P")
    return tmp_path / "People", queries


def rows(target: Path | str) -> list[tuple[Any, ...]]:
    with open_gallery(target) as gallery:
        return [(e.name, e.vector.tobytes(), e.source, e.image_sha256, e.box, e.score)
                for e in gallery.entries()]


def entries(target: Path | str) -> list[Entry]:
    with open_gallery(target) as gallery:
        return gallery.entries()


def test_enroll_and_recognize_give_the_same_results_on_both_backends(
        fake_artifacts: Path, photos: tuple[Path, Path], tmp_path: Path, postgres_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    people, queries = photos
    outputs = []
    for target in (str(tmp_path / "g.db"), postgres_url):
        code, out, err = invoke(capsys, "enroll", people, "--gallery", target,
                                "--artifacts", fake_artifacts)
        assert code == 0, err
        assert "2 face(s) added" in out
        code, out, err = invoke(capsys, "enroll", people, "--gallery", target,
                                "--artifacts", fake_artifacts)
        assert code == 0 and "0 face(s) added, 2 already there" in out, err
        code, out, err = invoke(capsys, "recognize", queries, "--gallery", target, "--json",
                                "--artifacts", fake_artifacts)
        assert code == 0, err
        doc = json.loads(out)
        assert doc.pop("gallery") == target
        outputs.append(doc)
    assert outputs[0] == outputs[1]
    names = {Path(r["file"]).name: sorted(f["label"] for f in r["faces"])
             for r in outputs[1]["results"]}
    assert names == {"a_group.jpg": ["Blue", "Red", "unknown"], "b_red.png": ["Red"]}
    assert rows(tmp_path / "g.db") == rows(postgres_url)


def test_gallery_commands_on_postgresql(fake_artifacts: Path, photos: tuple[Path, Path],
                                        tmp_path: Path, postgres_url: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    people, _ = photos
    assert invoke(capsys, "enroll", people, "--gallery", postgres_url,
                  "--artifacts", fake_artifacts)[0] == 0
    code, out, err = invoke(capsys, "gallery", "list", "--gallery", postgres_url)
    assert code == 0, err
    assert "(postgresql)" in out and "2 people, 2 embeddings" in out
    exported = tmp_path / "export.json"
    code, _, err = invoke(capsys, "gallery", "export", exported, "--gallery", postgres_url)
    assert code == 0, err
    code, out, _ = invoke(capsys, "gallery", "remove", "Red", "--gallery", postgres_url)
    assert code == 0 and "removed 'Red' (1 embeddings)" in out
    code, out, err = invoke(capsys, "gallery", "import", exported, "--gallery", postgres_url,
                            "--artifacts", fake_artifacts)
    assert code == 0, err
    assert "imported 1 embeddings (gallery export); 1 were already in" in out
    assert [e.name for e in entries(postgres_url)] == ["Blue", "Red"]


@pytest.mark.parametrize("option", ["options=-c%20statement_timeout%3D5000",
                                    "options=-c+statement_timeout%3D5000"])
def test_the_rest_of_a_gallery_url_reaches_libpq_unchanged(
        fake_artifacts: Path, photos: tuple[Path, Path], postgres_url: str, option: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Only ``gallery=`` is taken out of the query; the rest is passed to libpq as written (it
    was decoded and encoded again, so ``%20`` became ``+``, which libpq does not decode: the
    server refused ``+statement_timeout``). A ``+`` written by the user stays a ``+`` too."""
    people, _ = photos
    url = f"{postgres_url}&{option}"
    conninfo, _ = split_url(url)
    assert conninfo.endswith(f"&{option}") and "gallery=" not in conninfo
    code, out, err = invoke(capsys, "enroll", people, "--gallery", url, "--artifacts",
                            fake_artifacts)
    if "+" in option:  # libpq's own reading: a literal plus, refused by the server
        assert code == 3 and "statement_timeout" in err and len(err.splitlines()) == 1, err
        return
    assert code == 0, err
    code, out, err = invoke(capsys, "gallery", "list", "--gallery", url)
    assert code == 0 and "2 people, 2 embeddings" in out, err
    with pg_connection(url) as (conn, _):
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "5s"


def test_migrate_sqlite_to_postgresql_and_back_is_verified_and_lossless(
        fake_artifacts: Path, photos: tuple[Path, Path], tmp_path: Path, postgres_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    people, _ = photos
    source, back = tmp_path / "source.db", tmp_path / "back.db"
    assert invoke(capsys, "enroll", people, "--gallery", source,
                  "--artifacts", fake_artifacts)[0] == 0
    with open_gallery(source) as gallery:
        gallery.set_threshold(0.75, "calibrated by hand")
    code, out, err = invoke(capsys, "gallery", "migrate", source, postgres_url)
    assert code == 0, err
    assert "migrated 2 embeddings of 2 people" in out and "(2 new, 0 already there" in out
    assert "threshold copied" in out and checksum(entries(source))[:16] in out
    code, out, err = invoke(capsys, "gallery", "migrate", source, postgres_url)
    assert code == 0 and "(0 new, 2 already there)" in out, err
    code, out, err = invoke(capsys, "gallery", "migrate", postgres_url, back)
    assert code == 0, err
    assert rows(back) == rows(postgres_url) == rows(source)
    for target in (postgres_url, back):
        with open_gallery(target) as gallery, open_gallery(source) as original:
            assert (gallery.fingerprint, gallery.crop, gallery.threshold,
                    gallery.threshold_source) == (original.fingerprint, original.crop, 0.75,
                                                  "calibrated by hand")


def test_migrate_into_another_models_gallery_is_refused(
        fake_artifacts: Path, photos: tuple[Path, Path], tmp_path: Path, postgres_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    people, _ = photos
    source = tmp_path / "source.db"
    assert invoke(capsys, "enroll", people, "--gallery", source,
                  "--artifacts", fake_artifacts)[0] == 0
    open_gallery(postgres_url, fingerprint="b" * 64, create=True).close()
    code, out, err = invoke(capsys, "gallery", "migrate", source, postgres_url)
    assert code == 4 and not out
    assert len(err.strip().splitlines()) == 1 and "bbbbbbbbbbbbbbbb" in err
    assert entries(postgres_url) == []


def test_a_face_enrolled_under_another_name_fails_the_verification(
        fake_artifacts: Path, photos: tuple[Path, Path], tmp_path: Path, postgres_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    people, _ = photos
    source = tmp_path / "source.db"
    assert invoke(capsys, "enroll", people, "--gallery", source,
                  "--artifacts", fake_artifacts)[0] == 0
    red = next(e for e in entries(source) if e.name == "Red")
    with open_gallery(source) as gallery:
        fingerprint = gallery.fingerprint
    with open_gallery(postgres_url, fingerprint=fingerprint, create=True) as gallery:
        gallery.add([Entry("Mallory", red.vector, red.source, red.image_sha256, red.box,
                           red.score)])
    code, _, err = invoke(capsys, "gallery", "migrate", source, postgres_url)
    assert code == 4 and "does not hold the 2 embeddings" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("url", "phrase"),
    [("postgresql://postgres@/postgres?host=/nonexistent", "cannot connect"),
     ("postgresql://postgres@/postgres?host=/nonexistent&gallery=Bad-Name", "gallery name"),
     ("postgresql://facenet:s3cret@/postgres?host=/nonexistent", "facenet:***@")],
    ids=["no-server", "bad-gallery-name", "password-hidden"],
)
def test_a_gallery_url_that_cannot_be_used_is_one_line(
        url: str, phrase: str, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("psycopg")
    code, out, err = invoke(capsys, "gallery", "list", "--gallery", url)
    lines = err.strip().splitlines()
    assert code == 3 and not out and len(lines) == 1, err
    assert lines[0].startswith("facenet: error: ") and phrase in lines[0]
    assert "s3cret" not in err


SECRET = "s3cret-Pw"
"""A password that must never show: in outputs, JSON, messages or logs."""


@pytest.mark.parametrize("url", [
    f"postgresql://u@db.example:5432/faces?password={SECRET}&gallery=office",
    f"postgresql://u@db.example/faces?sslmode=require&sslpassword={SECRET}",
    f"postgresql://u@db.example/faces?pass%77ord={SECRET}",
    f"postgresql://u@db.example/faces?PASSWORD={SECRET}&password={SECRET}x",
    f"postgresql://u:{SECRET}@db.example/faces",
    f"postgresql://u:{SECRET}@h1:5432,h2:5433/faces?gallery=office",
    f"postgresql://u:{SECRET}%40x@db.example/faces",
    f"POSTGRES://u:{SECRET}@[::1/faces",
    f"postgresql://u@db.example/faces?password=a%26{SECRET}%20b#frag",
])
def test_a_gallery_url_is_shown_without_its_secrets(url: str) -> None:
    from toolchain.gallery import display_target

    shown = display_target(url)
    assert SECRET not in shown and "***" in shown, shown
    assert "faces" in shown and shown.split("://")[0] == url.split("://")[0]


def test_a_password_parameter_never_shows_in_outputs(
        fake_artifacts: Path, photos: tuple[Path, Path], tmp_path: Path, postgres_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The local server trusts its socket, so the passwords are ignored: the commands work and
    every place that names the gallery shows ``***`` instead."""
    people, queries = photos
    url = f"{postgres_url}&password={SECRET}&sslpassword={SECRET}2"
    masked = f"{postgres_url}&password=***&sslpassword=***"
    exported = tmp_path / "export.json"
    runs = [
        ("enroll", people, "--gallery", url, "--artifacts", fake_artifacts),
        ("recognize", queries, "--gallery", url, "--json", "--artifacts", fake_artifacts),
        ("recognize", queries, "--gallery", url, "--artifacts", fake_artifacts),
        ("gallery", "list", "--gallery", url),
        ("gallery", "export", exported, "--gallery", url),
        ("gallery", "import", exported, "--gallery", url, "--artifacts", fake_artifacts),
        ("gallery", "migrate", url, tmp_path / "copy.db"),
        ("gallery", "migrate", tmp_path / "copy.db", url),
        ("gallery", "remove", "Red", "--gallery", url),
    ]
    shown = []
    for args in runs:
        code, out, err = invoke(capsys, *args)
        assert code == 0, (args, err)
        assert SECRET not in out + err, (args, out, err)
        shown.append(out)
    assert json.loads(shown[1])["gallery"] == masked
    assert all(masked in out for out in (shown[5], shown[6], shown[8])), shown
    assert all("***" in out for out in (shown[0], shown[3])), shown  # rich table titles


@pytest.mark.parametrize("url", [
    f"postgresql://postgres@/postgres?host=/nonexistent&password={SECRET}",
    f"postgresql://postgres@/postgres?host=/nonexistent&password={SECRET}%zz",
    f"postgresql://postgres:{SECRET}%zz@/postgres?host=/nonexistent",
    f"postgresql://postgres@/postgres?host=/nonexistent&sslpassword={SECRET}&bogus=1",
    f"postgresql://postgres:{SECRET}@[::1/postgres",
    f"postgresql://postgres:{SECRET}@/postgres?host=/nonexistent&gallery=Bad-Name",
], ids=["no-server", "bad-percent-in-parameter", "bad-percent-in-user-part",
        "unknown-parameter", "bad-ipv6-host", "bad-gallery-name"])
def test_connection_errors_never_quote_a_password(
        url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """libpq quotes what it cannot parse (a token, or the whole URL): the message is one line
    without the password, whatever it quotes."""
    pytest.importorskip("psycopg")
    for args in (("gallery", "list", "--gallery", url),
                 ("gallery", "migrate", url, "/nonexistent/copy.db")):
        code, out, err = invoke(capsys, *args)
        lines = err.strip().splitlines()
        assert code == 3 and not out and len(lines) == 1, err
        assert lines[0].startswith("facenet: error: gallery ") and SECRET not in err, err
