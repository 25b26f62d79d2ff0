"""The pictures of the site: copied from ``artifacts/`` at build time, or drawn from the code.

Pictures the toolchain or its tests make (the parity plot, the ROC, an annotated photo, the web
page's screenshots) are never committed: :data:`PICTURES` says where each comes from and which
step makes it, the build copies it in, and a missing one fails the strict build with that step
named (``nox -s docs`` runs the missing steps first). The package's tiers are drawn here, as SVG,
from the import-linter contract in ``pyproject.toml`` that ``nox -s lint`` enforces, so the
picture is the rule the build checks.
"""

from __future__ import annotations

import ast
import html
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import tomllib

from docs.tooling.measurements import ROOT


@dataclass(frozen=True)
class Picture:
    """A picture of the site: its path in the site, its source under ``artifacts/``, and the
    step that makes it (a key of the noxfile's ``PICTURE_STEPS``)."""

    site: str
    artifact: str
    made_by: str


PICTURES: tuple[Picture, ...] = (
    Picture("img/parity.png", "reports/parity.png", "parity"),
    Picture("img/evaluate_roc.png", "reports/evaluate_roc.png", "demo"),
    Picture("img/evaluate_distances.png", "reports/evaluate_distances.png", "demo"),
    Picture("img/annotated.jpg",
            "reports/annotated/httpcdnpastemagazinecomwwwarticlesmindyprojectjpg.annotated.jpg",
            "demo"),
    Picture("img/video_frame.jpg", "reports/video/short_hamilton_clip.frame150.jpg", "demo"),
    Picture("img/crops.png", "reports/crops.png", "crops"),
    Picture("img/web_camera_live.png", "reports/web/camera-live.png", "browser"),
    Picture("img/web_local.png", "reports/web/local.png", "browser"),
)
"""Every picture copied from the artifacts, with the step that makes it."""

TIERS_SVG = "img/tiers.svg"


def missing(artifacts: Path) -> list[Picture]:
    """The pictures whose source is not under ``artifacts``."""
    return [p for p in PICTURES if not (artifacts / p.artifact).is_file()]


def tiers() -> list[list[str]]:
    """The layers contract of ``pyproject.toml``: rows of packages, top (cli) first."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for contract in config["tool"]["importlinter"]["contracts"]:
        if contract["type"] == "layers":
            return [[m.strip() for m in row.split("|")] for row in contract["layers"]]
    raise KeyError("pyproject.toml has no import-linter layers contract")


def forbidden() -> list[str]:
    """The names of the other contracts (what a tier may not import)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return [c["name"] for c in config["tool"]["importlinter"]["contracts"]
            if c["type"] != "layers"]


def _summary(package: str) -> tuple[str, int]:
    """The first line of a package's docstring and its number of lines of Python."""
    folder = ROOT / Path(*package.split("."))
    doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text(encoding="utf-8")))
    first = (doc or "").split("\n\n")[0].replace("\n", " ").replace("``", "")
    first = re.sub(r":\w+:`([^`]+)`", r"\1", first)
    lines = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in folder.rglob("*.py"))
    return first, lines


def tiers_svg() -> str:
    """The tiers as an SVG picture: one row per tier, top imports bottom, never the reverse."""
    rows = tiers()
    width, row_h, gap, left = 980, 80, 22, 60
    height = len(rows) * (row_h + gap) + 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="13">',
           '<title>The tiers of the toolchain package (import-linter layers contract)</title>',
           f'<line x1="28" y1="20" x2="28" y2="{height - 24}" stroke="#666" stroke-width="2"/>',
           f'<polygon points="21,{height - 30} 35,{height - 30} 28,{height - 14}" fill="#666"/>',
           f'<text x="18" y="{height / 2}" transform="rotate(-90 18 {height / 2})" '
           'text-anchor="middle" fill="#444">imports only downward</text>']
    for r, row in enumerate(rows):
        y = 10 + r * (row_h + gap)
        box_w = (width - left - 10 - 12 * (len(row) - 1)) / len(row)
        for c, package in enumerate(row):
            x = left + c * (box_w + 12)
            summary, lines = _summary(package)
            out.append(f'<rect x="{x:.0f}" y="{y}" width="{box_w:.0f}" height="{row_h}" rx="8" '
                       'fill="#e8eef8" stroke="#3f63a8"/>')
            out.append(f'<text x="{x + 10:.0f}" y="{y + 20}" font-weight="bold" '
                       f'font-size="15">{html.escape(package)}</text>')
            out.append(f'<text x="{x + box_w - 10:.0f}" y="{y + 20}" text-anchor="end" '
                       f'fill="#555">{lines:,} lines</text>')
            chars = max(20, int(box_w / 7.0))
            for i, text in enumerate(textwrap.wrap(summary, chars)[:4]):
                out.append(f'<text x="{x + 10:.0f}" y="{y + 40 + 15 * i}" fill="#222">'
                           f'{html.escape(text)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
