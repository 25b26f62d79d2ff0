"""What each ``Lambda`` of a legacy file becomes: a catalogue entry or the user's own function.

A ``Lambda`` stores marshaled Python bytecode, which is never run. ``facenet model convert`` accepts
it in exactly two ways, decided here before anything is built or written:

- **catalogue**: its bytecode is exactly a vetted entry of :mod:`toolchain.legacy.lambdas` (today
  FaceNet's residual scaling, ``lambda inputs, scale: inputs[0] + inputs[1] * scale``);
- **mapped**: the user names it on the command line, ``--lambda LAYER=my_layers.py:function``,
  and the function in THEIR file stands for it (the file's bytecode is decoded for the report so
  they can compare, never run). The module file's sha256 is recorded.

Every other Lambda, and any other reference to code (:mod:`toolchain.legacy.codewalk`), is refused
with :class:`~toolchain.core.errors.UnsafeCodeError` (exit 5). :func:`bind_config` then rewrites a
copy of the config so that each Lambda names its function (``function_type: "function"``) and no
bytecode reaches Keras; the modern rebuild and the legacy Keras 2.15 graph both use it.
"""

from __future__ import annotations

import copy
import importlib.util
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from toolchain.core.atomic import sha256_file
from toolchain.core.errors import InputError, UnsafeCodeError
from toolchain.legacy.codewalk import LAMBDA_CODE_KEYS, ConfigCode, scan_config
from toolchain.legacy.lambdas import (
    _check_shape_mask_modules,
    decode_lambda,
    short_repr,
    vet_lambda,
)

CATALOGUE_FUNCTION = "scale_sum"
"""The custom-object name a catalogue Lambda is bound to (:func:`toolchain.legacy.lambdas.
scale_sum`, and :class:`toolchain.convert.architecture.ScaleSum` in the Keras 3 rebuild)."""

MAPPING = re.compile(r"^(?P<layer>[^=]+)=(?P<file>.+\.py):(?P<function>[A-Za-z_][A-Za-z0-9_]*)$")
"""``LAYER=path/to/module.py:function``."""


@dataclass(frozen=True)
class MappedFunction:
    """A user's function standing for one Lambda (``--lambda LAYER=FILE.py:FUNCTION``).

    Attributes:
        layer: the layer name or path as the user wrote it.
        module_file: the user's Python file, resolved.
        function: the function's name in it.
    """

    layer: str
    module_file: Path
    function: str

    @property
    def text(self) -> str:
        """``LAYER=FILE.py:FUNCTION`` as given."""
        return f"{self.layer}={self.module_file}:{self.function}"


@dataclass(frozen=True)
class LambdaBinding:
    """What one Lambda of the file becomes.

    Attributes:
        path: its layer path (``lrn_1``, ``inner/scale_sum``).
        kind: ``catalogue`` or ``mapped``.
        function: the custom-object name it is bound to in the config.
        arguments: its ``arguments`` (passed to the function as keyword arguments).
        file_code: the file's own bytecode as recovered source or disassembly (never run).
        module_file: for a mapped Lambda, the user's file; its sha256 is ``module_sha256``.
    """

    path: str
    kind: Literal["catalogue", "mapped"]
    function: str
    arguments: dict[str, Any]
    file_code: str
    module_file: Path | None = None
    module_sha256: str | None = None

    def describe(self) -> str:
        """One line for reports."""
        if self.kind == "catalogue":
            return f"{self.path}: catalogue {self.function}{self.arguments}"
        return (f"{self.path}: mapped to {self.module_file}:{self.function} (sha256 "
                f"{self.module_sha256}), arguments {self.arguments}")


def parse_mappings(specs: Sequence[str]) -> list[MappedFunction]:
    """Parse ``--lambda`` values; the files must exist.

    Raises:
        InputError: a value is not ``LAYER=FILE.py:FUNCTION``, names a missing file, or maps a
            layer twice.
    """
    mapped: list[MappedFunction] = []
    for spec in specs:
        match = MAPPING.match(spec)
        if match is None:
            raise InputError(f"--lambda {spec!r} is not LAYER=FILE.py:FUNCTION")
        module_file = Path(match["file"]).expanduser()
        if not module_file.is_file():
            raise InputError(f"--lambda {spec!r}: {module_file}: no such Python file")
        if any(m.layer == match["layer"] for m in mapped):
            raise InputError(f"--lambda: layer {match['layer']!r} is mapped twice")
        mapped.append(MappedFunction(match["layer"], module_file.resolve(), match["function"]))
    return mapped


def _site_for(mapping: MappedFunction, paths: Sequence[str]) -> str:
    """The Lambda path a mapping names: its full path, or a name only one Lambda has."""
    if mapping.layer in paths:
        return mapping.layer
    ends = [p for p in paths if p.rsplit("/", 1)[-1] == mapping.layer]
    if len(ends) == 1:
        return ends[0]
    listed = ", ".join(paths) or "none"
    if ends:
        raise InputError(f"--lambda {mapping.layer!r} matches several Lambda layers "
                         f"({', '.join(ends)}); give the full path")
    raise InputError(f"--lambda {mapping.layer!r}: the file has no Lambda layer of that name "
                     f"(its Lambda layers: {listed})")


def _file_code(path: str, config: dict[str, Any]) -> str:
    try:
        return decode_lambda(path, config.get("function")).shown
    except UnsafeCodeError as exc:
        return f"undecodable ({exc})"


def _arguments(path: str, config: dict[str, Any]) -> dict[str, Any]:
    arguments = config.get("arguments") or {}
    if not isinstance(arguments, dict) or not all(isinstance(k, str) for k in arguments):
        raise UnsafeCodeError(f"Lambda layer {path!r}: arguments {short_repr(arguments)} are not "
                              "a dict of named values; refusing it")
    return dict(arguments)


def vet_lambdas(code: ConfigCode, mappings: Sequence[MappedFunction]) -> list[LambdaBinding]:
    """Decide what every Lambda becomes; refuse any other code.

    Raises:
        UnsafeCodeError: a reference to code outside Keras, or a Lambda that is neither mapped
            nor exactly a catalogue entry (the message says how to map it).
        InputError: a mapping names no Lambda, or two mapped functions share a name.
    """
    if code.callables:
        raise UnsafeCodeError(code.callables[0].refusal)
    paths = [site.path for site in code.lambdas]
    by_site = {_site_for(m, paths): m for m in mappings}
    names: dict[str, Path] = {}
    bindings = []
    for site in code.lambdas:
        mapped = by_site.get(site.path)
        if mapped is None:
            try:
                vetted = vet_lambda(site.path, site.config)
            except UnsafeCodeError as exc:
                raise UnsafeCodeError(
                    f"{exc}. If you know what it computes, map it to your own function: "
                    f"--lambda {site.path}=FILE.py:FUNCTION") from exc
            bindings.append(LambdaBinding(site.path, "catalogue", CATALOGUE_FUNCTION,
                                          {"scale": vetted.scale}, vetted.source))
            continue
        _check_shape_mask_modules(site.path, site.config)
        if names.setdefault(mapped.function, mapped.module_file) != mapped.module_file:
            raise InputError(f"--lambda: two files define the mapped function {mapped.function!r}"
                             "; rename one (Keras finds a function by its name)")
        bindings.append(LambdaBinding(
            site.path, "mapped", mapped.function, _arguments(site.path, site.config),
            _file_code(site.path, site.config), mapped.module_file,
            sha256_file(mapped.module_file)))
    return bindings


def bind_config(config: dict[str, Any], bindings: Sequence[LambdaBinding]) -> dict[str, Any]:
    """A copy of ``config`` with each Lambda naming its bound function instead of bytecode.

    Call it only with the bindings :func:`vet_lambdas` returned for this very config.
    """
    bound = copy.deepcopy(config)
    by_path = {b.path: b for b in bindings}
    for site in scan_config(bound).lambdas:
        binding = by_path[site.path]
        for key in LAMBDA_CODE_KEYS:
            site.config.pop(key, None)
        site.config["function"] = binding.function
        site.config["function_type"] = "function"
        site.config["arguments"] = dict(binding.arguments)
    return bound


def load_functions(bindings: Sequence[LambdaBinding]) -> dict[str, Callable[..., Any]]:
    """Import each mapped Lambda's function from the user's own file (their code, run by their
    request); the catalogue's ``scale_sum`` comes from this toolchain.

    Raises:
        InputError: the file cannot be imported or has no such function.
    """
    from toolchain.legacy.lambdas import scale_sum

    functions: dict[str, Callable[..., Any]] = {}
    for binding in bindings:
        if binding.kind == "catalogue":
            functions[binding.function] = scale_sum
            continue
        assert binding.module_file is not None
        functions[binding.function] = _import_function(binding.module_file, binding.function)
    return functions


def _import_function(module_file: Path, function: str) -> Callable[..., Any]:
    name = f"facenet_user_lambdas_{re.sub(r'[^A-Za-z0-9_]', '_', module_file.stem)}"
    module = sys.modules.get(name)
    if module is None or getattr(module, "__file__", None) != str(module_file):
        spec = importlib.util.spec_from_file_location(name, module_file)
        if spec is None or spec.loader is None:
            raise InputError(f"{module_file}: cannot be imported as a Python module")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the user's own module: any failure is theirs to fix
            raise InputError(f"{module_file}: importing it failed ({type(exc).__name__}: "
                             f"{exc})") from exc
        sys.modules[name] = module
    found = getattr(module, function, None)
    if not callable(found):
        raise InputError(f"{module_file} has no function {function!r}")
    return found


def binding_records(bindings: Sequence[LambdaBinding]) -> list[Mapping[str, Any]]:
    """The bindings as JSON-ready records (reports, the legacy runner's plan)."""
    return [
        {"layer": b.path, "kind": b.kind, "function": b.function, "arguments": b.arguments,
         "file_code": b.file_code,
         "module_file": str(b.module_file) if b.module_file else None,
         "module_sha256": b.module_sha256}
        for b in bindings
    ]
