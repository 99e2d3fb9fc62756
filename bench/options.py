"""The command line of `python -m bench`, as the options every scenario receives."""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class Options:
    members: int = 1_000_000
    messages: int = 100_000
    runs: int = 3
    rss_large: int = 1_000_000
    only: str | None = None
    explain: bool = False


def options_parse(argv: list[str] | None, scenario_names: list[str]) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Engage benchmarks: one JSON line per scenario on stdout (DESIGN.md).",
    )
    parser.add_argument("--only", choices=scenario_names, help="run this scenario alone")
    parser.add_argument("--members", type=int, default=Options.members,
                        help="members seeded and segmented (default %(default)s)")
    parser.add_argument("--messages", type=int, default=Options.messages,
                        help="messages per dispatch run (default %(default)s)")
    parser.add_argument("--runs", type=int, default=Options.runs,
                        help="runs per scenario; the median is reported (default %(default)s)")
    parser.add_argument("--rss-large", type=int, default=Options.rss_large,
                        help="messages of worker_rss_growth's large mailing (default %(default)s)")
    parser.add_argument("--explain", action="store_true",
                        help="add EXPLAIN ANALYZE plans to the segment scenarios' lines")
    args = parser.parse_args(argv)
    for name in ("members", "messages", "runs", "rss_large"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return Options(members=args.members, messages=args.messages, runs=args.runs,
                   rss_large=args.rss_large, only=args.only, explain=args.explain)
