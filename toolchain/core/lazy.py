"""Public names imported on first use (PEP 562), so a package's top stays light to import.

``import toolchain`` must not load ONNX Runtime or numpy (``facenet --help`` and the legacy
environment import it), yet ``from toolchain import Recognizer`` should work: a package declares
which module defines each public name and takes its ``__getattr__`` / ``__dir__`` from here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, namespace: dict[str, Any], exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package whose public names load lazily.

    Args:
        package: the package's ``__name__``.
        namespace: the package's ``globals()``; a name is cached there once imported.
        exports: each public name and the module defining it (absolute, or relative to
            ``package`` when it starts with a dot).

    Returns:
        ``(__getattr__, __dir__)`` for the package's module namespace.
    """

    def getattr_(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted({*namespace, *exports})

    return getattr_, dir_
