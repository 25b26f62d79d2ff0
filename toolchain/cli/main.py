"""Console entry point of ``facenet`` (also ``python -m toolchain``)."""

from __future__ import annotations

import sys

from toolchain.cli.app import run


def main() -> None:
    """Run the ``facenet`` command line and exit with its code."""
    sys.exit(run())
