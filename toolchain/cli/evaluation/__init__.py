"""``facenet eval ...``: measuring recognition on labelled photos.

``dataset`` (a train/ + val/ per-person set: identification, ROC, the threshold to store),
``pairs`` (the verification protocol of the field: a pairs file) and ``crops`` (every crop
compared, face_recognition beside). Each command is a module with its own ``app``; :data:`app`
merges them under the ``eval`` group.
"""

from __future__ import annotations

import typer

from toolchain.cli.evaluation import crops, dataset, pairs

app = typer.Typer(
    name="eval", no_args_is_help=True,
    help="Evaluation on labelled photos: a train/val dataset, a pairs file, the crop study.")
"""The ``eval`` group (added to the root app by :mod:`toolchain.cli.app`)."""

for _command in (dataset.app, pairs.app, crops.app):
    app.add_typer(_command)
