"""One person-name rule on every path: NFC, stripped, at most 128 characters, no invisible or
reordering characters; names stored before the rule shown escaped and still removable.

The command-line paths run on the tiny stand-in model and the square detector
(``runtime_fakes``); the galleries are real, on SQLite and on the session's PostgreSQL.
"""

from __future__ import annotations

import json
import sqlite3
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from helpers import runtime_fakes as fakes
from helpers.cli import invoke

from toolchain.core.errors import InputError
from toolchain.gallery import Entry, open_gallery

MODEL = "a" * 64
CAFE_NFC = unicodedata.normalize("NFC", "café")
CAFE_NFD = unicodedata.normalize("NFD", "café")
REFUSED = {
    "rtl-override": "obama\u202e",
    "zero-width-space": "bi\u200bden",
    "zero-width-joiner": "bi\u200dden",
    "byte-order-mark": "\ufeffbiden",
    "escape-sequence": "\x1b[31mred",
    "newline": "two\nlines",
    "tab": "a\tb",
    "line-separator": "a\u2028b",
    "private-use": "a\ue000",
    "unassigned": "a\u0378",
    "surrogate": "a\udc80",
    "too-long": "n" * 129,
    "empty": "   ",
}
"""Names the rule refuses, each for one reason."""


def vector(seed: int) -> np.ndarray:
    values = np.random.default_rng(seed).standard_normal(128).astype(np.float32)
    return values / np.linalg.norm(values)


def entry(name: str, seed: int) -> Entry:
    return Entry(name, vector(seed), f"{seed}.jpg", f"{seed:064x}", (1.0, 2.0, 30.0, 40.0), 0.9)


@pytest.mark.parametrize("name", REFUSED.values(), ids=REFUSED.keys())
def test_the_rule_refuses_invisible_reordering_long_and_empty_names(name: str) -> None:
    from toolchain.gallery.names import NameRefused, escape, person_name

    with pytest.raises(NameRefused) as refused:
        person_name(name)
    message = str(refused.value)
    assert isinstance(refused.value, InputError) and "\n" not in message
    assert escape(message) == message and len(message) < 300, message


def test_the_rule_normalizes_and_strips() -> None:
    from toolchain.gallery.names import person_name

    assert person_name(CAFE_NFD) == person_name(f"  {CAFE_NFC}\n") == CAFE_NFC
    for kept in ("Zoë Saldaña", "李小龙", "O'Brien-Smith Jr.", "n" * 128, "a\u00a0b", "ש ם"):
        assert person_name(kept) == unicodedata.normalize("NFC", kept)


def test_escape_shows_every_hidden_character() -> None:
    from toolchain.gallery.names import escape

    assert escape("bi\u200bden \u202eevil\x1b[0m a\udc80") == \
        "bi\\u200bden \\u202eevil\\x1b[0m a\\udc80"
    assert escape(CAFE_NFD) == CAFE_NFD and escape("李 小") == "李 小"


def test_the_gallery_stores_one_person_for_both_forms(gallery_at: Path | str) -> None:
    """The write path under every other: NFD and NFC are one person; a refused name writes
    nothing of its batch."""
    from toolchain.gallery.names import NameRefused

    with open_gallery(gallery_at, fingerprint=MODEL, create=True) as gallery:
        gallery.add([entry(CAFE_NFD, 1)])
        result = gallery.add([entry(f" {CAFE_NFC} ", 2), entry(CAFE_NFC, 1)])
        assert len(result.added) == 1 and result.conflicts == []
        for name in REFUSED.values():
            with pytest.raises(NameRefused):
                gallery.add([entry("fine", 3), entry(name, 4)])
        assert [(p.name, p.embeddings) for p in gallery.people()] == [(CAFE_NFC, 2)]



def test_enroll_name_refusals_are_usage_errors(fake_artifacts: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    photo = fakes.photo(tmp_path / "red.png", [("red", 60)])
    gallery = tmp_path / "g.db"
    for name in REFUSED.values():
        if "\udc80" in name:
            continue  # no argv can hold a lone surrogate from a UTF-8 terminal
        code, out, err = invoke(capsys, "enroll", photo, "--name", name, "--gallery", gallery,
                                "--artifacts", fake_artifacts)
        lines = err.strip().splitlines()
        assert code == 2 and not out and len(lines) == 1, (name, err)
        assert lines[0].startswith("facenet: error: ") and "--name" in lines[0], lines
        assert "\x1b" not in err and "\u202e" not in err and "\u200b" not in err
    assert not gallery.exists()


def test_nfc_and_nfd_enrolled_twice_are_one_person(fake_artifacts: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    red = fakes.photo(tmp_path / "red.png", [("red", 60)])
    blue = fakes.photo(tmp_path / "blue.png", [("blue", 60)])
    gallery = tmp_path / "g.db"
    for name, photo in ((CAFE_NFC, red), (CAFE_NFD, blue), (f" {CAFE_NFD} ", red)):
        code, _, err = invoke(capsys, "enroll", photo, "--name", name, "--gallery", gallery,
                              "--artifacts", fake_artifacts)
        assert code == 0 and "warning" not in err, err
    with open_gallery(gallery) as opened:
        assert [(p.name, p.embeddings) for p in opened.people()] == [(CAFE_NFC, 2)]


def test_folder_and_file_names_that_break_the_rule_are_skipped(
        fake_artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    people = tmp_path / "People"
    fakes.photo(people / "Red.png", [("red", 60)])
    fakes.photo(people / "bi\u200bden" / "1.png", [("blue", 60)])
    fakes.photo(people / "Gr\u202eeen.png", [("green", 60)])
    fakes.photo(people / CAFE_NFD / "1.png", [("yellow", 60)])
    gallery = tmp_path / "g.db"
    code, out, err = invoke(capsys, "enroll", people, "--gallery", gallery,
                            "--artifacts", fake_artifacts)
    assert code == 1, err
    skipped = [line for line in err.splitlines() if line.startswith("facenet: skipped: ")]
    assert len(skipped) == 2 and "\\u200b" in err and "\\u202e" in err, err
    assert "\u200b" not in out + err and "\u202e" not in out + err
    assert "2 face(s) added" in out and "2 skipped" in out, out
    with open_gallery(gallery) as opened:
        assert [p.name for p in opened.people()] == ["Red", CAFE_NFC]


def test_batch_list_names_are_checked_before_any_work(
        fake_artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fakes.photo(tmp_path / "red.png", [("red", 60)])
    listing = tmp_path / "list.txt"
    listing.write_text("Red\tred.png\nbi\u200bden\tred.png\n", encoding="utf-8")
    code, out, err = invoke(capsys, "batch", "enroll", "--list", listing, "--gallery",
                            tmp_path / "g.db", "--artifacts", fake_artifacts)
    lines = err.strip().splitlines()
    assert code == 2 and not out and len(lines) == 1, err
    assert "line 2" in lines[0] and "\\u200b" in lines[0] and "\u200b" not in err, lines
    long_name = tmp_path / "long.txt"
    long_name.write_text(f"{'n' * 20_000}\tred.png\n", encoding="utf-8")
    code, _, err = invoke(capsys, "batch", "enroll", "--list", long_name, "--gallery",
                          tmp_path / "g.db", "--artifacts", fake_artifacts)
    assert code == 2 and len(err) < 400 and "128" in err, err
    assert not (tmp_path / "g.db").exists()


def seed_import(tmp_path: Path, names: list[str]) -> Path:
    path = tmp_path / "DataBase.json"
    path.write_text(json.dumps({name: vector(i).tolist() for i, name in enumerate(names)}))
    return path


def test_imports_apply_the_rule(fake_artifacts: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    """A file holding a refused name is bad input (exit 3), refused whole; NFD and NFC in one
    file are one person."""
    gallery = tmp_path / "g.db"
    code, out, err = invoke(capsys, "gallery", "import", seed_import(tmp_path, ["Ada",
                            "Bo\u202eb"]), "--gallery", gallery, "--artifacts", fake_artifacts)
    assert code == 3 and not out and "\\u202e" in err and "\u202e" not in err, err
    assert not gallery.exists()
    code, _, err = invoke(capsys, "gallery", "import", seed_import(tmp_path, [CAFE_NFC,
                          CAFE_NFD]), "--gallery", gallery, "--artifacts", fake_artifacts)
    assert code == 0, err
    with open_gallery(gallery) as opened:
        assert [(p.name, p.embeddings) for p in opened.people()] == [(CAFE_NFC, 2)]


def legacy_gallery(path: Path, names: list[str]) -> None:
    """A gallery whose names were stored before the rule (written under the gallery's API)."""
    with open_gallery(path, fingerprint=MODEL, create=True) as gallery:
        gallery.add([entry(f"placeholder{i}", i) for i in range(len(names))])
    with sqlite3.connect(path) as conn:
        for i, name in enumerate(names):
            conn.execute("UPDATE people SET name = ? WHERE name = ?", (name, f"placeholder{i}"))
    conn.close()


def test_older_galleries_are_listed_escaped_and_their_names_removable(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gallery = tmp_path / "old.db"
    legacy_gallery(gallery, ["bi\u200bden", "\x1b[2Jclear", CAFE_NFD, "  spaced  ",
                             "zero\u200bwidth"])
    code, out, err = invoke(capsys, "gallery", "list", "--gallery", gallery)
    assert code == 0, err
    for hidden in ("\u200b", "\x1b"):
        assert hidden not in out
    assert "bi\\u200bden" in out and "\\x1b[2Jclear" in out
    code, out, err = invoke(capsys, "gallery", "migrate", gallery, tmp_path / "copy.db")
    assert code == 3 and "\\u200b" in err and not (tmp_path / "copy.db").exists(), err
    for given, stored in (("bi\u200bden", "bi\u200bden"), (CAFE_NFC, CAFE_NFD),
                          ("spaced", "  spaced  "), ("zero\\u200bwidth", "zero\u200bwidth")):
        code, out, err = invoke(capsys, "gallery", "remove", given, "--gallery", gallery)
        assert code == 0 and repr(stored) in out, (given, out, err)
    code, out, err = invoke(capsys, "gallery", "remove", "new\u200bname", "--gallery", gallery)
    assert code == 2 and "\\u200b" in err and "\u200b" not in err, err
    with open_gallery(gallery) as opened:
        assert [p.name for p in opened.people()] == ["\x1b[2Jclear"]
