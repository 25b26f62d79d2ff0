"""``facenet model pack``: write a model pack, the one folder a machine that only recognizes faces
needs (the runtime's models and a manifest with every file's sha256, the weights fingerprint, the
default threshold and crop).

A thin adapter over :func:`toolchain.runtime.pack_writer.write_pack`. The export writes the full
pack into ``<artifacts>/pack``; this command writes another, e.g. a slim one for a container or a
Raspberry Pi (``--runtime onnxruntime``), from the artifacts tree or from an existing pack.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from toolchain.cli.common import ArtifactsOption, display_text, problem
from toolchain.cli.options import ModelsOption
from toolchain.core.paths import DEFAULT_ARTIFACTS

app = typer.Typer()
"""``facenet model pack`` (added to the ``model`` group by :mod:`toolchain.cli.model`)."""


@app.command("pack")
def pack(
    out: Annotated[Path, typer.Option(
        "--out", file_okay=False, show_default=False, metavar="DIR",
        help="The pack's folder: new, empty, or an earlier pack (replaced whole).")],
    runtime: Annotated[list[str] | None, typer.Option(
        "--runtime", show_default=False, metavar="NAME",
        help="Hold the models of this runtime, onnxruntime or openvino (repeatable) "
             "[default: every runtime the source holds].")] = None,
    precision: Annotated[list[str] | None, typer.Option(
        "--precision", show_default=False, metavar="NAME",
        help="Hold the models of this precision, fp32 or int8 (repeatable) [default: both].")
    ] = None,
    copy: Annotated[bool, typer.Option(
        "--copy", help="Copy the files (default: hard links where the filesystem allows).")
    ] = False,
    models: ModelsOption = None,
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
) -> None:
    """Write a model pack (from the artifacts' models, or --models PACK) into --out DIR.

    A pack written inside the --artifacts tree (``artifacts/pack-onnxruntime``, as the deployment
    page does) is recorded in its ``SHA256SUMS``, as every step that writes there records what it
    wrote, so ``facenet model verify`` stays clean."""
    from toolchain.core.integrity.sums import is_tracked, record_files, relative_to_tree
    from toolchain.core.paths import Layout
    from toolchain.runtime.pack import ArtifactModels, ModelSource, open_pack
    from toolchain.runtime.pack_writer import select_runs, write_pack

    source: ModelSource = open_pack(models) if models is not None else ArtifactModels(
        Layout(artifacts))
    summary = write_pack(source, out, select_runs(runtime or [], precision or []),
                         link=not copy, made_by="facenet model pack")
    layout = Layout(artifacts)
    inside = relative_to_tree(summary.path, layout.root)
    if inside not in (None, ".") and is_tracked(inside):
        record_files(layout, [summary.path])
    for line in summary.left_out:
        problem(f"left out: {line}")
    runs = ", ".join(f"{run.runtime} {run.precision}" for run in summary.runs)
    print(f"wrote {display_text(summary.path)}: {summary.files} files, "
          f"{summary.size_bytes / 2**20:.1f} MiB ({summary.linked} hard-linked), runs {runs}")
