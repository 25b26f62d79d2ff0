"""``facenet model ...``: model work, for people who convert and check models.

``fetch`` the pinned legacy file and photos, ``inspect`` a legacy ``.h5`` without running it,
``convert`` any legacy Keras ``.h5`` (parity against its original graph), ``export`` FaceNet to
every format, ``pack`` the runtime's models into one folder, ``parity`` against the original graph,
``verify`` and ``checksums`` of the artifacts. Each command is a module with its own ``app``;
:data:`app` merges them under the ``model`` group.
"""

from __future__ import annotations

import typer

from toolchain.cli.model import convert, export, fetch, inspect, pack, parity, verify

app = typer.Typer(
    name="model", no_args_is_help=True,
    help="Model work: fetch, inspect, convert any legacy .h5, export FaceNet, parity, verify.")
"""The ``model`` group (added to the root app by :mod:`toolchain.cli.app`)."""

for _command in (fetch.app, inspect.app, convert.app, export.app, pack.app, parity.app,
                 verify.app):
    app.add_typer(_command)
