"""The CLI reference, walked from the ``facenet`` typer app: every group, command and option.

Nothing here is written by hand: a command, option, default or help text changed in
``toolchain/cli`` changes the page at the next build. Templates also read single defaults with
:func:`option_default`, so prose such as "``--max-request-mb`` (default 20)" follows the code.
"""

from __future__ import annotations

import enum
import html
import os
from collections.abc import Iterator
from functools import cache
from typing import Any

Command = Any
"""A command of typer's vendored click (``typer._click``): read by duck typing, so this module
depends on no private typer module."""
Context = Any
Param = Any


@cache
def root() -> Command:
    """The click command tree of ``toolchain.cli.app``."""
    import typer.main

    from toolchain.cli.app import app

    return typer.main.get_command(app)


def is_group(command: Command) -> bool:
    """Whether ``command`` has subcommands."""
    return hasattr(command, "list_commands")


def walk(command: Command | None = None, path: tuple[str, ...] = ("facenet",),
         parent: Context | None = None) -> Iterator[tuple[tuple[str, ...], Command, Context]]:
    """Every command and group under ``command`` (depth first, in ``--help`` order), with its
    path of names and its click context."""
    command = command or root()
    ctx = command.context_class(command, info_name=path[-1], parent=parent)
    yield path, command, ctx
    if is_group(command):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from walk(sub, (*path, name), ctx)


def find(path: str) -> tuple[Command, Context]:
    """The command at ``path`` (``"model export"``; ``""`` for the root)."""
    wanted = ("facenet", *path.split()) if path else ("facenet",)
    for names, command, ctx in walk():
        if names == wanted:
            return command, ctx
    raise KeyError(f"no command `facenet {path}`")


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def option_default(path: str, option: str) -> Any:
    """The default of ``option`` (``"--max-request-mb"``) of the command at ``path``."""
    command, _ = find(path)
    for param in command.params:
        if option in param.opts or option in getattr(param, "secondary_opts", []):
            if param.default is None:  # the command decides later: cite the code's constant
                raise KeyError(f"`facenet {path} {option}` has no default of its own; "
                               "cite the constant the command falls back to with code(...)")
            return _plain(param.default)
    raise KeyError(f"`facenet {path}` has no option {option}")


def _cell(text: str) -> str:
    """Text for a table cell: one line, HTML-escaped (``<artifacts>`` is text), pipes kept."""
    return (html.escape(" ".join(text.split())).replace("|", "&#124;")
            .replace("*", "&#42;"))


def _param_row(param: Param, ctx: Context) -> str:
    """One row: the names and value as ``--help`` prints them, and the help text with its
    ``[default: ...]`` and range, as ``--help`` prints them too."""
    record = param.get_help_record(ctx)
    if record is None:
        return ""
    names, help_text = record
    return f"| <code>{_cell(names)}</code> | {_cell(help_text)} |"


def markdown() -> str:
    """The whole reference: one section per command or group, in ``--help`` order.

    Defaults are shown as a user without ``FACENET_ARTIFACTS`` in the environment sees them (the
    build itself sets it to find the pictures).
    """
    saved = os.environ.pop("FACENET_ARTIFACTS", None)
    try:
        return _markdown()
    finally:
        if saved is not None:
            os.environ["FACENET_ARTIFACTS"] = saved


def _markdown() -> str:
    out = []
    for path, command, ctx in walk():
        depth = min(len(path), 4)
        title = " ".join(path)
        out.append(f"{'#' * (depth + 1)} `{title}`\n")
        if command.help:
            out.append(command.help.strip() + "\n")
        pieces = " ".join(command.collect_usage_pieces(ctx))
        out.append(f"```text\n{ctx.command_path} {pieces}\n```\n")
        if is_group(command):
            rows = [f"| [`{name}`](#{_anchor((*path, name))}) | "
                    f"{_cell(sub.get_short_help_str(limit=120))} |"
                    for name in command.list_commands(ctx)
                    if (sub := command.get_command(ctx, name)) is not None and not sub.hidden]
            out.append("| command | what it does |\n| --- | --- |\n" + "\n".join(rows) + "\n")
        params = [p for p in command.params if not getattr(p, "hidden", False)]
        if params:
            rows = [row for p in params if (row := _param_row(p, ctx))]
            out.append("| argument or option | help |\n| --- | --- |\n" + "\n".join(rows)
                       + "\n")
    return "\n".join(out)


def _anchor(path: tuple[str, ...]) -> str:
    """The id mkdocs' toc gives the heading `` `facenet a b` `` (``facenet-a-b``)."""
    return "-".join(path)


def command_paths() -> set[str]:
    """Every command path, as typed after ``facenet`` (``"model export"``; ``""``: the root)."""
    return {" ".join(path[1:]) for path, _, _ in walk()}
