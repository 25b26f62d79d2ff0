"""The main job's scheduler and installer options (``noxsupport``), without building anything.

The scheduler must start a step only after the steps it needs have ended, run independent steps
side by side, stop at the first failure without starting what depends on it, and report every
step's span; uv must reach the same indexes, links and constraints as pip's configuration.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # noxsupport sits beside the noxfile, not in the package
    sys.path.insert(0, str(ROOT))

from noxsupport import envs, schedule  # noqa: E402
from noxsupport.schedule import Step  # noqa: E402


class Journal:
    """What the steps did, in the order they did it (thread-safe)."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self._lock = threading.Lock()

    def add(self, event: str) -> None:
        with self._lock:
            self.events.append(event)

    def step(self, name: str, fail: bool = False) -> schedule.Step:
        def run() -> None:
            self.add(f"{name}:start")
            if fail:
                raise RuntimeError(f"{name} broke")
            self.add(f"{name}:end")

        return Step(name, run)


def test_a_step_starts_only_after_its_needs_ended(tmp_path: Path) -> None:
    journal = Journal()
    steps = [journal.step("fetch"), journal.step("recover"), journal.step("inspect"),
             journal.step("export")]
    needs = {"recover": ("fetch",), "inspect": ("fetch",), "export": ("recover",)}
    steps = [Step(s.name, s.run, needs.get(s.name, ())) for s in steps]
    spans = schedule.run_job(steps, {}, tmp_path / "envs", tmp_path, tmp_path / "logs",
                             lambda _: None, slots=2)
    order = journal.events
    for step, needed in needs.items():
        for need in needed:
            assert order.index(f"{need}:end") < order.index(f"{step}:start"), order
    assert sorted(s.name for s in spans) == sorted(s.name for s in steps)
    assert all(s.kind == "step" and s.seconds >= 0 and s.detail == "" for s in spans)
    assert (tmp_path / "logs" / "export.log").is_file()


def test_a_failed_step_stops_the_job_before_what_needs_it(tmp_path: Path) -> None:
    journal = Journal()
    steps = [journal.step("fetch", fail=True),
             Step("recover", journal.step("recover").run, ("fetch",))]
    with pytest.raises(schedule.StepFailed, match="fetch broke"):
        schedule.run_job(steps, {}, tmp_path / "envs", tmp_path, tmp_path / "logs",
                         lambda _: None, slots=2)
    assert "recover:start" not in journal.events
    assert "fetch broke" in (tmp_path / "logs" / "fetch.log").read_text()


def test_a_step_with_unknown_needs_is_reported(tmp_path: Path) -> None:
    journal = Journal()
    steps = [Step("export", journal.step("export").run, ("recover",))]
    with pytest.raises(schedule.StepFailed, match="never ready"):
        schedule.run_job(steps, {}, tmp_path / "envs", tmp_path, tmp_path / "logs",
                         lambda _: None, slots=2)
    assert journal.events == []


def test_uv_reaches_the_indexes_links_and_constraints_pip_is_configured_with() -> None:
    settings = {"index-url": "https://mirror.example/simple",
                "extra-index-url": "file:///opt/a/simple file:///opt/b/simple",
                "find-links": "/opt/wheels", "constraint": "/etc/pip/constraints.txt",
                "no-index": "false"}
    options = envs.uv_index_options(settings)
    assert options[:2] == ["--index-strategy", "unsafe-best-match"]
    pairs = list(zip(options[2::2], options[3::2], strict=True))
    assert pairs == [("--index-url", "https://mirror.example/simple"),
                     ("--extra-index-url", "file:///opt/a/simple"),
                     ("--extra-index-url", "file:///opt/b/simple"),
                     ("--find-links", "/opt/wheels"),
                     ("--constraint", "/etc/pip/constraints.txt")]
    assert envs.uv_index_options({"no-index": "1"})[-1] == "--no-index"


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_an_environment_asking_for_bytecode_is_built_compiled(
        installer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runtime environment ships compiled (``facenet recognize``'s start, issue 25): uv is
    told to compile what it installs (pip does by default), then the project's package is
    compiled; an environment that does not ask keeps its commands and its stamp."""
    monkeypatch.setattr(envs, "uv_binary", lambda: "/opt/uv" if installer == "uv" else None)
    monkeypatch.setattr(envs, "pip_settings", lambda: {})
    req = tmp_path / "runtime.txt"
    req.write_text("numpy==2.0.0\n")
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[project]\n")
    plain, compiled = envs.Env((req,)), envs.Env((req,), compile_bytecode=True)
    venv = tmp_path / "venv"
    before, _ = envs._commands(venv, plain, ROOT)
    after, _ = envs._commands(venv, compiled, ROOT)
    python = str(venv / "bin" / "python")
    assert after[-1] == [python, "-m", "compileall", "-q", str(ROOT / "toolchain")]
    assert not any("compileall" in command for command in before)
    installs = [c for c in after if "install" in c and "--upgrade" not in c]
    assert installs and all(("--compile-bytecode" in c) == (installer == "uv") for c in installs)
    assert not any("--compile-bytecode" in c for c in before)
    assert envs._digest(compiled, pyproject) != envs._digest(plain, pyproject)
