"""``facenet bench ...``: the project's own measuring tools (``nox -s bench`` runs them).

``runtimes`` (every runtime side by side, the baselines beside), ``scale`` (galleries of 10k to
1M identities), ``load`` (``facenet serve`` under concurrent clients and a SIGKILL) and ``int8``
(the int8 quantization sweep). Each command is a module with its own ``app``; :data:`app` merges
them under the ``bench`` group.
"""

from __future__ import annotations

import typer

from toolchain.cli.bench import int8, load, runtimes, scale

app = typer.Typer(
    name="bench", no_args_is_help=True,
    help="The project's benchmarks: runtimes side by side, gallery scale, service load, int8.")
"""The ``bench`` group (added to the root app by :mod:`toolchain.cli.app`)."""

for _command in (runtimes.app, scale.app, load.app, int8.app):
    app.add_typer(_command)
