"""The ``facenet`` Typer application, its logging and its error-to-exit-code mapping.

Command modules under ``toolchain.commands`` register themselves on :data:`app`; heavy imports
(tensorflow, onnxruntime) stay inside the command bodies so ``facenet --help`` is instant.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from toolchain.errors import ToolchainError
from toolchain.paths import DEFAULT_ARTIFACTS, Layout

app = typer.Typer(
    name="facenet",
    help="Recover, rebuild, export and run the legacy Keras FaceNet model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

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


@app.callback()
def _configure(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Warnings and errors only.")] = False,
) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for noisy in ("tensorflow", "absl", "h5py", "PIL", "matplotlib", "tf2onnx"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def fail(message: str, exit_code: int) -> None:
    """Print one ``facenet: error: ...`` line to stderr and exit with ``exit_code``."""
    print(f"facenet: error: {message}", file=sys.stderr)
    raise SystemExit(exit_code)


def run(argv: list[str] | None = None) -> int:
    """Run the app; map every expected failure to one stderr line and its exit code."""
    import toolchain.commands  # noqa: F401  (registers the commands)

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
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        fail(f"{where}{exc.strerror or exc}", 3)
    return rv if isinstance(rv, int) else 0
