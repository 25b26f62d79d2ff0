"""How one field of a legacy layer config is handled: translated, ignored with a reason, accepted
only at its default, or refused; and the field groups many layer kinds share.

A :class:`Field` is one row of a layer kind's field table
(:data:`toolchain.convert.generic.layers.LAYER_KINDS`). :func:`translate_config` applies a kind's
fields to one layer config and returns the Keras 3 constructor arguments, or the list of every
problem (a refused field, a value outside what is accepted, a field the table does not know). A
field no row names is refused: nothing in a config is dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Rule = Literal["translated", "ignored", "default-only", "refused"]


class Refused(ValueError):
    """A config value a field's translation cannot accept (the message says why)."""


@dataclass(frozen=True)
class Field:
    """What happens to one config field.

    Attributes:
        rule: ``translated`` (given to the Keras 3 constructor as ``arg``, through ``convert``),
            ``ignored`` (no effect on inference: ``reason``), ``default-only`` (accepted only when
            its value is one of ``accepted``, then dropped) or ``refused`` (its presence refuses
            the layer; a value of ``None`` or one of ``accepted`` is tolerated).
        arg: the Keras 3 argument name (``translated``).
        convert: turns the legacy value into the Keras 3 one; raises :class:`Refused`.
        accepted: the values ``default-only``/``refused`` let through.
        reason: why it is ignored, default-only or refused (shown in refusals and the docs).
    """

    rule: Rule
    arg: str | None = None
    convert: Callable[[Any], Any] | None = None
    accepted: tuple[Any, ...] = ()
    reason: str = ""

    def describe(self, name: str) -> str:
        """One line for the layer table."""
        if self.rule == "translated":
            return name if self.arg in (None, name) else f"{name} -> {self.arg}"
        if self.rule == "default-only":
            values = " or ".join(repr(v) for v in self.accepted)
            return f"{name} (only {values}: {self.reason})"
        return f"{name} ({self.reason})"


def same(convert: Callable[[Any], Any] | None = None) -> Field:
    """Translated to the Keras 3 argument of the same name."""
    return Field("translated", convert=convert)


def renamed(arg: str, convert: Callable[[Any], Any] | None = None) -> Field:
    """Translated to Keras 3 argument ``arg``."""
    return Field("translated", arg=arg, convert=convert)


def ignored(reason: str) -> Field:
    """No effect on inference."""
    return Field("ignored", reason=reason)


def only(*accepted: Any, reason: str) -> Field:
    """Accepted only at these values (then dropped)."""
    return Field("default-only", accepted=accepted, reason=reason)


def refused(reason: str, *tolerated: Any) -> Field:
    """Refuses the layer unless its value is ``None`` or one of ``tolerated``."""
    return Field("refused", accepted=tolerated, reason=reason)


TRAINING_ONLY = "training only: the weights come from the file"

SUPPORTED_ACTIVATIONS = frozenset(
    {"elu", "exponential", "gelu", "linear", "mish", "relu", "selu", "sigmoid", "softmax",
     "softplus", "softsign", "swish", "tanh"}
)
"""Activation names Keras 2 and Keras 3 define the same way."""

REFUSED_ACTIVATIONS = {
    "hard_sigmoid": "Keras 2 computes clip(0.2x + 0.5), Keras 3 relu6(x + 3) / 6",
}
"""Activation names whose Keras 3 function differs from Keras 2's, and how."""


REWRITTEN_ACTIVATIONS = {
    "gelu": "rebuilt as 0.5 x (1 + erf(x / sqrt(2))), the same function: TensorFlow's own gelu "
            "lowers to Erfc, which tf2onnx cannot convert",
}
"""Activation names rebuilt by a function of :mod:`.activations`, and why."""


def activation(value: Any) -> str:
    """A Keras 2 activation name that means the same in Keras 3 (a name of
    :data:`REWRITTEN_ACTIVATIONS` is swapped for its function when the layer is made)."""
    if value is None:
        return "linear"
    if value in REFUSED_ACTIVATIONS:
        raise Refused(f"activation {value!r}: {REFUSED_ACTIVATIONS[value]}")
    if value not in SUPPORTED_ACTIVATIONS:
        raise Refused(f"activation {str(value)[:60]!r} is not one of "
                      f"{', '.join(sorted(SUPPORTED_ACTIVATIONS))}")
    return str(value)


def dtype(value: Any) -> str:
    """``float32`` given as a name or a dtype policy; anything else is refused."""
    if isinstance(value, dict):
        value = (value.get("config") or {}).get("name")
    if value not in (None, "float32"):
        raise Refused(f"dtype {str(value)[:60]!r}: only float32 layers are rebuilt")
    return "float32"


def channels_last(value: Any) -> str:
    """``data_format`` ``channels_last`` (or unset)."""
    if value not in (None, "channels_last"):
        raise Refused(f"data_format {value!r}: only channels_last is rebuilt and tested")
    return "channels_last"


def one_axis(value: Any) -> int:
    """An axis given as an int or a one-element list."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if type(value) is not int:
        raise Refused(f"axis {value!r} is not one axis")
    return value


def as_tuple(value: Any) -> Any:
    """Lists (at any depth) as tuples, as Keras 3 shape arguments expect."""
    return tuple(as_tuple(v) for v in value) if isinstance(value, list) else value


COMMON: dict[str, Field] = {
    "name": same(),
    "trainable": ignored("inference only; a frozen nested model's weight order is read from it"),
    "dtype": same(dtype),
    "batch_input_shape": ignored("read as the model's input shape"),
    "batch_size": ignored("the batch size is left dynamic"),
    "input_dtype": ignored("read as the model's input dtype"),
}
"""Fields every layer kind takes."""


def training_only(*prefixes: str) -> dict[str, Field]:
    """``<prefix>_initializer``, ``_regularizer`` and ``_constraint`` of each weight, and the
    activity regularizer: they shape training, never inference."""
    fields = {"activity_regularizer": ignored(TRAINING_ONLY)}
    for prefix in prefixes:
        for suffix in ("initializer", "regularizer", "constraint"):
            fields[f"{prefix}_{suffix}"] = ignored(TRAINING_ONLY)
    return fields


def translate_config(class_name: str, fields: Mapping[str, Field], config: Mapping[str, Any]
                     ) -> tuple[dict[str, Any], list[str]]:
    """Keras 3 constructor arguments for ``config``, and every problem found.

    Returns:
        ``(kwargs, problems)``; ``problems`` is empty when the layer can be rebuilt.
    """
    kwargs: dict[str, Any] = {}
    problems: list[str] = []
    for name, value in config.items():
        field = fields.get(name)
        if field is None:
            problems.append(f"field {name!r} is not known for {class_name}")
        elif field.rule == "ignored":
            continue
        elif field.rule in ("default-only", "refused"):
            if value is not None and as_tuple(value) not in [as_tuple(a) for a in field.accepted]:
                problems.append(f"{name} {str(value)[:60]!r} is not supported ({field.reason})")
        else:
            try:
                kwargs[field.arg or name] = field.convert(value) if field.convert else value
            except Refused as exc:
                problems.append(str(exc))
    return kwargs, problems
