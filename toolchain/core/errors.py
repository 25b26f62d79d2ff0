"""Typed errors, each carrying the exit code the command line reports for it."""

from __future__ import annotations


class ToolchainError(Exception):
    """Base of every error the toolchain reports as one clear line instead of a traceback."""

    exit_code = 1


class InputError(ToolchainError):
    """A file or argument given by the user cannot be used (missing, unreadable, malformed)."""

    exit_code = 3


class IntegrityError(ToolchainError):
    """A hash, size or manifest check failed: the data is not what it claims to be."""

    exit_code = 4


class UnsafeCodeError(ToolchainError):
    """A legacy file carries code that is not the vetted residual-scaling lambda; refused."""

    exit_code = 5


class MissingArtifactError(ToolchainError):
    """A generated artifact is missing; the message names the nox session that creates it."""

    exit_code = 6


class ParityError(ToolchainError):
    """An exported model's outputs differ from the reference beyond the tolerance table."""

    exit_code = 7


class EnvironmentToolError(ToolchainError):
    """An external tool the toolchain drives (pip, a converter) failed."""

    exit_code = 8


class SourceUnavailableError(ToolchainError):
    """A live video source cannot be opened: a camera that does not exist or is busy, a stream
    address that refuses, is not found or does not answer in time."""

    exit_code = 9


class StreamInterruptedError(ToolchainError):
    """A live video source stalled or dropped mid-way (after any reconnect attempts); what was
    analyzed before it is still reported."""

    exit_code = 10
