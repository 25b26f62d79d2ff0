"""What every command module shares: the ``--artifacts`` option, terminal-safe text and errors.

Imports stay light (typer and the standard library) so that ``facenet --help`` is instant; rich is
imported when a console is made.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
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


TERMINAL_ENV = ("TTY_COMPATIBLE", "FORCE_COLOR")
"""Variables with which rich may take a stream that is not a terminal for one."""


def may_be_terminal(stderr: bool = False) -> bool:
    """Whether rich could take stdout (stderr) for a terminal, without importing rich: ``False``
    only when the stream is no TTY and none of :data:`TERMINAL_ENV` is set, where rich says
    ``False`` too. A script's run (output to a pipe or file) then never imports rich for its
    progress bar (about 30 ms of a one-photo run's start)."""
    if any(name in os.environ for name in TERMINAL_ENV):
        return True
    isatty = getattr(sys.stderr if stderr else sys.stdout, "isatty", None)
    try:
        return bool(isatty is not None and isatty())
    except ValueError:  # a closed stream
        return False


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


@contextlib.contextmanager
def stop_signals(stop: Callable[[], None] | None = None) -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM alike within the block.

    SIGTERM is how service managers, ``timeout`` and container runtimes stop a process; its
    default action ends the process at once, printing nothing and leaving temporary files
    behind. Here it does what Ctrl-C does:

    - without ``stop``, either signal raises :class:`KeyboardInterrupt`, so every ``finally``
      runs (temporary files removed, an atomic write finished or dropped);
    - with ``stop``, the first signal calls ``stop()`` (which must only set a flag: it runs in
      the signal handler), so the work ends at its next safe point and reports what it did; a
      second signal raises :class:`KeyboardInterrupt`.

    The previous handlers are restored afterwards; outside the main thread nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    asked = False

    def handle(_signum: int, _frame: FrameType | None) -> None:
        nonlocal asked
        if stop is None or asked:
            raise KeyboardInterrupt
        asked = True
        stop()

    previous = {number: signal.signal(number, handle)
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
