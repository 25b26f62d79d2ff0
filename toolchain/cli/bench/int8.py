"""``facenet bench int8``: quantize FaceNet to int8 every way tried; check, time and report each.

A thin adapter over :func:`toolchain.convert.int8_sweep.sweep_variants`; writes
``reports/int8_variants.json``.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from toolchain.cli.common import ArtifactsOption
from toolchain.core.paths import DEFAULT_ARTIFACTS, Layout

log = logging.getLogger(__name__)

app = typer.Typer()
"""``facenet bench int8`` (added to the ``bench`` group by :mod:`toolchain.cli.bench`)."""


@app.command("int8")
def int8(
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
    repeats: Annotated[
        int, typer.Option("--repeats", min=1, max=100, help="Timed batch-16 runs per variant.")
    ] = 7,
    variants: Annotated[list[str] | None, typer.Option(
        "--variant", metavar="NAME", show_default=False,
        help="Sweep only this variant (a name of the report's rows), repeatable [default: "
             "every variant].")] = None,
) -> None:
    """Quantize FaceNet to int8 every way tried; check, time and report each variant."""
    from toolchain.convert.int8_sweep import (
        SPEED_TOLERANCE,
        VARIANTS_REPORT,
        best_variant,
        sweep_variants,
    )
    from toolchain.convert.quantize import CHOSEN, VARIANTS
    from toolchain.core.integrity import record_files

    by_name = {v.name: v for v in VARIANTS}
    unknown = [name for name in variants or () if name not in by_name]
    if unknown:
        raise typer.BadParameter(f"unknown variant {unknown[0]!r}; the variants: "
                                 f"{', '.join(by_name)}", param_hint="--variant")
    chosen = [by_name[name] for name in dict.fromkeys(variants)] if variants else VARIANTS
    layout = Layout(artifacts)
    records = sweep_variants(layout, chosen, repeats=repeats)
    record_files(layout, [layout.reports_dir / VARIANTS_REPORT])
    for r in records:
        if r.check is None:
            print(f"{r.variant.name:<30} failed: {r.error}")
            continue
        print(f"{r.variant.name:<30} x{r.speedup or 0:.2f} vs fp32  "
              f"{'ok ' if r.accepted else 'off'}  {r.check.describe()}")
    best = best_variant(records)
    print(f"fastest within the bound (ties within {SPEED_TOLERANCE:.0%} go to the best val "
          f"cosine): {best.variant.name if best else 'none'}; the exporter uses {CHOSEN.name}")
    log.info("wrote %s", layout.reports_dir / VARIANTS_REPORT)
