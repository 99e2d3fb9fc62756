"""`python -m bench [--only NAME] [--members N] [--messages N] [--runs R] [--rss-large N]`.

Prints one JSON line per scenario on stdout (progress and failures go to stderr) and exits
non-zero when any scenario failed. Needs the bench environment of `make bench`: PostgreSQL in
DATABASE_URL (the database is dropped and recreated by seed_members) and Redis in
CELERY_BROKER_URL (flushed around the mailing scenarios).
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass

import django
from django.utils.module_loading import import_string

from bench.options import Options, options_parse
from bench.results import Measured, result_line


@dataclass(frozen=True)
class Scenario:
    name: str
    unit: str
    target: float | None  # the figure the issue asks for; None where none was asked
    needs_members: bool
    measure: str  # dotted path of `(Options) -> Measured`, imported once Django is set up


# Run in this order: the seed first, the long worker_rss_growth last.
SCENARIOS = {s.name: s for s in [
    Scenario("seed_members", "rows/s", None, False, "bench.seed.seed_members"),
    Scenario("import_members", "rows/s", 20000, False, "bench.imports.import_members"),
    Scenario("segment_count", "s", 1.0, True, "bench.segments.segment_count"),
    Scenario("segment_count_nested", "s", 2.0, True, "bench.segments.segment_count_nested"),
    Scenario("audience_snapshot", "s", 10.0, True, "bench.snapshot.audience_snapshot"),
    Scenario("dispatch_smtp", "msg/s", 1000, True, "bench.dispatch.dispatch_smtp"),
    Scenario("smtp_sink_ceiling", "msg/s", None, False, "bench.dispatch.smtp_sink_ceiling"),
    Scenario("dispatch_push", "msg/s", 2000, True, "bench.push.dispatch_push"),
    Scenario("dispatch_hms", "msg/s", 2000, True, "bench.hms.dispatch_hms"),
    Scenario("dispatch_apns", "msg/s", 2000, True, "bench.apns.dispatch_apns"),
    Scenario("dispatch_webpush", "msg/s", 2000, True, "bench.webpush.dispatch_webpush"),
    Scenario("dispatch_smpp", "msg/s", 1000, True, "bench.smpp.dispatch_smpp"),
    Scenario("dispatch_twilio", "msg/s", 2000, True, "bench.http_gateways.dispatch_twilio"),
    Scenario("dispatch_http_sms", "msg/s", 2000, True, "bench.http_gateways.dispatch_http_sms"),
    Scenario("dispatch_viber", "msg/s", 2000, True, "bench.http_gateways.dispatch_viber"),
    Scenario("dispatch_telegram", "msg/s", 2000, True, "bench.http_gateways.dispatch_telegram"),
    Scenario("dispatch_anymail", "msg/s", 2000, True, "bench.http_gateways.dispatch_anymail"),
    Scenario("api_member_home_p95", "ms", 25, True, "bench.member_api.api_member_home_p95"),
    Scenario("receipts_ingest", "events/s", 5000, True, "bench.receipts.receipts_ingest"),
    Scenario("events_ingest", "events/s", 3000, True, "bench.events.events_ingest"),
    Scenario("webhook_delivery", "deliveries/s", 1000, True,
             "bench.webhook_delivery.webhook_delivery"),
    Scenario("campaign_report", "s", 1.0, True, "bench.campaigns.campaign_report"),
    Scenario("attribution_day", "s", 10.0, True, "bench.campaigns.attribution_day"),
    Scenario("rate_limit_error", "%", 2, False, "bench.ratelimit.rate_limit_error"),
    Scenario("worker_rss_growth", "MB", 50, True, "bench.dispatch.worker_rss_growth"),
]}


def scenario_run(scenario: Scenario, options: Options) -> Measured:
    from bench.seed import seeded_database

    if scenario.needs_members:
        seeded_database(options)
    return import_string(scenario.measure)(options)


def main(argv: list[str] | None = None) -> int:
    options = options_parse(argv, list(SCENARIOS))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    names = [options.only] if options.only else list(SCENARIOS)
    failed = 0
    for name in names:
        scenario = SCENARIOS[name]
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        try:
            measured = scenario_run(scenario, options)
        except Exception as exc:  # noqa: BLE001  (one broken scenario must not hide the others)
            traceback.print_exc()
            failed += 1
            measured = Measured(0, None, 0, {"error": f"{type(exc).__name__}: {exc}"[:500]})
        print(result_line(scenario=name, unit=scenario.unit, target=scenario.target,
                          measured=measured), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
