"""Command modules; importing one registers its commands on ``toolchain.app.app``."""

import toolchain.commands.legacy  # noqa: F401
from toolchain.commands import source  # noqa: F401
from toolchain.commands import runtime  # noqa: F401
from toolchain.commands import convert  # noqa: F401
from toolchain.commands import bench  # noqa: F401
from toolchain.commands import verify  # noqa: F401
