"""The suite's skip rule: under CI a skip is a failure unless the test allows that one skip.

Under CI (``CI=true``) and in ``nox -s tests`` (``FACENET_REQUIRE_REAL=1``) every skip, at
collection (``pytest.importorskip`` at module level) or when a test runs (a missing artifact,
environment, service or package), is reported as a failure, except a skip whose reason contains the
phrase of an ``allow_skip`` mark the test carries (:mod:`helpers.allowances`). Elsewhere a skip
stays a skip, so a developer can run a part of the suite without building everything.
``tests/conftest.py`` imports the two hooks, which registers them.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

REQUIRE_REAL = os.environ.get("FACENET_REQUIRE_REAL") == "1" or os.environ.get("CI") == "true"
"""Whether a skip is a failure (CI, ``nox -s tests``)."""


def _reason(longrepr: object) -> str:
    return str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)


def allowed(item: pytest.Item | None, reason: str) -> bool:
    """Whether ``item`` carries an ``allow_skip`` mark whose phrase is in the skip ``reason``."""
    marks = item.iter_markers("allow_skip") if item is not None else ()
    return any(mark.args and str(mark.args[0]) in reason for mark in marks)


def as_failure(reason: str) -> str:
    """The report of a skip turned into a failure."""
    return (f"skipped under CI / FACENET_REQUIRE_REAL=1, where a skip is a failure unless the "
            f"test allows this one (tests/helpers/allowances.py): {reason}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Under CI, a skip at setup or while running fails unless ``item`` allows it."""
    outcome = yield
    report = outcome.get_result()
    if not (REQUIRE_REAL and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = _reason(report.longrepr)
    if not allowed(item, reason):
        report.outcome = "failed"
        report.longrepr = as_failure(reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    """Under CI, a file or class skipped while it is collected is a collection error."""
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_REAL and report.skipped:
        report.outcome = "failed"
        report.longrepr = as_failure(_reason(report.longrepr))
