"""``python -m docs.tooling render|check|refresh|pictures`` (run by ``nox -s docs`` and lint)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from docs.tooling import measurements, numbers, pictures, render


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; 1 when the check finds problems."""
    parser = argparse.ArgumentParser(prog="python -m docs.tooling", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("render", help="render docs/templates into README.md and docs/pages")
    sub.add_parser("check", help="rendered files up to date, no number typed by hand")
    refresh = sub.add_parser("refresh", help="copy artifacts/reports into docs/measurements")
    refresh.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    refresh.add_argument("--only", help="comma-separated report names (default: all present)")
    refresh.add_argument("--commit", help="the commit that wrote the reports (default: HEAD)")
    missing = sub.add_parser("pictures", help="print the steps that make the missing pictures")
    missing.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    args = parser.parse_args(argv)
    try:
        return run(args)
    except render.RenderError as exc:
        print(f"docs: {exc}", file=sys.stderr)
        return 1


def run(args: argparse.Namespace) -> int:
    """The chosen subcommand."""

    if args.command == "render":
        for path in render.render_all(write=True):
            print(f"rendered {path.relative_to(measurements.ROOT)}")
    elif args.command == "check":
        findings = numbers.check()
        for finding in findings:
            print(finding, file=sys.stderr)
        if findings:
            print(f"docs check: {len(findings)} problem(s)", file=sys.stderr)
            return 1
        print("docs check: rendered files up to date, no number typed by hand")
    elif args.command == "refresh":
        only = set(args.only.split(",")) if args.only else None
        for line in measurements.refresh(args.artifacts.resolve(), only, args.commit):
            print(line)
    elif args.command == "pictures":
        for step in sorted({p.made_by for p in pictures.missing(args.artifacts.resolve())}):
            print(step)
    return 0


if __name__ == "__main__":
    sys.exit(main())
