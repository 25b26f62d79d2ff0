"""The toolchain's version, importable from every tier (the root package imports the whole API
lazily, which a lower tier may not depend on)."""

from __future__ import annotations

__version__ = "0.1.0"
"""Recorded in what the toolchain writes (model metadata, export reports, model packs)."""
