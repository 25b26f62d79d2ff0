"""How commands print results for machines: JSON documents and spreadsheet-safe CSV cells.

Results are serialized by the library (their ``to_dict()``); a command only wraps them in its
document and prints. CSV is for spreadsheets, so a text cell that a spreadsheet would read as a
formula is made inert here, once, for every command that writes CSV.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")
"""Characters that make a spreadsheet read a CSV cell as a formula (OWASP, CSV injection)."""


def csv_text(value: object) -> str:
    """A text cell a spreadsheet shows as text: a formula-leading character gets a ``'`` first."""
    text = str(value)
    return f"'{text}" if text.startswith(FORMULA_LEADS) else text


def print_csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Write a CSV table to stdout (``\\n`` line ends); cells are written as given."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    sys.stdout.write(buffer.getvalue())


def print_json(document: Any) -> None:
    """Write one JSON document to stdout, indented. Non-ASCII text is written as ``\\uXXXX``
    escapes: still the same strings to a JSON reader, and a bidi override or escape sequence in
    a file or person name cannot drive the terminal it is printed on."""
    print(json.dumps(document, indent=2))
