"""Command modules; importing one registers its commands on ``toolchain.app.app``."""

from toolchain.commands import source  # noqa: F401
