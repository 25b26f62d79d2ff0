"""The ``facenet`` Typer application, its logging and its error-to-exit-code mapping.

Command modules under ``toolchain.cli`` register themselves on :data:`app`; heavy imports
(tensorflow, onnxruntime) stay inside the command bodies so ``facenet --help`` is instant.
"""

from __future__ import annotations

import logging
import sys
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from toolchain.core.errors import MissingArtifactError, ToolchainError
from toolchain.core.paths import DEFAULT_ARTIFACTS, Layout

if TYPE_CHECKING:
    from rich.console import Console

DISTRIBUTION = "facenet-toolchain"
"""The package's distribution name (``pip install facenet-toolchain``)."""

app = typer.Typer(
    name="facenet",
    help="Recover, rebuild, export and run the legacy Keras FaceNet model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
"""The application. ``rich_markup_mode=None``: help texts are printed as written (rich markup
would eat every ``[default: ...]`` and any other square brackets)."""

EXTRA_FOR_MODULE: dict[str, str] = {
    "tensorflow": "convert",
    "keras": "convert",
    "tf2onnx": "convert",
    "onnx": "convert",
    "ai_edge_litert": "convert",
    "mtcnn": "convert",
    "matplotlib": "convert",
    "h5py": "inspect",
    "xdis": "inspect",
    "uncompyle6": "inspect",
    "onnxruntime": "runtime",
}
"""The smallest ``pyproject.toml`` extra that installs each optional top-level module (a test
checks this table against the extras); a command that needs a missing one says which to install."""

_BIDI_CONTROLS = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))
"""Bidirectional embedding, override and isolate characters: they reorder what follows them."""

ArtifactsOption = Annotated[
    Path,
    typer.Option(
        "--artifacts",
        help="Artifacts directory (env FACENET_ARTIFACTS).",
        file_okay=False,
        show_default=True,
    ),
]
"""The ``--artifacts DIR`` option every command that reads or writes artifacts takes."""

DEFAULT_ARTIFACTS_PATH = DEFAULT_ARTIFACTS


def layout_for(artifacts: Path) -> Layout:
    """The artifacts layout for a command's ``--artifacts`` value."""
    return Layout(artifacts)


def display_text(text: object) -> str:
    """``text`` made safe to show on a terminal: control and bidi characters as ``\\xNN`` escapes.

    Names and file names come from users and photo collections; an ESC in one would drive the
    terminal, a newline would forge output lines. Machine outputs (JSON, CSV) keep the text as is.
    """
    return "".join(
        ch.encode("unicode_escape").decode("ascii")
        if unicodedata.category(ch) == "Cc" or ch in _BIDI_CONTROLS else ch
        for ch in str(text)
    )


def console(stderr: bool = False) -> Console:
    """A rich console that never interprets text: no markup, no emoji codes, no highlighting.

    User text (person and file names) may hold ``[/]`` or ``:smile:``; styles are given with
    ``rich.text.Text`` objects instead. 160 columns wide when the output is not a terminal.
    """
    from rich.console import Console

    options = {"stderr": stderr, "markup": False, "emoji": False, "highlight": False}
    made = Console(**options)  # type: ignore[arg-type]
    return made if made.is_terminal else Console(width=160, **options)  # type: ignore[arg-type]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        import toolchain

        return toolchain.__version__


def _print_version(value: bool) -> None:
    if value:
        print(f"facenet {_version()}")
        raise typer.Exit(0)


@app.callback()
def _configure(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Warnings and errors only.")] = False,
    _show_version: Annotated[bool, typer.Option(
        "--version", is_eager=True, expose_value=True, callback=_print_version,
        help="Print the installed version and exit.")] = False,
) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for noisy in ("tensorflow", "absl", "h5py", "PIL", "matplotlib", "tf2onnx"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def fail(message: str, exit_code: int) -> None:
    """Print one ``facenet: error: ...`` line to stderr and exit with ``exit_code``."""
    print(f"facenet: error: {display_text(message)}", file=sys.stderr)
    raise SystemExit(exit_code)


def missing_module_message(exc: ModuleNotFoundError) -> str | None:
    """The one-line advice for an optional module that is not installed, else ``None`` (a bug)."""
    top = (exc.name or "").partition(".")[0]
    extra = EXTRA_FOR_MODULE.get(top)
    if extra is None:
        return None
    return (f"this command needs the Python module {top!r}, which is not installed here; "
            f'install the extra: pip install "{DISTRIBUTION}[{extra}]"')


def run(argv: list[str] | None = None) -> int:
    """Run the app; map every expected failure to one stderr line and its exit code."""
    from toolchain.cli import bench, evaluate, export, fetch, inspect, recognize, verify  # noqa: F401

    try:
        rv = app(args=argv, prog_name="facenet", standalone_mode=False)
    except ToolchainError as exc:
        fail(str(exc), exc.exit_code)
    except typer.Abort:
        print("facenet: aborted", file=sys.stderr)
        return 130
    except typer.TyperException as exc:
        format_message = getattr(exc, "format_message", None)
        message = format_message() if callable(format_message) else str(exc)
        print(f"facenet: error: {message} (see --help)", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        print("facenet: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        fail("out of memory", 1)
    except ModuleNotFoundError as exc:
        message = missing_module_message(exc)
        if message is None:
            raise
        fail(message, MissingArtifactError.exit_code)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        fail(f"{where}{exc.strerror or exc}", 3)
    return rv if isinstance(rv, int) else 0
