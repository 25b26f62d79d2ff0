"""The numbers the documentation publishes, for the tests that pin them.

``README.md`` and the pages are rendered from the snapshot ``docs/measurements/NAME.json``, which
keeps what ``docs/tooling/extract.py`` takes from a report the toolchain wrote. A test that runs
that report's command again compares its fresh report with the snapshot through the same
extractor: a published number is pinned without being typed a second time, and a change of
behaviour that would change a published number fails here before the docs are refreshed.
"""

from __future__ import annotations

import json
from typing import Any

from docs.tooling.extract import REPORTS
from helpers.cli import ROOT

SIGNIFICANT = 9
"""Floats are compared to this many significant digits (a JSON round trip keeps 17)."""


def published(name: str) -> dict[str, Any]:
    """The values of ``docs/measurements/NAME.json`` (what the docs render)."""
    path = ROOT / "docs" / "measurements" / f"{name}.json"
    values: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))["values"]
    return values


def as_published(name: str, report: Any) -> dict[str, Any]:
    """What the docs would publish from ``report`` (the snapshot's extractor of NAME)."""
    extractor = next(r.extract for r in REPORTS if r.name == name)
    return extractor(report)


def rounded(value: Any) -> Any:
    """``value`` with every float rounded to :data:`SIGNIFICANT` digits, for comparing."""
    if isinstance(value, float):
        return float(f"{value:.{SIGNIFICANT}g}")
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(item) for item in value]
    return value
