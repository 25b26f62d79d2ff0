"""The ``facenet`` Typer application, its logging and its error-to-exit-code mapping.

The commands are grouped by who uses them. At the top, what people who recognize faces use, as few
as face_recognition's users expect: ``enroll``, ``recognize`` (photos), ``watch`` (videos,
cameras, streams), ``compare``, ``gallery ...``, ``batch ...``, ``serve``. Then one group per
other audience: ``model ...`` (fetch, inspect, export, parity, verify: people who convert
models), ``eval ...`` (labelled photos: a dataset, pairs, crops) and ``bench ...`` (the project's
own measuring tools). The tree of modules follows the tree of commands: a top-level command is a
module of ``toolchain.cli``, a group a package whose ``app`` merges its commands' modules.

Each command module owns a ``typer.Typer()`` named ``app``; :data:`COMMANDS` adds them to the
root in the order ``facenet --help`` lists them in. A new command: a module with its own ``app``,
one entry there (or in its group's package). Heavy imports (tensorflow, onnxruntime) stay inside
the command bodies so ``--help`` is instant.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from toolchain.cli import (
    batch,
    bench,
    compare,
    enroll,
    evaluation,
    gallery,
    model,
    recognize,
    serve,
    watch,
)
from toolchain.cli.common import fail
from toolchain.core.errors import MissingArtifactError, ToolchainError

DISTRIBUTION = "facenet-toolchain"
"""The package's distribution name (``pip install facenet-toolchain``)."""

app = typer.Typer(
    name="facenet",
    help="Recognize faces with FaceNet, converted from the legacy Keras file without running "
         "its code.",
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
    "av": "video",
    "fastapi": "serve",
    "uvicorn": "serve",
}
"""The smallest ``pyproject.toml`` extra that installs each optional top-level module (a test
checks this table against the extras); a command that needs a missing one says which to install."""

COMMANDS: tuple[typer.Typer, ...] = (
    enroll.app, recognize.app, watch.app, compare.app, gallery.app, batch.app, serve.app,
    model.app, evaluation.app, bench.app,
)
"""Every top-level command's or group's app, in the order ``facenet --help`` lists them. An app
with a ``name`` (``gallery``, ``model``...) becomes ``facenet NAME ...``; the others' commands are
added to the root as they are."""

for _command in COMMANDS:
    app.add_typer(_command)


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
