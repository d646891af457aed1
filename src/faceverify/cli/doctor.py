"""``faceverify doctor``: what is installed and usable here, and the fix for what is not.

The report is this command's data, so it goes to stdout: one line per check (or one JSON
object with ``--json``); the summary goes to stderr like every command's. Exit 1 when a
base component or something named on the command line (``--db``, ``--keys``) is missing
or broken; a missing optional extra (torch, plots, postgres) is reported, not failed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from faceverify.cli.common import EXIT_ERROR, EXIT_OK, log

if TYPE_CHECKING:
    from faceverify.doctor import Check

#: Width of the status column of the human report (the name column fits the longest name).
STATUS_WIDTH = 8


def doctor(args: argparse.Namespace) -> int:
    from faceverify.doctor import run_checks

    report = run_checks(db=args.db, keys=args.keys)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        for line in report_lines(report.checks):
            print(line)
    failed = [check.name for check in report.checks if check.failed]
    if failed:
        log.error("%d problem(s) to fix: %s", len(failed), ", ".join(failed))
        return EXIT_ERROR
    if not args.quiet and not args.json:
        log.info("everything faceverify needs works; 'missing' lines are optional extras")
    return EXIT_OK


def report_lines(checks: Sequence[Check]) -> list[str]:
    """``status  name  detail  -> fix: command``, one line per check, in aligned columns."""
    width = max((len(check.name) for check in checks), default=0) + 2
    lines = []
    for check in checks:
        fix = f"  -> fix: {check.fix}" if check.fix and check.status != "ok" else ""
        lines.append(f"{check.status:<{STATUS_WIDTH}}{check.name:<{width}}{check.detail}{fix}")
    return lines


def register(sub: Any, common: argparse.ArgumentParser, model_opts: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "doctor",
        parents=[common],
        help="check what is installed and usable (runtimes, GPU, detectors, models, gallery, keys)",
        description="One line per check: ok, warn, missing or broken, what was found, and the "
        "command that fixes it. Exits 1 when a base component, or the --db/--keys given, is "
        "missing or broken; missing optional extras do not fail it.",
    )
    p.add_argument(
        "--db", help="also try this gallery: a folder, or a postgresql:// URL (connects, checks pgvector)"
    )
    p.add_argument(
        "--keys",
        help="the service's API keys file to inspect (default: ~/.local/share/faceverify/service/keys.json)",
    )
    p.set_defaults(handler=doctor)
