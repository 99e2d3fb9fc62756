"""Scenario 7, opt_outs_during_mailing: an email mailing and an SMS mailing to the same members
dispatched by several threads (the batch service, in-process, as a worker's task calls it) while
members opt out through four doors at once: the member API (preferences, email and SMS off),
the RFC 8058 one-click POST of an email's unsubscribe link, an SMS STOP posted to the inbound
SMS webhook, and an email service's spam complaint (Postmark's SpamComplaint webhook, through
anymail, about an earlier email of theirs sent by a loopback Postmark API). The mails go to a
loopback SMTP server, the SMS to a loopback aggregator, both logging what they accept with the
wall-clock time.

A complaint stops email once its receipt is applied (the address suppressed); the scenario
applies it right after the webhook answers, as the receipts worker would, and counts the
opt-out as committed from then.

Judged per (member, channel) withdrawn: a message on that channel claimed after the opt-out's
call had returned (so after it committed) and accepted by a peer is `unexpected`; one claimed
before and accepted after is a send already in flight (`in_flight_at_opt_out`, reported, not a
fault). Duplicates are ids a peer accepted twice; lost, messages neither accepted by a peer nor
ended with a reason.
"""

from __future__ import annotations

import base64
import json
import random
import tempfile
import threading
import time
import zoneinfo
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connections
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from bench.chaos.core import Scenario, result
from bench.chaos.edges_caps import ZONES
from bench.chaos.edges_seed import (
    consents_grant,
    members_create,
    queued_messages_create,
    run_tag,
)
from bench.member_api import bench_token, member_tokens_ensure
from communications.models import Gateway, Mailing, Message, Template
from communications.services.dispatch import message_batch_dispatch
from communications.services.statuses import receipts_apply
from communications.webhooks import SIGNATURE_HEADER, webhook_signature
from members.models import ConsentEvent, Member, Suppression
from members.unsubscribe import unsubscribe_urls
from tests.peers.http_sms import HttpSmsPeer
from tests.peers.postmark import PostmarkPeer, Sent
from tests.peers.smtp import SmtpPeer

NAME = "opt_outs_during_mailing"
SIZES = {"small": (300, 50), "full": (6_000, 1_000)}
DOORS = ("api", "one_click", "sms_stop", "esp_complaint")
BATCH = 10
DISPATCHERS = 2
OPT_OUT_CLIENTS = 3
INBOUND_SECRET = "chaos-sms-inbound-0123456789abcdef"
ESP_WEBHOOK_AUTH = ("postmark", "chaos-esp-hook-secret")
SENT_STATUSES = {Message.Status.SENT, Message.Status.DELIVERED, Message.Status.SENDING,
                 Message.Status.UNKNOWN}


def _dispatch(mailing_id: int, stop: threading.Event, errors: list[str]) -> None:
    try:
        while not stop.is_set():
            outcome = message_batch_dispatch(mailing_id=mailing_id, batch_size=BATCH,
                                             rate_wait_s=1.0)
            if not outcome.get("claimed"):
                return
    except Exception as exc:  # noqa: BLE001  (reported in the figures, not lost in a thread)
        errors.append(f"{type(exc).__name__}: {exc}"[:300])
    finally:
        connections.close_all()


def _opt_out(*, door: str, member: dict[str, Any], links: dict[int, str],
             sms_gateway_id: int, complaints: dict[int, tuple[PostmarkPeer, Sent]]
             ) -> tuple[int, list[str]]:
    """One member's opt-out through `door`; the answer's status and the channels withdrawn."""
    http = Client()
    if door == "esp_complaint":
        postmark, sent = complaints[member["pk"]]
        reply = http.post(reverse("anymail:postmark_tracking_webhook"),
                          data=json.dumps(postmark.event("SpamComplaint", sent)),
                          content_type="application/json", secure=True,
                          headers={"Authorization": _basic_auth(*ESP_WEBHOOK_AUTH)})
        # The receipts worker's part: the complaint suppresses the address when applied.
        receipts_apply(provider_ids=[sent.message_id])
        return reply.status_code, ["email"]
    if door == "api":
        reply = http.put("/api/v1/me/preferences/",
                         data=json.dumps({"channels": {"email": False, "sms": False}}),
                         content_type="application/json", secure=True,
                         headers={"Authorization": f"Bearer {bench_token(member['pk'])}"})
        return reply.status_code, ["email", "sms"]
    if door == "one_click":
        reply = http.post(urlsplit(links[member["pk"]]).path,
                          data="List-Unsubscribe=One-Click",
                          content_type="application/x-www-form-urlencoded", secure=True)
        return reply.status_code, ["email"]
    body = json.dumps({"from": member["phone"], "text": "STOP"}).encode()
    reply = http.post(f"/hooks/sms/{sms_gateway_id}/inbound", data=body,
                      content_type="application/json", secure=True,
                      headers={SIGNATURE_HEADER: webhook_signature(secret=INBOUND_SECRET,
                                                                   body=body)})
    return reply.status_code, ["sms"]


def _basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _earlier_emails_send(*, tag: str, postmark: PostmarkPeer, member_ids: list[int],
                         members: dict[int, dict[str, Any]]
                         ) -> dict[int, tuple[PostmarkPeer, Sent]]:
    """An earlier email to each member, sent through an email service (the loopback Postmark
    API) by the dispatch itself, for them to complain about during the mailing."""
    gateway = Gateway.objects.create(name=f"{tag} esp", channel="email", provider="anymail",
                                     settings=postmark.gateway_settings(),
                                     sender="Engage Club <club@engage.example.com>")
    template = Template.objects.create(name=f"{tag} welcome", channel="email",
                                       subject="Welcome", body="Welcome to the club.")
    mailing = Mailing.objects.create(name=f"{tag} welcome", template=template, gateway=gateway,
                                     state=Mailing.State.SENDING, started_at=timezone.now())
    queued_messages_create(mailing=mailing, member_ids=member_ids, channel="email",
                           addresses={pk: members[pk]["email"] for pk in member_ids})
    while message_batch_dispatch(mailing_id=mailing.pk, batch_size=100).get("claimed"):
        pass
    sent = {s.metadata["engage_message_id"]: s for s in postmark.sent}
    return {member_id: (postmark, sent[str(pk)]) for pk, member_id in Message.objects.filter(
        mailing=mailing, status=Message.Status.SENT).values_list("pk", "member_id")}


def opt_outs_during_mailing(size: str) -> dict[str, Any]:
    members_count, opt_outs = SIZES[size]
    tag = run_tag("optout")
    # Members where it is daytime now: the program's SMS quiet hours would hold the SMS
    # mailing otherwise (scenario 8 is the one about quiet hours).
    daytime = next(zone for zone in ZONES
                   if 10 <= datetime.now(zoneinfo.ZoneInfo(zone)).hour < 19)
    member_ids = members_create(tag=tag, count=members_count, timezones=[daytime])
    for channel in ("email", "sms"):
        consents_grant(member_ids=member_ids, channel=channel)
    member_tokens_ensure(10_000_000)
    members = {row["pk"]: row for row in Member.objects.filter(pk__in=member_ids).values(
        "pk", "email", "phone")}
    directory = Path(tempfile.mkdtemp(prefix="engage-chaos-optout-"))
    smtp = SmtpPeer(log_path=directory / "smtp.jsonl", keep_messages=False).start()
    sms = HttpSmsPeer().start()
    postmark = PostmarkPeer().start()
    rng = random.Random(7)
    chosen = rng.sample(member_ids, opt_outs)
    plan = [(DOORS[n % len(DOORS)], members[pk]) for n, pk in enumerate(chosen)]
    try:
        complaints = _earlier_emails_send(
            tag=tag, postmark=postmark, members=members,
            member_ids=[member["pk"] for door, member in plan if door == "esp_complaint"])
        email_gateway = Gateway.objects.create(
            name=f"{tag} email", channel="email", provider="smtp",
            settings=smtp.gateway_settings(), sender="Engage Club <club@engage.example.com>")
        sms_gateway = Gateway.objects.create(
            name=f"{tag} sms", channel="sms", provider="http_sms",
            settings=sms.gateway_settings(inbound_secret=INBOUND_SECRET), sender="Engage")
        mailings = {}
        for channel, gateway, addresses in (
                ("email", email_gateway, {pk: m["email"] for pk, m in members.items()}),
                ("sms", sms_gateway, {pk: m["phone"] for pk, m in members.items()})):
            template = Template.objects.create(name=f"{tag} {channel}", channel=channel,
                                               subject="News", body="News for you.")
            mailing = Mailing.objects.create(name=f"{tag} {channel}", template=template,
                                             gateway=gateway, state=Mailing.State.SENDING,
                                             started_at=timezone.now())
            queued_messages_create(mailing=mailing, member_ids=member_ids, channel=channel,
                                   addresses=addresses)
            mailings[channel] = mailing.pk
        links = unsubscribe_urls(member_ids=chosen, channel="email",
                                 mailing_id=mailings["email"])
        done: dict[tuple[int, str], float] = {}
        answers: Counter[int] = Counter()
        lock = threading.Lock()

        def opt_out_client(share: list[tuple[str, dict[str, Any]]]) -> None:
            try:
                for door, member in share:
                    status, channels = _opt_out(door=door, member=member, links=links,
                                                sms_gateway_id=sms_gateway.pk,
                                                complaints=complaints)
                    returned = time.time()
                    with lock:
                        answers[status] += 1
                        for channel in channels:
                            done.setdefault((member["pk"], channel), returned)
                    time.sleep(rng.uniform(0, 0.02))
            finally:
                connections.close_all()

        stop = threading.Event()
        errors: list[str] = []
        dispatchers = [threading.Thread(target=_dispatch, args=(mailing_id, stop, errors))
                       for mailing_id in mailings.values() for _ in range(DISPATCHERS)]
        clients = [threading.Thread(target=opt_out_client, args=(plan[n::OPT_OUT_CLIENTS],))
                   for n in range(OPT_OUT_CLIENTS)]
        # The in-process client calls itself `testserver`, which pytest allows and a plain
        # run (make chaos) would refuse as a foreign host.
        with override_settings(ALLOWED_HOSTS=[*settings.ALLOWED_HOSTS, "testserver"],
                               ANYMAIL={**settings.ANYMAIL,
                                        "WEBHOOK_SECRET": ":".join(ESP_WEBHOOK_AUTH)}):
            for thread in dispatchers:
                thread.start()
            time.sleep(0.2)
            for thread in clients:
                thread.start()
            for thread in clients + dispatchers:
                thread.join(timeout=300)
        stop.set()
        # Whatever the dispatchers left when they ran dry (messages handed back) goes now.
        for mailing_id in mailings.values():
            while message_batch_dispatch(mailing_id=mailing_id, batch_size=BATCH,
                                         rate_wait_s=1.0).get("claimed"):
                pass
    finally:
        smtp.stop()
        sms.stop()
        postmark.stop()
    accepted: dict[str, list[float]] = {}
    for line in (directory / "smtp.jsonl").read_text().splitlines():
        entry = json.loads(line)
        accepted.setdefault(entry["message_id"], []).append(entry["at"])
    for sent_sms in sms.received:
        accepted.setdefault(sent_sms.message_id, []).append(sent_sms.at)
    messages = list(Message.objects.filter(mailing_id__in=mailings.values()).values_list(
        "member_id", "channel", "status", "provider_id", "claimed_at", "skip_reason"))
    withdrawn = {(member_id, channel) for member_id, channel in ConsentEvent.objects.filter(
        member_id__in=chosen, action=ConsentEvent.Action.WITHDRAW).values_list(
        "member_id", "channel")}
    by_email = {m["email"].lower(): pk for pk, m in members.items() if pk in set(chosen)}
    complained = {(by_email[address], "email") for address in Suppression.objects.filter(
        channel="email", address__in=by_email, reason=Suppression.Reason.COMPLAINT,
    ).values_list("address", flat=True)}
    withdrawn |= complained
    unexpected = in_flight = 0
    for member_id, channel, status, provider_id, claimed_at, _ in messages:
        returned = done.get((member_id, channel))
        if returned is None or status not in SENT_STATUSES or provider_id not in accepted:
            continue
        if claimed_at.timestamp() > returned:
            unexpected += 1
        elif max(accepted[provider_id]) > returned:
            in_flight += 1
    statuses = Counter(status for _, _, status, _, _, _ in messages)
    sent_ids = {provider_id for _, _, status, provider_id, _, _ in messages
                if status in SENT_STATUSES}
    lost = (len(sent_ids - set(accepted)) + statuses.get(Message.Status.QUEUED, 0)
            + statuses.get(Message.Status.SENDING, 0))
    return result(
        NAME, size, audience=len(messages), sent=len(sent_ids),
        unknown=len(set(accepted) - sent_ids), failed=statuses.get(Message.Status.FAILED, 0),
        skipped=statuses.get(Message.Status.SKIPPED, 0),
        duplicates=sum(len(times) - 1 for times in accepted.values() if len(times) > 1),
        lost=lost, unexpected=unexpected, opt_outs=len(chosen),
        opt_out_answers={str(code): n for code, n in sorted(answers.items())},
        withdrawals_recorded=len(withdrawn), withdrawals_asked=len(done),
        complaints_suppressed=len(complained),
        in_flight_at_opt_out=in_flight, dispatch_errors=errors[:3],
        by_channel={channel: dict(Counter(status for _, c, status, *_ in messages
                                          if c == channel)) for channel in mailings},
        skip_reasons=dict(Counter(reason for *_, reason in messages if reason)),
        finished_at=datetime.now(UTC).isoformat())


SCENARIOS = [Scenario(NAME, opt_outs_during_mailing)]
