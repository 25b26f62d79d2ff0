"""Render ``docs/templates`` into ``README.md``, the other committed docs and ``docs/pages``.

A template sees:

- ``m``: the snapshot's values by report (``m.parity.formats.onnx.original.max_abs``), and
  ``stamp("parity", ...)``: the line that says where and when those numbers were measured; every
  table of measured numbers is followed by one;
- ``opt("serve", "--max-request-mb")``: an option's default, read from the ``facenet`` app, and
  ``cli_reference()``: the whole CLI reference;
- ``code("toolchain.core.source.H5_SIZE")``: a constant of the code,
  ``default("toolchain.runtime.mtcnn.detector.MTCNNDetector", "min_face_size")`` a parameter's
  default (an option without a default of its own falls back to one of those); ``exit_codes()`` and
  ``api_errors()``: the tables of typed errors and of the HTTP API's error codes;
  ``pyproject()``: ``pyproject.toml`` (the extras);
- ``{% include "partials/X.md.j2" %}``: text shared by several outputs (written once);
- the number filters below (``|f(3)``, ``|pct``, ``|sci``, ``|mb``, ``|n``, ``|x``...), so a
  number is formatted once, the same way everywhere.

Undefined names fail the render (``StrictUndefined``): a template cannot cite a number the
snapshot does not hold.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2

from docs.tooling import cli_reference
from docs.tooling.measurements import ROOT, load_snapshot

TEMPLATES = ROOT / "docs" / "templates"
PAGES = ROOT / "docs" / "pages"
HEADER = ("<!-- Rendered from {template} by `nox -s docs` (python -m docs.tooling render): "
          "edit the template, not this file. -->\n")


def outputs() -> Iterator[tuple[Path, Path]]:
    """Every (template, rendered file): ``root/PATH.j2`` -> ``PATH`` in the repository (README,
    SECURITY, CONTRIBUTING, the folders' READMEs), ``pages/X.md.j2`` -> ``docs/pages/X.md``.
    ``partials/`` holds what several templates include (the security policy is both
    ``SECURITY.md`` and a page)."""
    for folder, target in ((TEMPLATES / "root", ROOT), (TEMPLATES / "pages", PAGES)):
        for template in sorted(folder.rglob("*.j2")):
            relative = template.relative_to(folder)
            yield template, target / relative.with_name(relative.name.removesuffix(".j2"))


def _fixed(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}"


def _pct(value: float, digits: int = 2) -> str:
    """A fraction as a percentage: ``0.9745`` -> ``97.45 %``."""
    return f"{value * 100:.{digits}f} %"


def _sci(value: float, digits: int = 1) -> str:
    return f"{value:.{digits}e}"


def _one_minus(value: float, digits: int = 1) -> str:
    """A cosine next to 1: ``0.9999999999995`` -> ``1 - 4.6e-13``."""
    return f"1 - {1.0 - value:.{digits}e}"


def _mb(size_bytes: float, digits: int = 1) -> str:
    return f"{size_bytes / 1e6:.{digits}f} MB"


def _thousands(value: float) -> str:
    return f"{round(value):,}"


def _times(value: float, digits: int = 1) -> str:
    """A speed ratio: ``2.31`` -> ``2.3x``."""
    return f"{value:.{digits}f}x"


def _sig(value: float, digits: int = 3) -> str:
    """``digits`` significant figures, no exponent: ``51.63`` -> ``51.6``, ``118.4`` -> ``118``."""
    if value == 0:
        return "0"
    text = f"{value:.{digits}g}"
    if "e" in text:
        return f"{value:.0f}"
    return text


def _ms(seconds: float, digits: int = 0) -> str:
    return f"{seconds * 1000:.{digits}f} ms"


FILTERS = {"f": _fixed, "pct": _pct, "sci": _sci, "one_minus": _one_minus, "mb": _mb,
           "n": _thousands, "x": _times, "sig": _sig, "ms": _ms}
"""The number formats the templates use."""


def _code(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _param_default(dotted: str, parameter: str) -> Any:
    """The default of ``parameter`` of the function or class at ``dotted`` (its signature)."""
    import inspect

    default = inspect.signature(_code(dotted)).parameters[parameter].default
    if default is inspect.Parameter.empty:
        raise KeyError(f"{dotted}({parameter}) has no default")
    return default


def _exit_codes() -> list[tuple[int, str, str]]:
    """Every typed error of ``toolchain.core.errors``: exit code, class, docstring."""
    from toolchain.core import errors

    return sorted((cls.exit_code, cls.__name__, " ".join((cls.__doc__ or "").split()))
                  for cls in vars(errors).values()
                  if isinstance(cls, type) and issubclass(cls, errors.ToolchainError))


def _api_errors() -> list[tuple[str, int, int]]:
    """Every error code of the HTTP API: code, HTTP status, the CLI's exit code."""
    from toolchain.service.errors import ERROR_KINDS

    return [(code, kind.status, kind.exit_code) for code, kind in ERROR_KINDS.items()]


def _pyproject() -> Any:
    """``pyproject.toml``, parsed (the extras, the scripts, the contracts)."""
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def stamp_line(snapshot: dict[str, dict[str, Any]], *names: str) -> str:
    """Where and when the numbers of ``names`` were measured, as one italic line (two snapshots
    of one report, such as the crop study's in-sample and out-of-sample parts, named once)."""
    parts: list[str] = []
    for name in names:
        s = snapshot[name]["stamp"]
        machine = s["machine"]
        features = ", ".join(machine["features"]) or "features not recorded"
        part = (f"`{s['report']}` (`{s['made_by']}`), {s['measured']}, {machine['cpu']} "
                f"({features}), {machine['cores']} cores, commit `{s['commit']}`")
        if part not in parts:
            parts.append(part)
        # A measurement without its stamp cannot be cited: KeyError above says which.
    return "*Measured: " + "; ".join(parts) + ".*"


class _Values(dict[str, Any]):
    """A snapshot dict whose keys read as attributes in templates (``m.parity.ok``)."""

    def __getattr__(self, key: str) -> Any:
        try:
            value = self[key]
        except KeyError as exc:
            raise jinja2.UndefinedError(f"no measurement {key!r}") from exc
        return _Values(value) if isinstance(value, dict) else value


def environment() -> jinja2.Environment:
    """The Jinja environment of every template: strict, no HTML escaping (Markdown out)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True, autoescape=False,
    )
    snapshot = load_snapshot()
    env.filters.update(FILTERS)
    env.globals.update(
        m=_Values({name: entry["values"] for name, entry in snapshot.items()}),
        stamp=lambda *names: stamp_line(snapshot, *names),
        opt=cli_reference.option_default,
        cli_reference=cli_reference.markdown,
        code=_code,
        default=_param_default,
        exit_codes=_exit_codes,
        api_errors=_api_errors,
        pyproject=_pyproject,
    )
    return env


class RenderError(Exception):
    """A template that cannot render (a missing measurement, a syntax error): one line."""


def render(template: Path, env: jinja2.Environment | None = None) -> str:
    """The text ``template`` renders to, with its header.

    Raises:
        RenderError: the template names a measurement the snapshot lacks, or is malformed.
    """
    env = env or environment()
    name = template.relative_to(TEMPLATES).as_posix()
    try:
        text = env.get_template(name).render()
    except jinja2.TemplateError as exc:
        where = getattr(exc, "lineno", None)
        raise RenderError(f"{template.relative_to(ROOT)}{f':{where}' if where else ''}: "
                          f"{exc.message or exc}") from exc
    except (KeyError, AttributeError, ImportError) as exc:  # from opt(), code(), the tables
        raise RenderError(f"{template.relative_to(ROOT)}: {exc}") from exc
    header = HEADER.format(template=template.relative_to(ROOT).as_posix())
    return header + text


def render_all(write: bool) -> list[Path]:
    """Render every template; write the outputs when ``write``; return those that differ(ed).

    Raises:
        RenderError: after rendering every other template, one line per template that failed.
    """
    env = environment()
    changed, errors = [], []
    for template, output in outputs():
        try:
            text = render(template, env)
        except RenderError as exc:
            errors.append(str(exc))
            continue
        current = output.read_text(encoding="utf-8") if output.is_file() else None
        if current != text:
            changed.append(output)
            if write:
                output.parent.mkdir(parents=True, exist_ok=True)
                output.write_text(text, encoding="utf-8")
    if errors:
        raise RenderError("\n".join(errors))
    return changed
