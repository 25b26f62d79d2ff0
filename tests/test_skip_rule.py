"""Under CI every skip fails unless its test allows that skip (:mod:`helpers.skip_rule`).

A throwaway suite that imports the rule as ``tests/conftest.py`` does runs in a child pytest, once
as under CI and once as on a developer's machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from helpers.cli import ROOT

CONFTEST = """
from helpers.skip_rule import pytest_make_collect_report, pytest_runtest_makereport
"""

TESTS = {
    "test_runtime.py": """
import pytest

def test_missing_artifact():
    pytest.skip("models/facenet.onnx missing: run `nox -s export` first")

@pytest.fixture
def service():
    pytest.skip("no PostgreSQL with pgvector")

def test_missing_service(service):
    pass

@pytest.mark.skipif(True, reason="some condition")
def test_skipif():
    pass

@pytest.mark.allow_skip("needs root", reason="only root can do it")
def test_allowed():
    pytest.skip("mknod needs root")

@pytest.mark.allow_skip("needs root", reason="only root can do it")
def test_allowance_is_for_its_phrase_only():
    pytest.skip("models/facenet.onnx missing")

def test_passes():
    pass
""",
    "test_collected.py": """
import pytest
pytest.importorskip("a_module_that_is_not_installed")

def test_never_collected():
    pass
""",
}


def _outcomes(tmp_path: Path, ci: bool) -> tuple[dict[str, str], list[str]]:
    """Each test's (or uncollected file's) outcome, and the reasons of the skips."""
    for name, text in {"conftest.py": CONFTEST, **TESTS}.items():
        (tmp_path / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "FACENET_REQUIRE_REAL")}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), str(ROOT)]),
               **({"CI": "true"} if ci else {}))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", "--strict-markers",
         "--continue-on-collection-errors", "-o", "markers=allow_skip", str(tmp_path)],
        capture_output=True, text=True, check=False, cwd=tmp_path, env=env, timeout=300)
    found = re.findall(r"^(PASSED|FAILED|ERROR) (?:\S*/)?(test_\w+\.py)(?:::(\w+))?",
                       done.stdout, re.MULTILINE)
    skipped = re.findall(r"^SKIPPED \[\d+\] \S+:\d+: (.*)$", done.stdout, re.MULTILINE)
    return {test or module: outcome for outcome, module, test in found}, skipped


def test_under_ci_every_skip_fails_except_the_allowed_one(tmp_path: Path) -> None:
    assert _outcomes(tmp_path, ci=True) == ({
        "test_missing_artifact": "FAILED", "test_missing_service": "ERROR",
        "test_skipif": "ERROR", "test_allowance_is_for_its_phrase_only": "FAILED",
        "test_passes": "PASSED", "test_collected.py": "ERROR"}, ["mknod needs root"])


def test_elsewhere_a_skip_stays_a_skip(tmp_path: Path) -> None:
    outcomes, skipped = _outcomes(tmp_path, ci=False)
    assert outcomes == {"test_passes": "PASSED"}
    assert len(skipped) == 6, skipped
