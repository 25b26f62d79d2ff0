"""What every command module shares: the ``--artifacts`` option, terminal-safe text and errors.

Imports stay light (typer and the standard library) so that ``facenet --help`` is instant; rich is
imported when a console is made.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from toolchain.gallery.names import escape

if TYPE_CHECKING:
    from rich.console import Console

ArtifactsOption = Annotated[
    Path,
    typer.Option(
        "--artifacts",
        help="Artifacts directory (env FACENET_ARTIFACTS).",
        file_okay=False,
        show_default=True,
    ),
]
"""The ``--artifacts DIR`` option every command that reads or writes artifacts takes; its default
is :data:`toolchain.core.paths.DEFAULT_ARTIFACTS`."""


def display_text(text: object) -> str:
    """``text`` made safe to show on a terminal: control, format (bidi, zero-width), unassigned,
    private-use and surrogate characters and line separators as escapes (``\\x1b``,
    ``\\u200b``: :func:`toolchain.gallery.names.escape`).

    Names and file names come from users and photo collections; an ESC in one would drive the
    terminal, a newline would forge output lines, a bidi override or a zero-width space would make
    one name look like another. Machine outputs (JSON, CSV) keep the text as is.
    """
    return escape(str(text))


def console(stderr: bool = False) -> Console:
    """A rich console that never interprets text: no markup, no emoji codes, no highlighting.

    User text (person and file names) may hold ``[/]`` or ``:smile:``; styles are given with
    ``rich.text.Text`` objects instead. 160 columns wide when the output is not a terminal.
    """
    from rich.console import Console

    options = {"stderr": stderr, "markup": False, "emoji": False, "highlight": False}
    made = Console(**options)  # type: ignore[arg-type]
    return made if made.is_terminal else Console(width=160, **options)  # type: ignore[arg-type]


def fail(message: str, exit_code: int) -> NoReturn:
    """Print one ``facenet: error: ...`` line to stderr and exit with ``exit_code``."""
    print(f"facenet: error: {display_text(message)}", file=sys.stderr)
    raise SystemExit(exit_code)


def problem(message: str) -> None:
    """Report one problem with one input as one line on stderr (control characters escaped)."""
    print(f"facenet: {display_text(message)}", file=sys.stderr)
