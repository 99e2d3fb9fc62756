"""`python -m bench.chaos [--only NAME] [--size small|full]`.

Prints one JSON line per scenario on stdout (progress on stderr) and exits non-zero when any
scenario duplicated or lost a message, or raised. Needs PostgreSQL in DATABASE_URL (members are
appended when too few) and a Redis broker in CELERY_BROKER_URL that is the suite's alone (it is
flushed before each scenario); `make chaos` provides both.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

import django

from bench.chaos.core import SIZES, is_clean, result


def database_ensure() -> None:
    """Create the suite's database when it does not exist yet (it is kept from run to run:
    the members seeded for a full-size run are reused)."""
    from django.conf import settings
    from psycopg import sql

    from bench.database import maintenance_connection

    name = settings.DATABASES["default"]["NAME"]
    with maintenance_connection() as maintenance:
        if not maintenance.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                   [name]).fetchone():
            maintenance.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos",
                                     description="Engage's fault suite: one JSON line each.")
    parser.add_argument("--only", help="run this scenario alone")
    parser.add_argument("--size", choices=SIZES, default="full",
                        help="full: the issue's figures; small: the tests' (default %(default)s)")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.core.management import call_command

    from bench.chaos import registry

    scenarios = registry()
    if args.only:
        scenarios = [s for s in scenarios if s.name == args.only]
        if not scenarios:
            parser.error(f"no scenario {args.only!r}")
    database_ensure()
    call_command("migrate", interactive=False, verbosity=0)
    bad = 0
    for scenario in scenarios:
        print(f"chaos: {scenario.name} ({args.size}) ...", file=sys.stderr, flush=True)
        try:
            line = scenario.run(args.size)
        except Exception as exc:  # noqa: BLE001  (one broken scenario must not hide the others)
            traceback.print_exc()
            line = result(scenario.name, args.size, error=f"{type(exc).__name__}: {exc}"[:500])
            bad += 1
        else:
            bad += not is_clean(line)
        print(json.dumps(line, default=str), flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
