"""dispatch_smpp: real workers sending an SMS mailing over SMPP 3.4 (a window of 10 submits
per connection) to the loopback SMSC, and that SMSC's own ceiling fed by a bare client.

The demo seed gives phones to most members but SMS consent to only some, so the bench grants
SMS consent (with its ledger event) to the members it sends to, once, set-based, and keeps it.
Quiet hours for SMS are lifted while it runs (and restored after).
"""

from __future__ import annotations

import socket
import time
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Min
from django.utils import timezone

from bench.database import broker_flush
from bench.mailings import mailing_run_until_completed, mailings_clear
from bench.options import Options
from bench.peers import PeerProcess
from bench.push import _audience_list, quiet_hours_lifted
from bench.results import Measured, median_of
from bench.workers import CeleryWorkers
from campaigns.models import StaticListMember, TargetGroup
from communications.models import Gateway, Mailing, Message, Template
from members.models import Consent, ConsentEvent, Member

CONCURRENCY = 2
WINDOW = 10
# One GSM-7 segment for any first name the seed gives.
BODY = "Hi {{ member.first_name }}, every purchase counts double this week at Engage Club."
WHAT = ("start of an SMS mailing (one GSM-7 segment, personalized) to the {n} first active "
        "members with a phone, given SMS consent, through an SMPP gateway (window {window}, one "
        "bind per batch) to the loopback SMSC (tests/peers/smpp.py, its own process); celery "
        "prefork x{concurrency} on Redis. value: sent / (completed_at - first claim); every "
        "message checked `sent` (or skipped: a phone two members share) and counted by the SMSC; "
        "a text in UCS-2 takes two submits")


def sms_audience_ensure(count: int) -> list[int]:
    """The ids of the `count` first active members with a phone, each given a granted SMS
    consent (with its ledger event) where they lack one: one statement, whatever `count`."""
    ids = list(Member.objects.filter(status=Member.Status.ACTIVE).exclude(phone="")
               .order_by("pk").values_list("pk", flat=True)[:count])
    if len(ids) < count:
        raise RuntimeError(f"only {len(ids)} active members with a phone for {count} SMS")
    qn = connection.ops.quote_name
    consents, events = qn(Consent._meta.db_table), qn(ConsentEvent._meta.db_table)
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"WITH granted AS ("
            f"  INSERT INTO {consents} (member_id, channel, purpose, category_id, state, source, "
            f"  recorded_at) SELECT id, 'sms', %s, NULL, %s, %s, %s "
            f"  FROM unnest(%s::bigint[]) AS id ON CONFLICT DO NOTHING RETURNING member_id) "
            f"INSERT INTO {events} (member_id, channel, purpose, category_id, action, source, "
            f"recorded_at, user_agent, consent_text, reason) SELECT member_id, 'sms', %s, NULL, "
            f"%s, %s, %s, '', %s, '' FROM granted",
            [Consent.Purpose.MARKETING, Consent.State.GRANTED, Consent.Source.IMPORT, now, ids,
             Consent.Purpose.MARKETING, ConsentEvent.Action.GRANT, Consent.Source.IMPORT, now,
             "Yes, send me offers by SMS."])
        Consent.objects.filter(member_id__in=ids, channel="sms", category=None,
                               purpose=Consent.Purpose.MARKETING).exclude(
            state=Consent.State.GRANTED).update(state=Consent.State.GRANTED, recorded_at=now)
    return ids


def sms_mailing_send(*, target_group: TargetGroup) -> dict[str, Any]:
    """One SMS mailing to the group through running workers and a fresh SMSC; raises unless
    every message was sent and the SMSC accepted exactly as many submits."""
    mailings_clear()
    broker_flush()
    expected = StaticListMember.objects.filter(static_list__name=target_group.name).count()
    with PeerProcess("smpp", stats_out=True) as smsc:
        gateway, _ = Gateway.objects.update_or_create(name="bench smpp", defaults={
            "channel": "sms", "provider": "smpp", "is_active": True, "sender": "Club",
            "settings": {**smsc.settings, "window": WINDOW, "timeout": 10,
                         "response_timeout": 10}})
        template, _ = Template.objects.update_or_create(name="bench sms points", defaults={
            "channel": "sms", "language": "en", "subject": "", "body": BODY, "html_body": ""})
        mailing = Mailing.objects.create(name="bench dispatch_smpp", target_group=target_group,
                                         template=template, gateway=gateway)
        mailing_run_until_completed(mailing, timeout=120 + expected / 100)
    rows = Message.objects.filter(mailing=mailing)
    statuses = dict(rows.values_list("status").annotate(n=Count("pk")).order_by())
    # Members of the seed who share a phone number get one message between them.
    shared = rows.filter(skip_reason=Message.SkipReason.DUPLICATE_ADDRESS).count()
    received = smsc.final_stats.get("messages")
    sent = statuses.get("sent", 0)
    if sent + shared != expected or set(statuses) - {"sent", "skipped"} or received != sent:
        raise RuntimeError(f"mailing {mailing.pk}: {statuses}, the SMSC received {received} "
                           f"messages; expected {expected} sent or skipped as shared")
    first_claim = rows.aggregate(first=Min("claimed_at"))["first"]
    mailing.refresh_from_db()
    return {"sent": sent, "seconds": (mailing.completed_at - first_claim).total_seconds(),
            "submits": smsc.final_stats.get("accepted"), "outstanding_max": smsc.final_stats.get(
                "outstanding_max")}


def dispatch_smpp(options: Options) -> Measured:
    """SMS/s from the first claim of a `--messages` SMS mailing to its completion, then the
    SMSC's ceiling from a bare client with the same window."""
    ids = sms_audience_ensure(options.messages)
    target_group = _audience_list(ids)
    runs: list[dict[str, Any]] = []

    def measure() -> float:
        run = sms_mailing_send(target_group=target_group)
        runs.append(run)
        return run["sent"] / run["seconds"]

    with quiet_hours_lifted(channel="sms"), CeleryWorkers(concurrency=CONCURRENCY) as workers:
        try:
            value, per_run = median_of(options.runs, measure)
        finally:
            mailings_clear()
            broker_flush()
        if "Traceback" in workers.log_tail():
            raise RuntimeError(f"the worker failed:\n{workers.log_tail()}")
    with PeerProcess("smpp", stats_out=True) as smsc:
        ceiling = smsc_ceiling(settings=smsc.settings, messages=min(options.messages, 50_000))
    return Measured(runs[-1]["sent"], value, options.runs, {
        "what": WHAT.format(n=runs[-1]["sent"], window=WINDOW, concurrency=CONCURRENCY),
        "per_run": per_run,
        "submits_per_run": [run["submits"] for run in runs],
        "window_used": max(run["outstanding_max"] or 0 for run in runs),
        "smsc_ceiling": round(ceiling, 3),
        "smsc_ceiling_what": f"a bare socket client on one connection, window {WINDOW}, "
                             "prebuilt submit_sm PDUs",
    })


def smsc_ceiling(*, settings: dict[str, Any], messages: int) -> float:
    """Submits/s the SMSC answers on one connection from a bare client keeping `WINDOW`
    submits outstanding: prebuilt PDUs, responses only counted."""
    from tests.peers.smpp import BIND_TRANSCEIVER, SUBMIT_SM, _cstring, _pdu

    def submit(sequence: int) -> bytes:
        body = (_cstring("") + bytes([5, 0]) + _cstring("Club") + bytes([1, 1])
                + _cstring(f"49151{sequence:08d}") + bytes([0, 0, 0]) + _cstring("")
                + _cstring("") + bytes([1, 0, 0, 0]) + bytes([18]) + b"x" * 18)
        return _pdu(SUBMIT_SM, 0, sequence, body)

    pdus = [submit(n) for n in range(2, messages + 2)]
    with socket.create_connection((settings["host"], settings["port"]), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        bind = (_cstring(settings["system_id"]) + _cstring(settings["password"]) + _cstring("")
                + bytes([0x34, 0, 0]) + _cstring(""))
        sock.sendall(_pdu(BIND_TRANSCEIVER, 0, 1, bind))
        buffer = bytearray()

        def read_pdu() -> None:
            nonlocal buffer
            while len(buffer) < 4 or len(buffer) < int.from_bytes(buffer[:4], "big"):
                buffer += sock.recv(65536)
            del buffer[:int.from_bytes(buffer[:4], "big")]

        read_pdu()  # bind_transceiver_resp
        started = time.perf_counter()
        sent = answered = 0
        while answered < len(pdus):
            while sent < len(pdus) and sent - answered < WINDOW:
                sock.sendall(pdus[sent])
                sent += 1
            read_pdu()
            answered += 1
        return len(pdus) / (time.perf_counter() - started)
