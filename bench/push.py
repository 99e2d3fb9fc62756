"""dispatch_push: real workers sending a push mailing to a Firebase Cloud Messaging peer on
loopback, and the ceiling of that peer fed by a bare client.

The demo seed gives no member a device or push consent, so the bench gives them to the members
it sends to (`push_audience_ensure`): an active Firebase device with a token of FCM's length
and a granted push consent with its ledger event, written once, set-based, and kept (they are
what an app-using membership looks like, and the next run finds them in place). Quiet hours
for push are lifted while it runs (and restored after): at night in the members' time zones
the mailing would be held, not sent, and the scenario measures sending.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Min
from django.utils import timezone

from bench.cpu import CpuMeter, cpu_per_message, postgres_processes, process_tree
from bench.database import broker_flush
from bench.mailings import mailing_run_until_completed, mailings_clear
from bench.options import Options
from bench.peers import PeerProcess, batch_rate
from bench.results import Measured, median_of
from bench.workers import CeleryWorkers
from campaigns.models import StaticList, StaticListMember, TargetGroup
from communications.gateways import GatewayConfig, OutboundMessage, gateway_for
from communications.gateways.http_sms import DEFAULT_CONCURRENCY
from communications.models import Gateway, Mailing, Message, QuietHours, Template
from members.models import Consent, ConsentEvent, Device, Member

CONCURRENCY = 2
# What a Firebase registration token looks like: about 160 URL-safe characters.
TOKEN_PREFIX = "bench-push:"
TOKEN_LENGTH = 163
TITLE = "{{ member.first_name }}, your points are waiting"
BODY = "This week every purchase counts double, {{ member.full_name }}. Tap to see your offers."
LIST_NAME = "bench push audience"
WHAT = ("start of a push mailing (title + body, personalized) to the {n} first active members, "
        "each with an active Firebase device and push consent, through an FCM gateway to the "
        "loopback FCM peer (tests/peers/fcm.py, its own process); celery prefork x{concurrency} "
        "on Redis. value: sent / (completed_at - first claim); with_snapshot_per_run counts "
        "from the start instead; every message checked `sent` and counted by the peer")


def push_audience_ensure(count: int, *, platform: str = Device.Platform.FCM,
                         token_sql: str = "") -> list[int]:
    """The ids of the `count` first active members, each given an active device of `platform`
    (Firebase by default) and a granted push consent (with its ledger event) where they lack
    one. One statement per table, whatever `count`; rows already there are left as they are.

    `token_sql` is the SQL expression of a device's token from the member's `id` (an APNs
    token is 64 hex digits, a web-push subscription a JSON object); by default a Firebase-like
    token. Every token must hold TOKEN_PREFIX, which marks the bench's devices (a web-push
    subscription is JSON, so it holds it in its endpoint rather than at its start)."""
    ids = list(Member.objects.filter(status=Member.Status.ACTIVE).order_by("pk")
               .values_list("pk", flat=True)[:count])
    if len(ids) < count:
        raise RuntimeError(f"only {len(ids)} active members for {count} pushes: seed more")
    qn = connection.ops.quote_name
    devices, consents = qn(Device._meta.db_table), qn(Consent._meta.db_table)
    events = qn(ConsentEvent._meta.db_table)
    now = timezone.now()
    # Tokens unique per member, padded to FCM's length so payloads and rows are realistic.
    pad = TOKEN_LENGTH - len(TOKEN_PREFIX) - 10
    token_sql = token_sql or (
        f"'{TOKEN_PREFIX}' || lpad(id::text, 10, '0') || repeat('x', {pad})")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {devices} (member_id, platform, token, app, last_seen_at, is_active, "
            f"created_at) SELECT id, %s, {token_sql}, "
            f"'club.engage.app', %s, true, %s FROM unnest(%s::bigint[]) AS id "
            f"ON CONFLICT (platform, token) DO NOTHING",
            [platform, now, now, ids],
        )
        added = cursor.rowcount
        cursor.execute(
            f"WITH granted AS ("
            f"  INSERT INTO {consents} (member_id, channel, purpose, category_id, state, source, "
            f"  recorded_at) SELECT id, 'push', %s, NULL, %s, %s, %s "
            f"  FROM unnest(%s::bigint[]) AS id ON CONFLICT DO NOTHING RETURNING member_id) "
            f"INSERT INTO {events} (member_id, channel, purpose, category_id, action, source, "
            f"recorded_at, user_agent, consent_text, reason) SELECT member_id, 'push', %s, NULL, "
            f"%s, %s, %s, '', %s, '' FROM granted",
            [Consent.Purpose.MARKETING, Consent.State.GRANTED, Consent.Source.IMPORT, now, ids,
             Consent.Purpose.MARKETING, ConsentEvent.Action.GRANT, Consent.Source.IMPORT, now,
             "Yes, send me offers by push notification."],
        )
        added += cursor.rowcount
        # What an earlier experiment switched off is switched on again.
        Device.objects.filter(member_id__in=ids, token__contains=TOKEN_PREFIX,
                              is_active=False).update(is_active=True)
        Consent.objects.filter(member_id__in=ids, channel="push", category=None,
                               purpose=Consent.Purpose.MARKETING).exclude(
            state=Consent.State.GRANTED).update(state=Consent.State.GRANTED, recorded_at=now)
    if added and connection.vendor == "postgresql":
        # As autovacuum would before long: planned on the empty table's statistics, the
        # snapshot's device lookup scanned every Firebase token per member (1 ms each).
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {devices}, {consents}")
    return ids


@contextmanager
def quiet_hours_lifted(*, channel: str) -> Iterator[None]:
    """The channel's active quiet hours switched off for a `with` block, then back on."""
    lifted = list(QuietHours.objects.filter(channel=channel, is_active=True)
                  .values_list("pk", flat=True))
    QuietHours.objects.filter(pk__in=lifted).update(is_active=False)
    try:
        yield
    finally:
        QuietHours.objects.filter(pk__in=lifted).update(is_active=True)


def _audience_list(ids: list[int]) -> TargetGroup:
    """A target group of exactly these members, through a static list written in one INSERT."""
    StaticList.objects.filter(name=LIST_NAME).delete()
    static_list = StaticList.objects.create(name=LIST_NAME, taken_at=timezone.now(),
                                            size=len(ids))
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {qn(StaticListMember._meta.db_table)} (static_list_id, member_id) "
            f"SELECT %s, id FROM unnest(%s::bigint[]) AS id", [static_list.pk, ids])
    group, _ = TargetGroup.objects.update_or_create(name=LIST_NAME, defaults={"rules": [
        {"field": "static_list", "op": "member_of", "value": static_list.pk}]})
    return group


def push_mailing_create(*, target_group: TargetGroup, gateway_settings: dict[str, Any],
                        provider: str = "fcm") -> Mailing:
    """A draft push mailing through a gateway of `provider` pointed at the peer."""
    gateway, _ = Gateway.objects.update_or_create(name=f"bench {provider}", defaults={
        "channel": "push", "provider": provider, "settings": gateway_settings, "sender": "",
        "is_active": True})
    template, _ = Template.objects.update_or_create(name="bench push points", defaults={
        "channel": "push", "language": "en", "subject": TITLE, "body": BODY, "html_body": ""})
    return Mailing.objects.create(name="bench dispatch_push", target_group=target_group,
                                  template=template, gateway=gateway)


def push_mailing_send(*, target_group: TargetGroup, workers: CeleryWorkers,
                      provider: str = "fcm", url_setting: str = "endpoint",
                      peer_command: Callable[[Path], Sequence[str]] | None = None,
                      ) -> dict[str, Any]:
    """One push mailing to the group through the running `workers` and a fresh peer
    (`tests.peers.<provider>` in its own process, or PeerProcess's `peer_command`, reached at
    its `url_setting`), with the CPU each side spent per message (bench.cpu).

    Raises unless every message was sent and the peer accepted exactly as many pushes.
    """
    mailings_clear()
    broker_flush()
    with PeerProcess(provider, url_setting=url_setting, command=peer_command) as peer:
        mailing = push_mailing_create(target_group=target_group, gateway_settings=peer.settings,
                                      provider=provider)
        expected = StaticListMember.objects.filter(
            static_list__name=LIST_NAME).count()
        with mailing_cpu_meter(workers, peer) as cpu:
            with_snapshot = mailing_run_until_completed(mailing, timeout=120 + expected / 100)
        accepted = peer.stats()["accepted"]
    rows = Message.objects.filter(mailing=mailing)
    statuses = dict(rows.values_list("status").annotate(n=Count("pk")).order_by())
    if statuses != {"sent": expected} or accepted != expected:
        raise RuntimeError(f"mailing {mailing.pk}: {statuses}, peer accepted {accepted}; "
                           f"expected {expected} sent")
    first_claim = rows.aggregate(first=Min("claimed_at"))["first"]
    mailing.refresh_from_db()
    seconds = (mailing.completed_at - first_claim).total_seconds()
    return {"sent": expected, "seconds": seconds, "with_snapshot_s": with_snapshot,
            "cpu_ms_per_message": cpu.per_message_ms(expected)}


def mailing_cpu_meter(workers: CeleryWorkers, peer: PeerProcess) -> CpuMeter:
    """The CPU of a mailing's run: the celery workers, the peer process and PostgreSQL."""
    assert peer.process is not None
    peer_pid = peer.process.pid
    return CpuMeter({"workers": workers.processes, "peer": lambda: process_tree(peer_pid),
                     "postgres": postgres_processes})


def push_mailing_runs(options: Options, *, provider: str = "fcm",
                      platform: str = Device.Platform.FCM, url_setting: str = "endpoint",
                      token_sql: str = "",
                      ) -> tuple[float, list[float], list[dict[str, Any]]]:
    """`--runs` push mailings of `--messages` through `provider`'s peer: the median pushes/s,
    each run's figure and each run's `push_mailing_send` answer. One worker (prefork, 2
    children) for all runs, a fresh peer process per run; messages are cleared between runs.
    `token_sql`: the devices' tokens, as push_audience_ensure takes it."""
    target_group = _audience_list(push_audience_ensure(options.messages, platform=platform,
                                                       token_sql=token_sql))
    runs: list[dict[str, Any]] = []

    with quiet_hours_lifted(channel="push"), CeleryWorkers(concurrency=CONCURRENCY) as workers:
        def measure() -> float:
            run = push_mailing_send(target_group=target_group, workers=workers,
                                    provider=provider, url_setting=url_setting)
            runs.append(run)
            return run["sent"] / run["seconds"]

        try:
            value, per_run = median_of(options.runs, measure)
        finally:
            mailings_clear()
            broker_flush()
        if "Traceback" in workers.log_tail():
            raise RuntimeError(f"the worker failed:\n{workers.log_tail()}")
    return value, per_run, runs


def dispatch_push(options: Options) -> Measured:
    """Pushes/s from the first claim of a `--messages` push mailing to its completion.

    One worker (prefork, 2 children) for all runs, a fresh peer process per run; messages are
    cleared between runs. The peer's own ceiling (a bare aiohttp client) is measured after.
    """
    value, per_run, runs = push_mailing_runs(options)
    with PeerProcess("fcm", url_setting="endpoint") as peer:
        ceiling = peer_ceiling(settings=peer.settings, messages=options.messages)
    return Measured(runs[-1]["sent"], value, options.runs, {
        "what": WHAT.format(n=runs[-1]["sent"], concurrency=CONCURRENCY),
        "per_run": per_run,
        "with_snapshot_per_run": [round(r["sent"] / r["with_snapshot_s"], 3) for r in runs],
        **cpu_per_message(runs),
        "peer_ceiling": round(ceiling, 3),
        "peer_ceiling_what": f"a bare aiohttp client, {CEILING_CONCURRENCY} requests in flight "
                             "on one process, prebuilt bodies, one access token",
    })


CEILING_CONCURRENCY = 32


def peer_ceiling(*, settings: dict[str, Any], messages: int) -> float:
    """Pushes/s the peer accepts from a bare aiohttp client: prebuilt bodies, one access token
    (google-auth, as the adapter gets it), `CEILING_CONCURRENCY` requests in flight."""
    from google.auth.transport.requests import Request
    from google.oauth2 import service_account

    info = settings["service_account"]
    credentials = service_account.Credentials.from_service_account_info(
        info, scopes=["https://www.googleapis.com/auth/firebase.messaging"])
    credentials.refresh(Request())
    url = f"{settings['endpoint']}/v1/projects/{info['project_id']}/messages:send"
    headers = {"Authorization": f"Bearer {credentials.token}",
               "Content-Type": "application/json; charset=UTF-8"}
    bodies = [json.dumps({"message": {
        "token": f"{TOKEN_PREFIX}{n:010d}".ljust(TOKEN_LENGTH, "x"),
        "notification": {"title": "Ann, your points are waiting", "body": BODY},
        "data": {"engage_message_id": str(n)}}}).encode() for n in range(messages)]
    return requests_per_second(url=url, headers=headers, bodies=bodies)


def requests_per_second(*, url: str, headers: dict[str, str], bodies: list[bytes],
                        concurrency: int = CEILING_CONCURRENCY) -> float:
    """Requests/s a peer answers 2xx to (201 for web push) from a bare aiohttp client posting
    `bodies` with `concurrency` in flight; raises on any other answer."""
    import aiohttp

    async def run() -> float:
        pending = iter(bodies)
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=concurrency), headers=headers) as session:

            async def client() -> None:
                for body in pending:
                    async with session.post(url, data=body) as reply:
                        await reply.read()
                        if not 200 <= reply.status < 300:
                            raise RuntimeError(f"the peer answered {reply.status}")

            start = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(concurrency)))
            return len(bodies) / (time.perf_counter() - start)

    return asyncio.run(run())


# Pushes of the measurements of an adapter alone: enough for a steady figure, few enough for
# the one-connection run to stay short.
ALONE_PUSHES = 2000


def push_adapter_alone(*, provider: str, settings: dict[str, Any],
                       addresses: Sequence[str]) -> dict[str, float]:
    """Pushes/s of one batch through the adapter in this process (no workers, no database) to
    `addresses`: one request at a time on one connection, and with the adapter's own
    concurrency (HttpBatchGateway's default)."""
    batch = [OutboundMessage(message_id=n, address=address,
                             subject="Ann, your points are waiting", body=BODY)
             for n, address in enumerate(addresses, start=1)]

    def rate(concurrency: int) -> float:
        return batch_rate(gateway_for(GatewayConfig(
            gateway_id=0, channel="push", provider=provider,
            settings={**settings, "concurrency": concurrency}, sender="",
            price_per_message=Decimal(0))), batch)

    return {"adapter_alone_one_connection": round(rate(1), 3),
            "adapter_alone_concurrency": round(rate(DEFAULT_CONCURRENCY), 3),
            "adapter_alone_what": f"one batch of {len(batch)} pushes through the adapter in "
                                  f"this process (no workers, no database): one request at a "
                                  f"time on one connection, vs {DEFAULT_CONCURRENCY} in flight"}
