"""mkdocs hooks (``hooks:`` in ``mkdocs.yml``): the generated parts of the site.

- ``cli.md``: the CLI reference, walked from the typer app at build time (never committed, so it
  cannot go stale);
- ``convert-layers.md``: the layer classes ``facenet model convert`` rebuilds, rendered from the
  converter's own table (``toolchain.convert.generic.table``, what ``facenet model convert
  --layers`` prints and ``docs/convert_layers.md`` holds) at build time;
- ``img/tiers.svg``: the tiers drawn from the import-linter contract;
- the pictures of :data:`docs.tooling.pictures.PICTURES`, copied from the artifacts
  (``FACENET_ARTIFACTS``, default ``artifacts/``). A missing one is an error naming the step that
  makes it, which fails the strict build.

mkdocs loads this file by path, so it puts the repository root on ``sys.path`` itself.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[2]


def _importable() -> None:
    """Put the repository root first on ``sys.path`` (plugins may reset it between events)."""
    if str(_ROOT) not in sys.path:
        sys.path.insert(0, str(_ROOT))


_importable()

from mkdocs.structure.files import File, Files  # noqa: E402

from docs.tooling import cli_reference, pictures  # noqa: E402

log = logging.getLogger("mkdocs.hooks.facenet")

CLI_PAGE = """# CLI reference

Every command, group and option of `facenet`, generated from the command line itself at each
build of this site (`docs/tooling/cli_reference.py`), so it says what `facenet ... --help` says.
Exit codes are on [Exit codes and errors](errors.md#exit-codes).

"""


def convert_layers() -> str:
    """The supported-layer table of ``facenet model convert``, from the converter's code."""
    from toolchain.convert.generic.table import render_markdown

    return render_markdown()


def artifacts_dir() -> Path:
    """The artifacts whose pictures the site shows."""
    return Path(os.environ.get("FACENET_ARTIFACTS", _ROOT / "artifacts")).resolve()


def on_files(files: Files, config: Any) -> Files:
    """Add the CLI page, the converter's layer table, the tiers picture and the artifacts'
    pictures to the site."""
    _importable()
    files.append(File.generated(config, "cli.md", content=CLI_PAGE + cli_reference.markdown()))
    files.append(File.generated(config, "convert-layers.md", content=convert_layers()))
    files.append(File.generated(config, pictures.TIERS_SVG, content=pictures.tiers_svg()))
    artifacts = artifacts_dir()
    for picture in pictures.PICTURES:
        source = artifacts / picture.artifact
        if source.is_file():
            files.append(File.generated(config, picture.site, abs_src_path=str(source)))
        else:
            log.warning(f"{picture.site}: {source} is missing; it is made by the "
                        f"'{picture.made_by}' step (nox -s docs runs it when it is missing)")
    return files
