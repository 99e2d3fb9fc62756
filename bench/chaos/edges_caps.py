"""Scenario 8, caps_and_quiet_hours: three overlapping email mailings to members in time zones
from UTC-10 to UTC+14, a frequency cap of one marketing message a day across mailings, quiet
hours 21:00-08:00, sent on a frozen clock stepping through three (small) or four days: the
dispatch service is called in-process with each step's `now` (as a worker's batch task calls
it), from several threads at once, and the mails go to a loopback SMTP server that logs each
Message-ID.

Judged from the SMTP server's log joined with the messages: members who got two mails less
than a day apart (over cap), mails claimed inside the member's local quiet hours, Message-IDs
received twice (duplicates), and messages neither received nor ended with a reason (lost).
"""

from __future__ import annotations

import json
import tempfile
import threading
import zoneinfo
from collections import Counter, defaultdict
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

from django.db import connections

from bench.chaos.core import Scenario, result
from bench.chaos.edges_seed import (
    consents_grant,
    members_create,
    queued_messages_create,
    run_tag,
)
from communications.models import FrequencyCap, Gateway, Mailing, Message, QuietHours, Template
from communications.services.dispatch import message_batch_dispatch
from members.models import Member
from tests.peers.smtp import SmtpPeer

NAME = "caps_and_quiet_hours"
SIZES = {"small": 60, "full": 3_000}
# (days, step): coarser at small size; every held message comes due within three days.
CLOCK = {"small": (3, timedelta(hours=1)), "full": (4, timedelta(minutes=30))}
ZONES = ["Pacific/Honolulu", "America/Anchorage", "America/Los_Angeles", "America/New_York",
         "UTC", "Europe/Berlin", "Asia/Kolkata", "Asia/Tokyo", "Australia/Sydney",
         "Pacific/Auckland", "Pacific/Kiritimati"]
QUIET_START, QUIET_END = time(21), time(8)
# Monday 2026-03-02 09:30 UTC, the clock's start.
# The dispatch stamps sends (sent_at, what the cap counts from) with the `now` it is given.
START = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
BATCH = 25
THREADS = 3
SENT_STATUSES = {Message.Status.SENT, Message.Status.DELIVERED, Message.Status.SENDING,
                 Message.Status.UNKNOWN}


def _in_quiet_hours(moment: datetime, zone: str) -> bool:
    local = moment.astimezone(zoneinfo.ZoneInfo(zone)).time()
    return local >= QUIET_START or local < QUIET_END


def _drain(mailing_ids: list[int], now: datetime) -> None:
    """Every mailing's due messages dispatched for `now`, mailings sharing THREADS threads."""
    def work(share: list[int]) -> None:
        try:
            pending = list(share)
            while pending:
                pending = [pk for pk in pending
                           if message_batch_dispatch(mailing_id=pk, batch_size=BATCH, now=now,
                                                     rate_wait_s=1.0).get("claimed")]
        finally:
            connections.close_all()

    # Every thread works on all mailings, so claims of the same members race each other.
    threads = [threading.Thread(target=work, args=(mailing_ids[n:] + mailing_ids[:n],))
               for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def caps_and_quiet_hours(size: str) -> dict[str, Any]:
    tag = run_tag("caps")
    member_ids = members_create(tag=tag, count=SIZES[size], timezones=ZONES)
    consents_grant(member_ids=member_ids, channel="email")
    addresses = dict(Member.objects.filter(pk__in=member_ids).values_list("pk", "email"))
    zones = dict(Member.objects.filter(pk__in=member_ids).values_list("pk", "timezone"))
    log_path = Path(tempfile.mkdtemp(prefix="engage-chaos-caps-")) / "smtp.jsonl"
    peer = SmtpPeer(log_path=log_path, keep_messages=False).start()
    quiet_before = list(QuietHours.objects.filter(channel="email").values(
        "starts_at", "ends_at", "is_active"))
    QuietHours.objects.update_or_create(channel="email", defaults={
        "starts_at": QUIET_START, "ends_at": QUIET_END, "is_active": True})
    cap = FrequencyCap.objects.create(channel="", max_messages=1, period_length=1,
                                      period_unit=FrequencyCap.Unit.DAYS)
    try:
        gateway = Gateway.objects.create(name=tag, channel="email", provider="smtp",
                                         settings=peer.gateway_settings(),
                                         sender="Engage Club <club@engage.example.com>")
        template = Template.objects.create(name=tag, channel="email", subject="Hello",
                                           body="Dear {{ member.first_name }}, news.")
        mailings = []
        for n, defer in enumerate((True, True, False)):
            mailing = Mailing.objects.create(
                name=f"{tag} {n}", template=template, gateway=gateway,
                state=Mailing.State.SENDING, started_at=START, defer_capped=defer)
            queued_messages_create(mailing=mailing, member_ids=member_ids, channel="email",
                                   addresses=addresses)
            mailings.append(mailing.pk)
        days, step = CLOCK[size]
        for n in range(int(timedelta(days=days) / step)):
            _drain(mailings, START + n * step)
    finally:
        peer.stop()
        cap.delete()
        QuietHours.objects.filter(channel="email").delete()
        for before in quiet_before:
            QuietHours.objects.create(channel="email", **before)
    received: Counter[str] = Counter(
        json.loads(line)["message_id"] for line in log_path.read_text().splitlines())
    messages = list(Message.objects.filter(mailing_id__in=mailings).values_list(
        "pk", "member_id", "status", "provider_id", "claimed_at", "skip_reason"))
    statuses = Counter(status for _, _, status, _, _, _ in messages)
    sent = [(member_id, claimed_at, provider_id)
            for _, member_id, status, provider_id, claimed_at, _ in messages
            if status in SENT_STATUSES]
    by_member: dict[int, list[datetime]] = defaultdict(list)
    for member_id, claimed_at, _ in sent:
        by_member[member_id].append(claimed_at)
    over_cap = 0
    for times in by_member.values():
        times.sort()
        over_cap += sum(1 for a, b in zip(times, times[1:], strict=False)
                        if b - a < timedelta(days=1))
    quiet = sum(1 for member_id, claimed_at, _ in sent
                if _in_quiet_hours(claimed_at, zones[member_id]))
    provider_ids = {provider_id for _, _, provider_id in sent}
    # Lost: a mail the database counts as sent that the server never got, or a message still
    # waiting when the clock has run out (each member can take three in three days).
    lost = len(provider_ids - set(received)) + statuses.get(Message.Status.QUEUED, 0)
    return result(
        NAME, size, audience=len(messages), sent=len(sent),
        unknown=len(set(received) - provider_ids), failed=statuses.get(Message.Status.FAILED, 0),
        skipped=statuses.get(Message.Status.SKIPPED, 0),
        duplicates=sum(n - 1 for n in received.values() if n > 1), lost=lost,
        over_cap=over_cap, sent_in_quiet_hours=quiet,
        skip_reasons=dict(Counter(reason for *_, reason in messages if reason)),
        members=len(member_ids), time_zones=len(ZONES))


SCENARIOS = [Scenario(NAME, caps_and_quiet_hours)]
