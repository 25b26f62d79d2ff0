"""The ``facenet`` Typer application, its logging and its error-to-exit-code mapping.

The commands are grouped by who uses them. At the top, what people who recognize faces use, as few
as face_recognition's users expect: ``enroll``, ``recognize`` (photos), ``watch`` (videos,
cameras, streams), ``compare``, ``gallery ...``, ``batch ...``, ``serve``. Then one group per
other audience: ``model ...`` (fetch, inspect, export, parity, verify: people who convert
models), ``eval ...`` (labelled photos: a dataset, pairs, crops) and ``bench ...`` (the project's
own measuring tools). The tree of modules follows the tree of commands: a top-level command is a
module of ``toolchain.cli``, a group a package whose ``app`` merges its commands' modules.

Each command module owns a ``typer.Typer()`` named ``app``; :data:`COMMANDS` names them, in the
order ``facenet --help`` lists them in. A new command: a module with its own ``app``, one entry
there (or in its group's package). Heavy imports (tensorflow, onnxruntime) stay inside the command
bodies so ``--help`` is instant.

A run that names its command (``facenet recognize one.jpg``, ``facenet -v model verify``) imports
and builds that command's module only (:func:`build_app`): Typer reads the signature of every
command of the tree it builds, and the whole tree costs a noticeable part of a one-photo run's
start. Anything else (``--help`` before a command, no command, an unknown one) builds the whole
tree, so help and usage errors are those of the full application. :data:`app` is the whole tree
too, built when first read (for documentation tools).
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Annotated

import typer

from toolchain.cli.common import fail
from toolchain.core.errors import MissingArtifactError, ToolchainError

DISTRIBUTION = "facenet-toolchain"
"""The package's distribution name (``pip install facenet-toolchain``)."""


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

COMMANDS: tuple[tuple[str, str], ...] = (
    ("enroll", "toolchain.cli.enroll"),
    ("recognize", "toolchain.cli.recognize"),
    ("watch", "toolchain.cli.watch"),
    ("compare", "toolchain.cli.compare"),
    ("gallery", "toolchain.cli.gallery"),
    ("batch", "toolchain.cli.batch"),
    ("serve", "toolchain.cli.serve"),
    ("model", "toolchain.cli.model"),
    ("eval", "toolchain.cli.evaluation"),
    ("bench", "toolchain.cli.bench"),
)
"""Every top-level command or group: its name on the command line and the module whose ``app``
holds it, in the order ``facenet --help`` lists them. An app with a ``name`` (``gallery``,
``model``...) becomes ``facenet NAME ...``; the others' commands are added to the root as they are
(a test holds each name to what its module defines)."""

ROOT_FLAGS = frozenset({"--verbose", "-v", "--quiet", "-q"})
"""The root options that may come before a command and still let :func:`run` build that command
alone (``--help`` and ``--version`` need the whole tree, or print it)."""


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


def build_app(only: str | None = None) -> typer.Typer:
    """The ``facenet`` application: the whole tree, or only the top-level command or group named
    ``only`` (one of :data:`COMMANDS`) under the same root options.

    ``rich_markup_mode=None``: help texts are printed as written (rich markup would eat every
    ``[default: ...]`` and any other square brackets).
    """
    root = typer.Typer(
        name="facenet",
        help="Recognize faces with FaceNet, converted from the legacy Keras file without running "
             "its code.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        rich_markup_mode=None,
    )
    root.callback()(_configure)
    for name, module in COMMANDS:
        if only is None or name == only:
            root.add_typer(importlib.import_module(module).app)
    return root


def named_command(args: list[str]) -> str | None:
    """The top-level command ``args`` run when only :data:`ROOT_FLAGS` come before it, else
    ``None`` (the whole tree is needed)."""
    known = dict(COMMANDS)
    for arg in args:
        if arg in ROOT_FLAGS:
            continue
        return arg if arg in known else None
    return None


def __getattr__(name: str) -> typer.Typer:
    """``app``: the whole tree (:func:`build_app`), built on first use."""
    if name == "app":
        built = globals()["app"] = build_app()
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run(argv: list[str] | None = None) -> int:
    """Run the app (only the named command's part of it when it can:
    :func:`named_command`); map every expected failure to one stderr line and its exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        rv = build_app(named_command(args))(args=args, prog_name="facenet",
                                            standalone_mode=False)
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
