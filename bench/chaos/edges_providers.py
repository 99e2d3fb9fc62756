"""Scenario 5, providers_misbehave: an SMS mailing through a primary gateway that is dead (its
port closed) for a while, with a backup gateway configured, and a backup provider that answers
some numbers' first request with 429 + Retry-After, 503 + Retry-After, a reset connection or an
accepted request left hanging past the client's timeout, and some numbers with a plain 400 on
every request. The batch service is called in-process (as a worker's task calls it) on the real
clock; both providers are loopback peers logging every request with its number and time and
every accepted message with Engage's message id (`ref`).

Judged from the peers' logs: a retry after a 429 sooner than its Retry-After, a 400 tried more
than once, a message id accepted twice (duplicates), a message neither accepted nor ended with
a reason (lost); and whether the primary's circuit opened and batches failed over.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from typing import Any

from django.test import override_settings
from django.utils import timezone

from bench.chaos.core import Scenario, result
from bench.chaos.edges_caps import ZONES
from bench.chaos.edges_seed import consents_grant, members_create, queued_messages_create, run_tag
from communications.circuits import circuit_close, circuit_open_seconds
from communications.models import Gateway, Mailing, Message, Template
from communications.services.dispatch import MAX_ATTEMPTS, message_batch_dispatch
from members.models import Member
from tests.peers.http_sms import HttpSmsPeer
from tests.peers.smtp import free_port

NAME = "providers_misbehave"
# members, seconds the primary is dead, seconds to wait for every message to end
SIZES = {"small": (40, 3.0, 50.0), "full": (2_000, 60.0, 240.0)}
BATCH = 5
RETRY_AFTER_S = 2
FAULTS = {"throttled": 2, "unavailable": 2, "reset": 2, "stalled": 1}
BAD_REQUESTS = 2
FINAL = {Message.Status.SENT, Message.Status.DELIVERED, Message.Status.FAILED,
         Message.Status.UNKNOWN, Message.Status.SKIPPED, Message.Status.REJECTED}


def _daytime_zone() -> str:
    import zoneinfo
    from datetime import datetime

    return next(zone for zone in ZONES if 10 <= datetime.now(zoneinfo.ZoneInfo(zone)).hour < 19)


def providers_misbehave(size: str) -> dict[str, Any]:
    members_count, dead_s, limit_s = SIZES[size]
    tag = run_tag("providers")
    member_ids = members_create(tag=tag, count=members_count, timezones=[_daytime_zone()])
    consents_grant(member_ids=member_ids, channel="sms")
    phones = dict(Member.objects.filter(pk__in=member_ids).values_list("pk", "phone"))
    digits = {pk: phone.lstrip("+") for pk, phone in phones.items()}
    primary = HttpSmsPeer(auth="none", port=free_port())  # not started: dead
    backup = HttpSmsPeer(auth="none").start()
    backup.script.stall_seconds = 3.0
    backup.script.once_retry_after = RETRY_AFTER_S
    # The last members' numbers: claims go in id order, so the first batches meet the dead
    # primary and these reach the backup while the circuit is open.
    numbers = iter(digits[pk] for pk in reversed(member_ids))
    faulty: dict[str, list[str]] = defaultdict(list)
    for fault, count in FAULTS.items():
        for _ in range(count):
            number = next(numbers)
            backup.script.once[number] = fault
            faulty[fault].append(number)
    bad = [next(numbers) for _ in range(BAD_REQUESTS)]
    backup.script.bad_request.update(bad)
    settings = {"timeout": 1, "connect_timeout": 1}
    backup_gateway = Gateway.objects.create(name=f"{tag} backup", channel="sms",
                                            provider="http_sms",
                                            settings=backup.gateway_settings(**settings))
    primary_gateway = Gateway.objects.create(name=f"{tag} primary", channel="sms",
                                             provider="http_sms", backup=backup_gateway,
                                             settings=primary.gateway_settings(**settings))
    template = Template.objects.create(name=tag, channel="sms", body="News for you.")
    mailing = Mailing.objects.create(name=tag, template=template, gateway=primary_gateway,
                                     state=Mailing.State.SENDING, started_at=timezone.now())
    queued_messages_create(mailing=mailing, member_ids=member_ids, channel="sms",
                           addresses=phones)
    messages = Message.objects.filter(mailing=mailing)
    revive = threading.Timer(dead_s, primary.start)
    circuit_opened = False
    started = time.monotonic()
    try:
        with override_settings(ENGAGE_CIRCUIT_FAILURES=2, ENGAGE_CIRCUIT_OPEN_SECONDS=dead_s):
            revive.start()
            while time.monotonic() - started < limit_s:
                outcome = message_batch_dispatch(mailing_id=mailing.pk, batch_size=BATCH,
                                                 rate_wait_s=1.0)
                circuit_opened |= bool(outcome.get("circuit_open")) or bool(
                    circuit_open_seconds(gateway_id=primary_gateway.pk))
                if not outcome.get("claimed"):
                    if not messages.exclude(status__in=FINAL).exists():
                        break
                    time.sleep(0.3)
    finally:
        revive.cancel()
        revive.join()
        primary.stop()
        backup.stop()
        for gateway in (primary_gateway, backup_gateway):
            circuit_close(gateway_id=gateway.pk)
    requests: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for peer in (primary, backup):
        for request in peer.requests:
            requests[request.msisdn].append((request.at, request.status))
    accepted: Counter[str] = Counter()
    for peer in (primary, backup):
        for sms in peer.received:
            accepted[sms.ref] += 1
    early_retries = 0
    for number in faulty["throttled"]:
        times = sorted(at for at, _ in requests[number])
        early_retries += sum(1 for first, second in zip(times, times[1:], strict=False)
                             if second - first < RETRY_AFTER_S)
    bad_retried = sum(max(0, len(requests[number]) - 1) for number in bad)
    # Each scripted fault counts only if the backup really answered it.
    backup_asked = {request.msisdn for request in backup.requests}
    exercised = {fault: sum(1 for number in numbers_ if number in backup_asked)
                 for fault, numbers_ in [*faulty.items(), ("bad_request", bad)]}
    rows = list(messages.values_list("pk", "status", "gateway_id", "attempts"))
    statuses = Counter(status for _, status, _, _ in rows)
    sent_ids = {str(pk) for pk, status, _, _ in rows
                if status in (Message.Status.SENT, Message.Status.DELIVERED)}
    lost = (len(sent_ids - set(accepted))
            + sum(1 for _, status, _, _ in rows if status not in FINAL))
    return result(
        NAME, size, audience=len(rows), sent=len(sent_ids),
        unknown=statuses.get(Message.Status.UNKNOWN, 0),
        failed=statuses.get(Message.Status.FAILED, 0),
        skipped=statuses.get(Message.Status.SKIPPED, 0),
        duplicates=sum(n - 1 for n in accepted.values() if n > 1), lost=lost,
        unexpected=len(set(accepted) - {str(pk) for pk, *_ in rows}),
        retry_after_violations=early_retries, bad_request_retries=bad_retried,
        circuit_opened=circuit_opened, faults_exercised=exercised,
        via_backup=sum(1 for _, _, gateway_id, _ in rows if gateway_id == backup_gateway.pk),
        via_primary=sum(1 for _, _, gateway_id, _ in rows
                        if gateway_id == primary_gateway.pk),
        over_max_attempts=sum(1 for *_, attempts in rows if attempts > MAX_ATTEMPTS),
        statuses=dict(statuses), seconds=round(time.monotonic() - started, 1))


SCENARIOS = [Scenario(NAME, providers_misbehave)]
