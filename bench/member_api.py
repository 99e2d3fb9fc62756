"""api_member_home_p95: the mobile app's two most frequent calls, served by gunicorn on
loopback, under load from a generator in processes of their own.

Data: the seeded members (1M by default) with `HISTORY_PER_MEMBER` messages each in the
inbox (10M), written once, set-based, and kept until a dispatch scenario clears the messages
table (the next run writes them again, not timed). `TOKENS` members get an app token each,
whose raw value the generator can rebuild from the member id (hashed in SQL as sign-in hashes
it).

Served: `gunicorn -c config/gunicorn.conf.py config.wsgi` (production's threaded, keep-alive
workers) with `WORKERS` workers of `THREADS` threads, the production settings (DEBUG off,
persistent database connections), on 127.0.0.1. Loaded: `GENERATORS` processes
(bench/loadgen.py, HTTP/1.1 on asyncio's protocols, connections kept alive), each member's calls
with its own token, half of them
`GET /api/v1/me/home/` (profile + active offers + unread count) and half
`GET /api/v1/me/messages/` (the first inbox page).

Two measurements per run:
- at a fixed offered rate of `RATE` requests/s (open loop: requests start on schedule whether
  or not earlier ones returned, so a slow server shows as latency, not as a lower rate): the
  p50/p95/p99 latency of each call — the scenario's value is the home call's p95;
- closed loop with `CONCURRENCY` requests in flight: the most requests/s it serves.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from bench.options import Options
from bench.results import Measured, median_of
from bench.workers import ROOT
from communications.models import Mailing, Message, Template
from members.models import Member, MemberToken

HISTORY_PER_MEMBER = 10
HISTORY_MAILINGS = 20  # each member gets HISTORY_PER_MEMBER of these
TOKENS = 5_000
WORKERS = int(os.environ.get("BENCH_API_WORKERS", "4"))
THREADS = int(os.environ.get("BENCH_API_THREADS", "4"))
GENERATORS = 2
# The offered rate of the latency runs; BENCH_API_RATE changes it (to find where latency
# holds below the rate the issue asks for).
RATE = int(os.environ.get("BENCH_API_RATE", "500"))
DURATION_S = 15.0
WARM_UP_S = 20.0
CONCURRENCY = 32
HISTORY_PREFIX = "bench inbox history"
TOKEN_SECRET = "bench-member-token"
CHUNK = 100_000
GUNICORN = Path(sys.executable).parent / "gunicorn"


def bench_token(member_id: int) -> str:
    """The raw app token of a bench member (see member_tokens_ensure)."""
    return f"mt_{TOKEN_SECRET}-{member_id}"


def inbox_history_ensure(members: int) -> int:
    """`HISTORY_PER_MEMBER` sent messages for each of the first `members` active members, in
    `HISTORY_MAILINGS` history mailings over email, SMS and push; returns how many exist."""
    expected = members * HISTORY_PER_MEMBER
    mailings = list(Mailing.objects.filter(name__startswith=HISTORY_PREFIX).order_by("pk")
                    .values_list("pk", flat=True))
    if len(mailings) == HISTORY_MAILINGS:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {Message._meta.db_table} "
                           f"WHERE mailing_id = ANY(%s)", [mailings])
            if cursor.fetchone()[0] >= expected:
                return expected
    print(f"bench: writing {expected} inbox messages (not timed)", file=sys.stderr)
    Mailing.objects.filter(name__startswith=HISTORY_PREFIX).delete()
    channels = ["email", "sms", "push"]
    now = timezone.now()
    mailing_ids = []
    for n in range(HISTORY_MAILINGS):
        channel = channels[n % 3]
        template, _ = Template.objects.update_or_create(
            name=f"{HISTORY_PREFIX} {n}", defaults={
                "channel": channel, "language": "en",
                "subject": f"Week {n}: your points" if channel != "sms" else "",
                "body": f"Hi {{{{ member.first_name }}}}, week {n} brings double points."})
        mailing = Mailing.objects.create(
            name=f"{HISTORY_PREFIX} {n}", template=template, state=Mailing.State.COMPLETED,
            started_at=now, completed_at=now)
        mailing_ids.append(mailing.pk)
    ids = list(Member.objects.filter(status=Member.Status.ACTIVE).order_by("pk")
               .values_list("pk", flat=True)[:members])
    table = Message._meta.db_table
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        with transaction.atomic(), connection.cursor() as cursor:
            # Member m gets mailings (m + k) mod 20 for k < 10: ten different ones, spread
            # over the last 100 days, a third of them opened.
            cursor.execute(
                f"INSERT INTO {table} (mailing_id, member_id, is_test, channel, address, status, "
                f"skip_reason, attempts, held_for, provider_id, error_code, error, created_at, "
                f"sent_at, opened_at, updated_at) "
                f"SELECT (%s::bigint[])[1 + (m.id + k) %% {HISTORY_MAILINGS}], m.id, false, "
                f"(%s::text[])[1 + ((m.id + k) %% {HISTORY_MAILINGS}) %% 3], 'bench', "
                f"CASE WHEN (m.id + k) %% 3 = 0 THEN 'opened' ELSE 'delivered' END, '', 1, '', "
                f"'', '', '', t.at, t.at, CASE WHEN (m.id + k) %% 3 = 0 THEN t.at END, t.at "
                f"FROM unnest(%s::bigint[]) AS m(id), generate_series(0, %s) AS k, "
                f"LATERAL (SELECT %s::timestamptz - ((k * 10 + m.id %% 7) || ' days')::interval "
                f"AS at) AS t",
                [mailing_ids, channels, chunk, HISTORY_PER_MEMBER - 1, now])
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE) {table}")
    return expected


# What the app's home shows beside the profile: offers for everyone and offers for audiences
# (each audience one EXISTS probe of the member per call).
OFFER_PREFIX = "bench offer"
OFFER_AUDIENCES = [
    None, None, None,
    {"field": "tier", "op": "eq", "value": "gold"},
    {"field": "orders_count", "op": "range", "value": [2, None], "days": 365},
    {"or": [{"field": "city", "op": "eq", "value": "London"},
            {"field": "language", "op": "eq", "value": "ru"}]},
]


def offers_ensure() -> int:
    """The bench's live app offers (OFFER_AUDIENCES), made once; returns how many there are."""
    from campaigns.models import PromoContent, TargetGroup
    from campaigns.services import promo_content_save

    now = timezone.now()
    live = PromoContent.objects.filter(title__startswith=OFFER_PREFIX, ends_at__gt=now)
    if live.count() == len(OFFER_AUDIENCES):
        return len(OFFER_AUDIENCES)
    PromoContent.objects.filter(title__startswith=OFFER_PREFIX).delete()
    TargetGroup.objects.filter(name__startswith=OFFER_PREFIX).delete()
    for n, rules in enumerate(OFFER_AUDIENCES):
        group = (TargetGroup.objects.create(name=f"{OFFER_PREFIX} audience {n}", rules=rules)
                 if rules is not None else None)
        promo_content_save(offer=PromoContent(
            title=f"{OFFER_PREFIX} {n}", text="Double points on every purchase this week.",
            link_url="https://shop.example.com/offer", link_label="See the offer",
            priority=n, placement=PromoContent.Placement.APP, target_group=group,
            starts_at=now - timedelta(days=1), ends_at=now + timedelta(days=365)))
    return len(OFFER_AUDIENCES)


def member_tokens_ensure(count: int) -> list[int]:
    """An app token for each of the first `count` active members (raw value: bench_token)."""
    ids = list(Member.objects.filter(status=Member.Status.ACTIVE).order_by("pk")
               .values_list("pk", flat=True)[:count])
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {MemberToken._meta.db_table} (member_id, key_hash, name, created_at) "
            f"SELECT id, encode(sha256(convert_to('mt_' || %s || '-' || id, 'UTF8')), 'hex'), "
            f"'bench', now() FROM unnest(%s::bigint[]) AS id ON CONFLICT (key_hash) DO NOTHING",
            [TOKEN_SECRET, ids])
    return ids


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Gunicorn:
    """`gunicorn config.wsgi` with the bench environment for a `with` block."""

    def __init__(self, *, workers: int) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(tempfile.gettempdir()) / f"engage-bench-gunicorn-{os.getpid()}.log"
        # Production's own settings file, the bind and the size of the pool the bench's.
        self._command = [str(GUNICORN), "-c", str(ROOT / "config" / "gunicorn.conf.py"),
                         "config.wsgi", "--workers", str(workers), "--threads", str(THREADS),
                         "--bind", f"127.0.0.1:{self.port}", "--log-level", "warning"]
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Gunicorn:
        env = {**os.environ, "SECURE_SSL_REDIRECT": "0", "ALLOWED_HOSTS": "127.0.0.1",
               "CONN_MAX_AGE": "600"}
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self._command, cwd=ROOT, env=env, stdout=log,
                                        stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited at start:\n{self.log_tail()}")
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=1).read()
                return self
            except OSError:
                time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"gunicorn did not answer in 60 s:\n{self.log_tail()}")

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""


def load_run(*, url: str, member_ids: list[int], rate: float | None, duration: float,
             concurrency: int) -> dict[str, Any]:
    """bench/loadgen.py in GENERATORS processes, their results merged."""
    with tempfile.TemporaryDirectory(prefix="engage-loadgen-") as folder:
        members_path = Path(folder) / "members.json"
        members_path.write_text(json.dumps(member_ids))
        processes = []
        for n in range(GENERATORS):
            command = [sys.executable, "-m", "bench.loadgen", "--url", url,
                       "--members", str(members_path), "--token-secret", TOKEN_SECRET,
                       "--duration", str(duration), "--shard", f"{n}/{GENERATORS}",
                       "--out", str(Path(folder) / f"out-{n}.json")]
            if rate is not None:
                command += ["--rate", str(rate / GENERATORS)]
            else:
                command += ["--concurrency", str(max(1, concurrency // GENERATORS))]
            processes.append(subprocess.Popen(command, cwd=ROOT))
        for process in processes:
            if process.wait(timeout=duration + 120) != 0:
                raise RuntimeError("a load generator failed")
        parts = [json.loads((Path(folder) / f"out-{n}.json").read_text())
                 for n in range(GENERATORS)]
    from bench.loadgen import summary

    latencies: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    for part in parts:
        for name, values in part["latencies_ms"].items():
            latencies.setdefault(name, []).extend(values)
        for status, count in part["errors"].items():
            errors[status] = errors.get(status, 0) + count
    seconds = max(part["seconds"] for part in parts)
    return {"calls": {name: summary(values) for name, values in latencies.items()},
            "requests_per_s": round(sum(len(v) for v in latencies.values()) / seconds, 1),
            "errors": errors}


def api_member_home_p95(options: Options) -> Measured:
    """The home call's p95 in ms at RATE requests/s; the inbox p95 and the closed-loop
    throughput beside it."""
    inbox_history_ensure(options.members)
    offers = offers_ensure()
    member_ids = member_tokens_ensure(TOKENS)
    runs: list[dict[str, Any]] = []
    with Gunicorn(workers=WORKERS) as server:
        # Warm-up: every worker opens its database connection, and the members' rows and index
        # pages are read once (the bulk write left them out of the caches).
        load_run(url=server.url, member_ids=member_ids, rate=None, duration=WARM_UP_S,
                 concurrency=CONCURRENCY)
        # Closed loop before the open-loop runs: an overloaded open-loop run leaves a backlog
        # of connections whose clients gave up, which the server would still work through.
        throughput = load_run(url=server.url, member_ids=member_ids, rate=None,
                              duration=DURATION_S, concurrency=CONCURRENCY)

        def measure() -> float:
            fixed = load_run(url=server.url, member_ids=member_ids, rate=RATE,
                             duration=DURATION_S, concurrency=0)
            runs.append(fixed)
            return fixed["calls"]["home"]["p95_ms"]

        value, per_run = median_of(options.runs, measure)
    inbox_p95 = sorted(run["calls"]["inbox"]["p95_ms"] for run in runs)[len(runs) // 2]
    return Measured(options.members, value, options.runs, {
        "what": f"GET /api/v1/me/home/ p95 (ms) at {RATE} requests/s offered (open loop, half "
                f"home, half the first inbox page), {len(member_ids)} members' app tokens, "
                f"{options.members} members with {HISTORY_PER_MEMBER} messages each, {offers} "
                f"live app offers ({sum(a is not None for a in OFFER_AUDIENCES)} of them for "
                f"audiences the member is tested for); gunicorn "
                f"x{WORKERS} gthread workers x{THREADS} threads, keep-alive, DEBUG off; "
                f"{GENERATORS} load generators (bench/loadgen.py, asyncio) on "
                "the same 2 cores",
        "per_run": per_run,
        "inbox_p95_ms": inbox_p95,
        "inbox_target_ms": 25,
        "calls_last_run": runs[-1]["calls"],
        "offered_rate": RATE,
        "served_rate_last_run": runs[-1]["requests_per_s"],
        "errors_per_run": [run["errors"] for run in runs],
        "max_requests_per_s": throughput["requests_per_s"],
        "max_requests_per_s_what": f"closed loop, {CONCURRENCY} requests in flight",
        "max_requests_target": 500,
        "max_calls": throughput["calls"],
        "max_errors": throughput["errors"],
    })
