"""import_members: a realistic CSV of `--members` new members through `members_import`."""

from __future__ import annotations

import csv
import os
import random
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import phonenumbers
from django.core.management import call_command
from django.db import OperationalError, connection, transaction
from psycopg import sql

from bench.database import maintenance_connection
from bench.options import Options
from bench.results import Measured, median_of, timed
from loyalty.demo import locale_pools
from members.imports import ImportReport, import_workers, members_import
from members.models import CustomAttribute

PREFIX = "IMP"  # external ids of the bench's members, apart from the seeded demo's "M…"
SEED = 20_240_602
ATTRIBUTE = "favourite_store"
HEADER = ["external_id", "first_name", "last_name", "email", "phone", "birth_date", "gender",
          "language", "timezone", "city", "country", "registered_at", "registration_source",
          f"attr.{ATTRIBUTE}", "consent.email", "consent.sms", "consent_text", "consented_at"]
CITIES = {
    "GB": ("London", "Manchester", "Leeds", "Bristol"), "US": ("New York", "Chicago", "Boston"),
    "CA": ("Montréal", "Toronto"), "DE": ("Berlin", "München", "Köln", "Hamburg"),
    "AT": ("Wien", "Graz"), "CH": ("Zürich", "Genève", "Basel"),
    "FR": ("Paris", "Lyon", "Marseille"), "ES": ("Madrid", "Barcelona", "Sevilla"),
    "MX": ("Ciudad de México", "Guadalajara"),
}
CONSENT_TEXT = "Yes, send me offers and news of the Engage Club by email and SMS."
WHAT = ("members_import of a CSV of {n} new members ({columns} columns: names, email, phone of "
        "9 countries (80% E.164, 20% typed with spaces), dates, a custom attribute, email and "
        "SMS consent with evidence) into the bench database: every row validated by {workers} "
        "worker processes while blocks of ~4,000 rows are COPYed, upserted and their consent "
        "ledger written, all in one transaction")


def csv_write(path: Path, rows: int, *, seed: int = SEED) -> None:
    """A CSV in the import's format: `rows` members that are all valid, none existing yet."""
    rng = random.Random(seed)
    random_ = rng.random
    pools = locale_pools(seed)
    countries = {prefix: phonenumbers.region_code_for_number(
        phonenumbers.parse(prefix + "0" * digits, None))
        for pool in pools for prefix, digits in _prefix_digits(pool.phones)}
    now = datetime.now(UTC).replace(microsecond=0)
    span = int(timedelta(days=3 * 365).total_seconds())
    born = date(1950, 1, 1).toordinal()
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(HEADER)
        for number in range(1, rows + 1):
            pool = pools[int(random_() * len(pools))]
            first, first_ascii = pool.first_names[int(random_() * len(pool.first_names))]
            last, last_ascii = pool.last_names[int(random_() * len(pool.last_names))]
            prefix, modulus = pool.phones[int(random_() * len(pool.phones))]
            country = countries[prefix]
            email = (f"{first_ascii}.{last_ascii}.{number}@example.com"
                     if random_() < 0.95 else "")
            phone = ""
            if random_() < 0.85:
                phone = prefix + str(modulus + int(random_() * modulus))[1:]
                if random_() < 0.2:  # as typed into a shop form: "+49 15112345678"
                    code = len(str(phonenumbers.country_code_for_region(country))) + 1
                    phone = f"{phone[:code]} {phone[code:]}"
            joined = now - timedelta(seconds=int(random_() * span))
            email_consent = _consent(random_(), granted=0.7, withdrawn=0.1) if email else ""
            sms_consent = _consent(random_(), granted=0.55, withdrawn=0.1) if phone else ""
            evidence = bool(email_consent or sms_consent)
            writer.writerow([
                f"{PREFIX}{number:09d}", first, last, email, phone,
                date.fromordinal(born + int(random_() * 20_000)).isoformat(),
                ("female", "male", "other", "")[int(random_() * 4)], pool.language,
                pool.timezones[int(random_() * len(pool.timezones))],
                rng.choice(CITIES[country]), country, joined.isoformat(),
                ("shop", "app", "pos", "web")[int(random_() * 4)],
                f"store-{int(random_() * 400)}" if random_() < 0.6 else "",
                email_consent, sms_consent, CONSENT_TEXT if evidence else "",
                joined.isoformat() if evidence else "",
            ])


def _prefix_digits(phones: tuple[tuple[str, int], ...]) -> list[tuple[str, int]]:
    return [(prefix, len(str(modulus)) - 1) for prefix, modulus in phones]


def _consent(draw: float, *, granted: float, withdrawn: float) -> str:
    return "granted" if draw < granted else "withdrawn" if draw < granted + withdrawn else ""


def import_members(options: Options) -> Measured:
    """Rows/s of `members_import` of `--members` new members, median of `--runs`.

    Every run starts from the same state: it is rolled back once timed. Its timing ends after
    `SET CONSTRAINTS ALL IMMEDIATE`, which runs the foreign-key checks still deferred, as the
    commit would; the tables are vacuumed and their indexes rebuilt between runs, untimed.
    Seeded demo members, if any, stay: the import goes into a table of realistic size.
    """
    _database_ready()
    CustomAttribute.objects.get_or_create(key=ATTRIBUTE, defaults={"label": "Favourite store"})
    reports: list[ImportReport] = []
    with tempfile.TemporaryDirectory(prefix="engage-bench-") as directory:
        path = Path(directory) / "members.csv"
        generated, _ = timed(lambda: csv_write(path, options.members))
        file_mb = round(path.stat().st_size / 2**20, 1)
        print(f"bench: wrote {file_mb} MB of CSV in {generated:.0f} s", file=sys.stderr)

        def measure() -> float:
            _tables_vacuum()
            seconds, report = import_rolled_back(path)
            if not report.imported or report.created != options.members or report.bad_rows:
                raise RuntimeError(f"import went wrong: {report.summary()}; first bad rows: "
                                   f"{report.bad_rows[:5]}")
            reports.append(report)
            print(f"bench: {report.summary()}; {seconds:.1f} s with the deferred checks",
                  file=sys.stderr)
            return options.members / seconds

        value, per_run = median_of(options.runs, measure)
    _tables_vacuum()
    return Measured(options.members, value, options.runs, {
        "what": WHAT.format(n=options.members, columns=len(HEADER), workers=import_workers()),
        "per_run": per_run, "file_mb": file_mb, "cpus": os.cpu_count(),
        "import_s": [round(r.seconds, 1) for r in reports],
        "bad_rows": len(reports[-1].bad_rows), "created": reports[-1].created,
        "consent_events": reports[-1].consent_events,
    })


def import_rolled_back(path: Path) -> tuple[float, ImportReport]:
    """Seconds of one import of `path` with its deferred checks, and its report; then the
    import is rolled back."""
    with transaction.atomic():
        start = time.perf_counter()
        with path.open("rb") as source:
            report = members_import(source=source)
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        seconds = time.perf_counter() - start
        transaction.set_rollback(True)
    return seconds, report


def _database_ready() -> None:
    """The bench database, created when missing (this scenario does not need the seed)."""
    try:
        connection.ensure_connection()
    except OperationalError:
        connection.close()
        with maintenance_connection() as maintenance:
            maintenance.execute(sql.SQL("CREATE DATABASE {}").format(
                sql.Identifier(connection.settings_dict["NAME"])))
    call_command("migrate", interactive=False, verbosity=0)


IMPORTED_TABLES = ("members_member", "members_consent", "members_consentevent")


def _tables_vacuum() -> None:
    """Clear what the last rolled-back run left: its dead rows, and the index pages its entries
    took. VACUUM empties those pages but the indexes keep them (after a dozen runs the email
    index of the empty table was 151 MB): rebuilt, every run starts from the same indexes."""
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {', '.join(IMPORTED_TABLES)}")
        for table in IMPORTED_TABLES:
            cursor.execute(f"REINDEX TABLE {table}")
