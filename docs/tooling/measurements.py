"""The snapshot of measurements the docs cite: ``docs/measurements/<report>.json``.

The README is a static file in git, so the numbers it shows are frozen here with their
provenance. Each snapshot file holds only the fields the templates use (:mod:`.extract` says
which), and a stamp:

- ``report``: the report it was copied from (``reports/parity.json``) and ``made_by``, the command
  that writes that report;
- ``measured``: the report's own date (its ``created``/``started`` field, else the file's mtime);
- ``machine``: CPU model, the instruction-set features that decide the runtimes' kernels, and
  cores: the report's own record when it has one (the bench records it), else this machine's
  (a refresh runs on the machine that just ran the toolchain);
- ``commit``: the commit of the checkout that wrote the report (``--commit``; by default this
  checkout's HEAD, marked ``+changes`` when ``toolchain/`` differs from it).

``refresh`` replaces the snapshot of every report present under ``artifacts/reports`` and keeps
the others as they were (their stamps still say when and where they were measured).
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from docs.tooling.extract import REPORTS, Report

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT_DIR = ROOT / "docs" / "measurements"


def snapshot_path(report: Report) -> Path:
    """Where the snapshot of ``report`` is committed."""
    return SNAPSHOT_DIR / f"{report.name}.json"


def load_snapshot() -> dict[str, dict[str, Any]]:
    """Every committed snapshot by report name: ``{"stamp": {...}, "values": {...}}``."""
    out: dict[str, dict[str, Any]] = {}
    for report in REPORTS:
        path = snapshot_path(report)
        if path.is_file():
            out[report.name] = json.loads(path.read_text(encoding="utf-8"))
    return out


def this_machine() -> dict[str, Any]:
    """CPU model, instruction-set features and cores of the machine running the refresh."""
    from toolchain.bench.machine import cpu_model, isa

    return {"cpu": cpu_model(), "features": isa(), "cores": os.cpu_count() or 1}


def report_machine(data: Any) -> dict[str, Any] | None:
    """The machine a report records about itself (the bench's ``meta``, the load test's and the
    scale bench's top level), if it does."""
    if not isinstance(data, dict):
        return None
    for meta in (data, data.get("meta"), data.get("machine")):
        if isinstance(meta, dict) and "cpu" in meta:
            features = meta.get("isa") or meta.get("features") or []
            return {"cpu": meta["cpu"], "features": list(features),
                    "cores": meta.get("cores", os.cpu_count() or 1)}
    return None


def report_date(data: Any, path: Path) -> str:
    """The day a report was measured: its own timestamp, else its file's mtime (UTC)."""
    if isinstance(data, dict):
        for holder in (data, data.get("meta") if isinstance(data.get("meta"), dict) else {}):
            for key in ("created", "started", "date"):
                value = holder.get(key) if isinstance(holder, dict) else None
                if isinstance(value, str) and len(value) >= 10:
                    return value[:10]
    return datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc).date().isoformat()


def head_commit() -> str:
    """This checkout's HEAD (12 hex digits), ``+changes`` if the package differs from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              check=True).stdout.strip()

    commit = git("rev-parse", "--short=12", "HEAD")
    dirty = git("status", "--porcelain", "--", "toolchain", "legacy_env", "noxfile.py")
    return commit + ("+changes" if dirty else "")


def refresh(artifacts: Path, only: set[str] | None = None,
            commit: str | None = None) -> list[str]:
    """Copy the cited fields of every report under ``artifacts`` into the snapshot; return one
    line per report saying what happened."""
    lines = []
    commit = commit or head_commit()
    local = this_machine()
    SNAPSHOT_DIR.mkdir(parents=True, exist_ok=True)
    for report in REPORTS:
        if only is not None and report.name not in only:
            continue
        path = artifacts / report.path
        if not path.is_file():
            lines.append(f"{report.name}: {path} missing (made by `{report.made_by}`); "
                         "snapshot kept")
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        values = report.extract(data)
        if values is None:
            lines.append(f"{report.name}: {path} holds none of it (made by "
                         f"`{report.made_by}`); snapshot kept")
            continue
        machine = report_machine(data) or local
        if not machine["features"] and machine["cpu"] == local["cpu"]:
            machine["features"] = local["features"]  # a report that records the CPU only
        entry = {
            "stamp": {
                "report": report.path,
                "made_by": report.made_by,
                "measured": report_date(data, path),
                "machine": machine,
                "commit": commit,
            },
            "values": values,
        }
        target = snapshot_path(report)
        text = json.dumps(entry, indent=1, sort_keys=True) + "\n"
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
        lines.append(f"{report.name}: {report.path} -> {target.relative_to(ROOT)}")
    return lines
