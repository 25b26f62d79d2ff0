"""Person names: the one rule every name follows into a gallery, and how names are shown.

A name is what people read in lists, labels and results, and what tells two people apart, so a
name must look like what it is, and names that look alike must be one name. The rule
(:func:`person_name`):

- Unicode NFC: ``café`` typed as ``é`` (U+00E9) or as ``e`` and a combining accent (U+0301) is
  one person.
- Surrounding white space stripped (``" biden "`` is ``biden``); not empty; at most
  :data:`MAX_NAME_CHARS` characters (after normalization).
- None of the characters :data:`HIDDEN` lists: control (Cc: an escape sequence drives a
  terminal, a newline forges an output line), format (Cf: a bidi override like U+202E reorders
  what follows, a zero-width space like U+200B is invisible), unassigned (Cn), private-use (Co)
  or surrogate (Cs) code points, line and paragraph separators (Zl, Zp).

Every path applies it: ``facenet enroll --name`` and folder or file names, ``batch enroll
--list``, the API, gallery import and migrate, and under them the gallery's write path itself
(:meth:`~toolchain.gallery.base.Gallery.add`), which stores the normalized name. A
refusal is :class:`NameRefused`: a usage error where the name was typed (exit 2, API 400
``bad_request``), bad input where a file holds it (exit 3).

Galleries written before the rule may hold names it refuses: :func:`escape` shows their hidden
characters as escapes (``bi\\u200bden``) wherever text reaches a terminal, and
:func:`stored_name` lets such a person be found, and removed, by the name as shown.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable

from toolchain.core.errors import InputError

MAX_NAME_CHARS = 128
"""Longest person name, in characters after normalization and stripping."""

HIDDEN: dict[str, str] = {
    "Cc": "a control character",
    "Cf": "a format character (invisible, or reordering the text around it)",
    "Cn": "an unassigned code point",
    "Co": "a private-use character",
    "Cs": "a surrogate",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}
"""Unicode general categories no name holds and no terminal is shown raw: why, for each."""


class NameRefused(InputError):
    """A person name the rule refuses (the message says which rule, the name escaped)."""


def escape(text: str) -> str:
    """``text`` with every character of a :data:`HIDDEN` category as a Python escape
    (``\\x1b``, ``\\u200b``, ``\\udc80``); everything else as it is."""
    return "".join(
        ch.encode("unicode_escape", "backslashreplace").decode("ascii")
        if unicodedata.category(ch) in HIDDEN else ch
        for ch in text
    )


@functools.lru_cache(maxsize=1 << 16)
def person_name(text: str) -> str:
    """``text`` as a person name: NFC-normalized and stripped.

    Cached: a write checks each name, then stores it as the rule makes it (the second call of a
    batch's names is a look-up; a refused name raises each time).

    Raises:
        NameRefused: empty, longer than :data:`MAX_NAME_CHARS`, or holding a character of a
            :data:`HIDDEN` category.
    """
    name = unicodedata.normalize("NFC", text).strip()
    if not name:
        raise NameRefused("empty person name")
    if len(name) > MAX_NAME_CHARS:
        raise NameRefused(f"a person name has at most {MAX_NAME_CHARS} characters, this one "
                          f"{len(name):,}")
    for ch in name:
        category = unicodedata.category(ch)
        if category in HIDDEN:
            code = f"U+{ord(ch):04X}"
            what = f"{code} {unicodedata.name(ch, '')}".strip()
            raise NameRefused(f"person name '{escape(name)}': {what} is {HIDDEN[category]}; "
                              "a name may hold letters, marks, digits, punctuation, symbols "
                              "and spaces")
    return name


def stored_name(given: str, existing: Iterable[str]) -> str:
    """The name in ``existing`` (a gallery's people) that ``given`` asks for.

    ``given`` itself, or stripped, when a person has exactly that name (an older gallery may
    hold names the rule now refuses); else the one person whose name shows as ``given`` once
    escaped (:func:`escape`, as listings show it), or is ``given`` once both are NFC-normalized
    and stripped; else ``given`` as the rule makes it (nobody may have it).

    Raises:
        NameRefused: none of these, and the rule refuses ``given``.
    """
    names = set(existing)
    for candidate in (given, given.strip()):
        if candidate in names:
            return candidate
    loose = unicodedata.normalize("NFC", given).strip()
    for alike in ([name for name in names if escape(name) == given.strip()],
                  [name for name in names if unicodedata.normalize("NFC", name).strip() == loose]):
        if len(alike) == 1:
            return alike[0]
    return person_name(given)
