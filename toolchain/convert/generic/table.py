"""The supported-layer table as markdown, rendered from :data:`.layers.LAYER_KINDS` itself.

``facenet model convert --layers`` prints it and ``docs/convert_layers.md`` is this text (a test
keeps the file equal to it), so the docs never say more or less than the code does.
"""

from __future__ import annotations

from toolchain.convert.generic.fields import (
    COMMON,
    REFUSED_ACTIVATIONS,
    REWRITTEN_ACTIVATIONS,
    SUPPORTED_ACTIVATIONS,
    Field,
)
from toolchain.convert.generic.layers import LAYER_KINDS, TESTED_ON, LayerKind

DOC_PATH = "docs/convert_layers.md"


def _cell(text: str) -> str:
    return text.replace("|", "\\|") or "-"


def _fields(fields: dict[str, Field], rules: tuple[str, ...]) -> str:
    """The fields under ``rules``; ignored fields grouped by their reason."""
    if rules != ("ignored",):
        return ", ".join(f.describe(name) for name, f in fields.items() if f.rule in rules)
    by_reason: dict[str, list[str]] = {}
    for name, f in fields.items():
        if f.rule == "ignored":
            by_reason.setdefault(f.reason, []).append(name)
    return "; ".join(f"{', '.join(names)} ({reason})" for reason, names in by_reason.items())


def _row(kind: LayerKind) -> str:
    own = dict(kind.fields)
    renames = ", ".join(f"{a} -> {b}" for a, b in kind.weights.items())
    cells = [
        f"`{kind.class_name}`", kind.keras, ", ".join(kind.tested),
        _fields(own, ("translated",)),
        _fields(own, ("ignored",)),
        _fields(own, ("default-only", "refused")),
        renames, kind.note,
    ]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def render_markdown() -> str:
    """The whole table page."""
    common = "; ".join(f.describe(name) for name, f in COMMON.items())
    tested = "; ".join(f"**{version}**: {what}" for version, what in TESTED_ON.items())
    refused = "; ".join(f"`{name}` ({why})" for name, why in REFUSED_ACTIVATIONS.items())
    rewritten = "; ".join(f"`{name}` {how}" for name, how in REWRITTEN_ACTIVATIONS.items())
    lines = [
        "# Layer classes `facenet model convert` rebuilds",
        "",
        "Generated from `LAYER_KINDS` in `toolchain/convert/generic/layers.py` by "
        "`toolchain.convert.generic.table.render_markdown` "
        "(`facenet model convert --layers` prints "
        "it; a test keeps this file equal to it).",
        "",
        "A class that is not in this table is refused before anything is written: "
        "`unsupported layer X (N of them)`, exit 3. A class that is not a Keras built-in at all "
        "(a custom object) is refused as code, exit 5. In every row, a config field that is not "
        "listed is refused too, and so is a value a translation cannot accept: nothing is "
        "dropped silently.",
        "",
        f"Config formats tested (converted with parity <= 1e-5 in the tests): {tested}.",
        "",
        f"Fields every class takes: {common}.",
        "",
        f"Activations (`activation` fields and the `Activation` layer): "
        f"{', '.join(sorted(SUPPORTED_ACTIVATIONS))}; {rewritten}. Refused: {refused}.",
        "",
        "| legacy class | Keras 3 | tested formats | translated | ignored | "
        "default-only / refused | weight renames | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [_row(kind) for kind in LAYER_KINDS.values()]
    return "\n".join(lines) + "\n"
