"""Decode and vet the marshaled Python bytecode of Keras ``Lambda`` layers without running it.

Keras 2 stores a ``Lambda`` function as ``[base64(marshal.dumps(code)), defaults, closure]``. The
marshal format carries no Python version; the bytes are decoded with xdis (a pure-Python
unmarshaller that builds inert code descriptions for any CPython version, never a callable) first as
Python 3.6 (what the FaceNet file was saved with), then as the running Python and the other 3.x
versions. The decoded instructions are compared with the one function this toolchain accepts, the
residual scaling ``lambda inputs, scale: inputs[0] + inputs[1] * scale``; anything else is refused
with :class:`~toolchain.core.errors.UnsafeCodeError` showing what the code would have done.
"""

from __future__ import annotations

import binascii
import contextlib
import io
import sys
from dataclasses import dataclass
from typing import Any

from toolchain.core.errors import UnsafeCodeError

VETTED_SOURCE = "lambda inputs, scale: inputs[0] + inputs[1] * scale"
"""The only Lambda function accepted: FaceNet's residual branch scaling."""

VETTED_ARGS = ("inputs", "scale")

Instr = tuple[str, object]

VETTED_PY36: tuple[Instr, ...] = (
    ("LOAD_FAST", "inputs"),
    ("LOAD_CONST", 0),
    ("BINARY_SUBSCR", None),
    ("LOAD_FAST", "inputs"),
    ("LOAD_CONST", 1),
    ("BINARY_SUBSCR", None),
    ("LOAD_FAST", "scale"),
    ("BINARY_MULTIPLY", None),
    ("BINARY_ADD", None),
    ("RETURN_VALUE", None),
)
"""``VETTED_SOURCE`` as compiled by CPython 3.6 (the FaceNet file's Lambdas, as decoded by xdis)."""

CODE_FLAG_VARARGS = 0x04
CODE_FLAG_VARKEYWORDS = 0x08
CODE_FLAG_GENERATOR_LIKE = 0x20 | 0x80 | 0x100 | 0x200


def _candidate_versions() -> list[tuple[int, int]]:
    running = (sys.version_info.major, sys.version_info.minor)
    others = [(3, minor) for minor in range(5, 14) if (3, minor) not in ((3, 6), running)]
    return [(3, 6), running, *others]


@dataclass(frozen=True)
class DecodedLambda:
    """A Lambda's function, decoded into an inert code description (never made callable)."""

    layer: str
    python_version: tuple[int, int]
    code: Any
    instructions: tuple[Instr, ...]
    disassembly: str
    source: str | None
    decompile_error: str | None

    @property
    def shown(self) -> str:
        """The recovered source, or the disassembly when decompiling failed."""
        return self.source if self.source is not None else self.disassembly

    @property
    def version_text(self) -> str:
        """The Python version as ``3.6``."""
        return ".".join(map(str, self.python_version))


@dataclass(frozen=True)
class VettedLambda:
    """A Lambda whose code is exactly the vetted residual scaling, with its ``scale`` argument."""

    layer: str
    scale: float
    source: str
    disassembly: str
    python_version: str


def _magic_int(version: tuple[int, int]) -> int:
    from xdis.magics import by_version, magic2int

    return int(magic2int(by_version[f"{version[0]}.{version[1]}"]))


def _unmarshal(data: bytes, version: tuple[int, int]) -> Any | None:
    """Decode ``data`` as a code object marshaled by CPython ``version``; ``None`` if it is not."""
    from xdis.unmarshal import load_code

    stream = io.BytesIO(data)
    chatter = io.StringIO()
    try:
        # xdis writes "Unknown type ..." (with raw control bytes) to stderr on junk input.
        with contextlib.redirect_stderr(chatter), contextlib.redirect_stdout(chatter):
            code = load_code(stream, _magic_int(version))
    except Exception:  # any parse failure means "not this version"
        return None
    if stream.tell() != len(data) or not hasattr(code, "co_code"):
        return None
    for attr in ("co_consts", "co_names", "co_varnames"):
        if not isinstance(getattr(code, attr, None), tuple | list):
            return None
    return code


def _instructions(code: Any, version: tuple[int, int]) -> tuple[tuple[Instr, ...], str]:
    from xdis.bytecode import Bytecode
    from xdis.op_imports import get_opcode_module

    bytecode = Bytecode(code, get_opcode_module(version))
    instrs: list[Instr] = []
    for ins in bytecode:
        if ins.opname in ("CACHE", "RESUME", "NOP"):
            continue
        argval = ins.argval if ins.opcode >= bytecode.opc.HAVE_ARGUMENT else None
        if ins.opname == "BINARY_OP":
            argval = ins.argrepr
        instrs.append((ins.opname, argval))
    return tuple(instrs), bytecode.dis()


def _decompile(code: Any, version: tuple[int, int]) -> tuple[str | None, str | None]:
    """Source of a lambda's code via uncompyle6 (no execution), or ``(None, reason)``."""
    try:
        from uncompyle6.semantics.pysource import code_deparse
    except ImportError as exc:
        return None, f"uncompyle6 is not installed ({exc})"
    out = io.StringIO()
    try:
        code_deparse(code, out=out, version=version)
    except Exception as exc:  # any decompiler failure falls back to disassembly
        return None, f"uncompyle6 cannot decompile Python {version[0]}.{version[1]} code ({exc!r})"
    body = out.getvalue().strip()
    body = body.removeprefix("return ").strip()
    argcount = int(getattr(code, "co_argcount", 0))
    args = ", ".join(str(v) for v in tuple(code.co_varnames)[:argcount])
    if "\n" in body:
        return f"def {code.co_name}({args}):\n" + "\n".join(
            f"    {line}" for line in out.getvalue().strip().splitlines()
        ), None
    return f"lambda {args}: {body}", None


def function_bytes(layer: str, function: Any) -> bytes:
    """The marshaled bytes of a Lambda's ``function`` config entry.

    Raises:
        UnsafeCodeError: the entry is not base64 text (so it cannot be vetted).
    """
    raw = function[0] if isinstance(function, list | tuple) and function else function
    if not isinstance(raw, str):
        raise UnsafeCodeError(
            f"Lambda layer {layer!r}: function is {type(raw).__name__}, not base64 marshaled "
            "bytecode; refusing it"
        )
    try:
        return binascii.a2b_base64(raw.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise UnsafeCodeError(
            f"Lambda layer {layer!r}: function is not valid base64 ({exc}); refusing it"
        ) from exc


def decode_lambda(layer: str, function: Any) -> DecodedLambda:
    """Decode a Lambda ``function`` config entry into disassembly and recovered source.

    Raises:
        UnsafeCodeError: the bytes are not a code object of any supported CPython version.
    """
    data = function_bytes(layer, function)
    for version in _candidate_versions():
        code = _unmarshal(data, version)
        if code is None:
            continue
        try:
            instrs, disassembly = _instructions(code, version)
        except Exception:  # undecodable as this version's opcodes
            continue
        source, error = _decompile(code, version)
        return DecodedLambda(layer, version, code, instrs, disassembly, source, error)
    raise UnsafeCodeError(
        f"Lambda layer {layer!r}: {len(data)} bytes of function data are not a marshaled code "
        "object of any CPython 3.5-3.13; cannot vet it, refusing it"
    )


def _vetted_running() -> tuple[Instr, ...]:
    """``VETTED_SOURCE`` compiled (never run) by this interpreter, as xdis decodes it."""
    import marshal

    module = compile(VETTED_SOURCE, "<vetted>", "eval")
    code = next(c for c in module.co_consts if hasattr(c, "co_code"))
    running = (sys.version_info.major, sys.version_info.minor)
    decoded = _unmarshal(marshal.dumps(code), running)
    return _instructions(decoded, running)[0]


def _pattern_for(version: tuple[int, int]) -> tuple[Instr, ...] | None:
    if version == (3, 6):
        return VETTED_PY36
    if version == (sys.version_info.major, sys.version_info.minor):
        return _vetted_running()
    return None


def _mismatch(decoded: DecodedLambda, function: Any) -> str | None:
    """Why the decoded code is not the vetted lambda, or ``None`` if it is exactly it."""
    code = decoded.code
    pattern = _pattern_for(decoded.python_version)
    if pattern is None:
        return f"Python {decoded.version_text} bytecode has no vetted pattern"
    if decoded.instructions != pattern:
        return "its instructions differ from the vetted residual scaling"
    if int(code.co_argcount) != 2 or int(getattr(code, "co_kwonlyargcount", 0)) != 0:
        return "its argument count differs"
    if int(getattr(code, "co_posonlyargcount", 0)) != 0:
        return "it has positional-only arguments"
    if tuple(code.co_varnames) != VETTED_ARGS:
        return f"its local names {tuple(code.co_varnames)} differ from {VETTED_ARGS}"
    if tuple(code.co_names):
        return f"it references global names {tuple(code.co_names)}"
    if tuple(getattr(code, "co_freevars", ())) or tuple(getattr(code, "co_cellvars", ())):
        return "it uses closures"
    consts = tuple(c for c in code.co_consts if c is not None)
    if consts != (0, 1) or any(type(c) is not int for c in consts):
        return f"its constants {consts} differ from (0, 1)"
    flags = int(code.co_flags)
    if flags & (CODE_FLAG_VARARGS | CODE_FLAG_VARKEYWORDS | CODE_FLAG_GENERATOR_LIKE):
        return "it takes *args/**kwargs or is a generator/coroutine"
    if isinstance(function, list | tuple) and any(part is not None for part in function[1:]):
        return "it carries defaults or a closure"
    return None


def vet_lambda(layer: str, config: dict[str, Any]) -> VettedLambda:
    """Check a Lambda layer config is exactly the vetted residual scaling with a float ``scale``.

    Nothing is executed: the bytecode is decoded by xdis and compared instruction by instruction
    (opcodes, constants, names, argument count and flags). Its ``output_shape`` must be a plain
    shape and it must have no ``mask``: both would otherwise be code too.

    Raises:
        UnsafeCodeError: anything else; the message shows the recovered source (or disassembly).
    """
    function_type = config.get("function_type", "lambda")
    if function_type != "lambda":
        raise UnsafeCodeError(
            f"Lambda layer {layer!r}: function_type {function_type!r} (function "
            f"{config.get('function')!r}) is not the vetted marshaled lambda; refusing it"
        )
    decoded = decode_lambda(layer, config.get("function"))
    problem = _mismatch(decoded, config.get("function"))
    if problem is not None:
        raise UnsafeCodeError(
            f"Lambda layer {layer!r} carries unvetted Python {decoded.version_text} code "
            f"({problem}); refusing it. "
            f"{'Recovered source' if decoded.source is not None else 'Disassembly'}: "
            f"{decoded.shown!r}"
        )
    arguments = config.get("arguments")
    if not (
        isinstance(arguments, dict)
        and set(arguments) == {"scale"}
        and type(arguments["scale"]) in (float, int)
    ):
        raise UnsafeCodeError(
            f"Lambda layer {layer!r}: arguments {arguments!r} are not exactly {{'scale': float}}; "
            "refusing it"
        )
    _check_shape_mask_modules(layer, config)
    source = decoded.source if decoded.source is not None else VETTED_SOURCE
    return VettedLambda(
        layer=layer,
        scale=float(arguments["scale"]),
        source=source,
        disassembly=decoded.disassembly,
        python_version=decoded.version_text,
    )


def _is_plain_shape(value: Any) -> bool:
    return value is None or (
        isinstance(value, list | tuple)
        and all(d is None or (type(d) is int and d >= 0) for d in value)
    )


def _check_shape_mask_modules(layer: str, config: dict[str, Any]) -> None:
    """Refuse a Lambda whose ``output_shape`` or ``mask`` is code, or whose modules are not names.

    Keras builds ``output_shape`` and ``mask`` from bytecode (``*_type: "lambda"``) or by name
    (``"function"``) just like ``function``; only a plain shape and no mask are accepted. The
    ``module`` entries name where the function was defined; Keras only lends that module's globals
    to the lambda, and the vetted code reads no global name (recover drops them anyway).

    Raises:
        UnsafeCodeError: anything else.
    """
    shape, shape_type = config.get("output_shape"), config.get("output_shape_type", "raw")
    if shape_type != "raw" or not _is_plain_shape(shape):
        raise UnsafeCodeError(
            f"Lambda layer {layer!r}: output_shape {short_repr(shape)} (output_shape_type "
            f"{shape_type!r}) is not a plain shape; an output_shape given as code is refused"
        )
    mask, mask_type = config.get("mask"), config.get("mask_type", "raw")
    if mask is not None or mask_type != "raw":
        raise UnsafeCodeError(
            f"Lambda layer {layer!r}: mask {short_repr(mask)} (mask_type {mask_type!r}) is set; a "
            "mask given as code or a value is refused"
        )
    for key in ("module", "output_shape_module", "mask_module"):
        if not isinstance(config.get(key), str | None):
            raise UnsafeCodeError(
                f"Lambda layer {layer!r}: {key} {short_repr(config.get(key))} is not a module "
                "name; refusing it"
            )


def short_repr(value: Any) -> str:
    """``repr(value)`` cut to 80 characters, for one-line messages."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def scale_sum(inputs: Any, scale: float) -> Any:
    """The vetted function itself, written here: ``inputs[0] + inputs[1] * scale``."""
    return inputs[0] + inputs[1] * scale
