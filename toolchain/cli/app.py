"""The ``facenet`` Typer application, its logging and its error-to-exit-code mapping.

Each command module under ``toolchain.cli`` owns a ``typer.Typer()`` named ``app``;
:data:`COMMAND_GROUPS` adds them to the root in the order of the workflow, which is the order
``facenet --help`` lists them in. A new command: a module with its own ``app``, one entry there.
Heavy imports (tensorflow, onnxruntime) stay inside the command bodies so ``--help`` is instant.
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
    convert,
    crops,
    enroll,
    evaluate,
    export,
    fetch,
    gallery,
    inspect,
    loadtest,
    parity,
    recognize,
    serve,
    verify,
)
from toolchain.cli.common import fail
from toolchain.core.errors import MissingArtifactError, ToolchainError

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
    "av": "video",
    "fastapi": "serve",
    "uvicorn": "serve",
}
"""The smallest ``pyproject.toml`` extra that installs each optional top-level module (a test
checks this table against the extras); a command that needs a missing one says which to install."""

COMMAND_GROUPS: tuple[typer.Typer, ...] = (
    fetch.app, inspect.app, convert.app, export.app, parity.app, enroll.app, recognize.app,
    compare.app, evaluate.app, crops.app,
    batch.app, gallery.app, serve.app, verify.app, bench.app, loadtest.app,
)
"""Every command module's app, in the order of the workflow (``bench.app`` ends with
``int8-variants``). A group with a ``name`` (``gallery``) becomes ``facenet NAME ...``; the
others' commands are added to the root as they are."""

for _group in COMMAND_GROUPS:
    app.add_typer(_group)


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
