"""The fenced code blocks of the rendered docs, for ``tests/test_docs.py``, which runs them.

A ``bash`` or ``python`` block is an example a reader will run, so the test runs it as written,
from a scratch copy of the checkout's layout (``artifacts/`` with the real models, ``../shared``
beside it). A comment on the line before a block says when it must run another way:

- ``<!-- doc-test: exit=1 -->`` or ``exit=0,1``: the exit codes its commands may end with;
- ``env=modern`` / ``env=runtime``: the environment whose ``facenet`` and ``python`` run it
  (default runtime: what a machine that only recognizes faces has);
- ``server``: a long-running ``facenet serve``; started, waited for (``/readyz``), and stopped after
  the ``client`` blocks that follow it, which run against it;
- ``postgres``: the example URL ``postgresql://facenet@db.example/faces`` is replaced by a real
  throwaway PostgreSQL + pgvector server's;
- ``install``: a fresh virtualenv, from the repository's root;
- ``nox``: nox commands; every session they name must exist in ``noxfile.py`` (running them would
  rebuild the environments and run the suite inside the suite);
- ``needs=docker``: runs where a container engine exists, ``needs=aarch64`` on an aarch64 CPU (a
  Raspberry Pi's install); elsewhere the test reports it skipped, with the reason, never silently.

Blocks in other languages (``text``, ``json``) are output or fragments, not examples to run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from docs.tooling.measurements import ROOT

RUNNABLE = ("bash", "python")
"""Languages of the examples that run."""
NOT_CODE = ("text", "json", "yaml", "toml", "csv")
"""Languages of blocks that show output, a format or a fragment."""
FLAGS = frozenset({"server", "client", "postgres", "install", "nox"})
KEYS = frozenset({"exit", "env", "needs"})
ANNOTATION = re.compile(r"^\s*<!--\s*doc-test:\s*(?P<body>.*?)\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, its text and its ``doc-test`` options."""

    path: Path
    line: int
    lang: str
    code: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """``docs/pages/video.md:12``, the test id."""
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def exits(self) -> set[int]:
        """The exit codes its commands may end with."""
        return {int(code) for code in self.options.get("exit", "0").split(",")}


def documents() -> list[Path]:
    """The rendered documents whose blocks run: the README, the root docs and every page."""
    roots = [ROOT / name for name in ("README.md", "SECURITY.md", "CONTRIBUTING.md")]
    return [p for p in roots if p.is_file()] + sorted((ROOT / "docs" / "pages").rglob("*.md"))


def parse_options(body: str) -> dict[str, str]:
    """``"server exit=0,1"`` -> ``{"server": "", "exit": "0,1"}``; unknown words raise."""
    options = {}
    for word in body.split():
        key, _, value = word.partition("=")
        if (key not in FLAGS or value) and (key not in KEYS or not value):
            raise ValueError(f"unknown doc-test option {word!r}")
        options[key] = value
    return options


def blocks(path: Path) -> list[Block]:
    """Every fenced block of ``path``, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        start, indent = index, len(fence.group("indent"))
        end = next(i for i in range(start + 1, len(lines))
                   if lines[i].strip() == "```")
        code = "\n".join(line[indent:] for line in lines[start + 1:end]) + "\n"
        previous = next((lines[i] for i in range(start - 1, -1, -1) if lines[i].strip()), "")
        annotation = ANNOTATION.match(previous)
        options = parse_options(annotation.group("body")) if annotation else {}
        out.append(Block(path, start + 1, fence.group("lang"), code, options))
        index = end + 1
    return out


def nox_sessions() -> set[str]:
    """The sessions ``noxfile.py`` defines (functions decorated with ``@nox.session``)."""
    import ast

    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)
            and any("nox.session" in ast.unparse(d) for d in node.decorator_list)}


def nox_commands(code: str) -> list[list[str]]:
    """The session names of each ``nox`` command in a block (``[]``: the default session)."""
    commands = []
    for line in code.splitlines():
        for part in re.split(r"&&|;", line.split("#", 1)[0]):
            words = part.split()
            if "nox" not in words or words[0] in ("pip", "python3", "python"):
                continue
            words = words[words.index("nox") + 1:]
            words = words[:words.index("--")] if "--" in words else words
            sessions = []
            if "-s" in words:
                sessions = [w for w in words[words.index("-s") + 1:] if not w.startswith("-")]
            commands.append(sessions)
    return commands
