"""Parity of every exported format with the ORIGINAL graph's reference embeddings.

:mod:`.reference` loads the ground truth, :mod:`.checks` compares (dataclass verdicts),
:mod:`.report` renders the table, JSON, markdown and chart, :mod:`.run` runs it all.
"""

from toolchain.convert.parity.checks import (
    L2_OUTPUT_MAX_ABS,
    ORIGINAL,
    Check,
    ParityReport,
    check_l2_output,
    compare,
    disk_size,
    identify,
)
from toolchain.convert.parity.reference import Reference, load_reference
from toolchain.convert.parity.report import REPORT_NAMES
from toolchain.convert.parity.run import run_parity

__all__ = [
    "L2_OUTPUT_MAX_ABS",
    "ORIGINAL",
    "REPORT_NAMES",
    "Check",
    "ParityReport",
    "Reference",
    "check_l2_output",
    "compare",
    "disk_size",
    "identify",
    "load_reference",
    "run_parity",
]
