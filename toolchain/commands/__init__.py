"""Command modules; importing one registers its commands on ``toolchain.app.app``."""

from toolchain.commands import bench, convert, legacy, runtime, source, verify  # noqa: F401
