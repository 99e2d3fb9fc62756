"""dispatch_twilio, dispatch_http_sms, dispatch_viber, dispatch_telegram, dispatch_anymail: real
workers sending a mailing through one HTTP provider adapter to its loopback peer, served from its
own process (`python -m tests.peers.<name> --settings-out F`), every message counted there.

One `dispatch_http(options, adapter=...)` runs them all; an `Adapter` says what differs: the
peer, the gateway's provider, channel, sender and template, and who the audience is.

- SMS (Twilio, a generic HTTP SMS aggregator): the first active members with a phone, given SMS
  consent (`bench.smpp.sms_audience_ensure`). Members of the seed who share a phone get one
  message between them; the others of the pair are skipped as a shared address.
- Viber and the social channel (a Telegram bot): the first active members, each given an active
  messenger account on the network and a granted consent on the channel with its ledger event
  (`messenger_audience_ensure`), written once, set-based, and kept, as push devices are.
- Email (django-anymail's Postmark backend): the seed's own addresses, of the first active
  members who granted email consent and are not suppressed (confirmed too under double opt-in);
  nothing is written for them.

Beside the mailing, against one more peer: the peer's ceiling (the adapter's own requests,
prebuilt, from a bare aiohttp client), and the adapter alone in this process (no workers, no
database) with one connection and with its concurrency, as the issue asks of every adapter.

The channel's quiet hours are lifted while a scenario runs (and restored after): at night in the
members' time zones the mailing would be held, not sent, and the scenario measures sending.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp
from django.conf import settings as django_settings
from django.db import connection, transaction
from django.db.models import Count, Min
from django.utils import timezone

from bench.cpu import cpu_per_message
from bench.database import broker_flush
from bench.mailings import BODY as EMAIL_BODY
from bench.mailings import HTML_BODY as EMAIL_HTML_BODY
from bench.mailings import SUBJECT as EMAIL_SUBJECT
from bench.mailings import mailing_run_until_completed, mailings_clear
from bench.options import Options
from bench.peers import PeerProcess, batch_rate
from bench.push import _audience_list, mailing_cpu_meter, quiet_hours_lifted
from bench.results import Measured, median_of
from bench.smpp import sms_audience_ensure
from bench.workers import CeleryWorkers
from campaigns.models import StaticListMember, TargetGroup
from communications.gateways import GatewayConfig, OutboundMessage, gateway_for
from communications.gateways.anymail_esp import AnymailGateway
from communications.gateways.http_sms import HttpBatchGateway, ProviderRequest
from communications.gateways.postmark_batch import postmark_batch_request
from communications.models import Gateway, Mailing, Message, Template
from members.models import Consent, ConsentEvent, Member, MessengerAccount, Suppression
from members.selectors import marketing_consent_granted

CONCURRENCY = 2  # celery prefork children, as the other dispatch scenarios
GATEWAY_CONCURRENCY = 16  # requests in flight per batch (the HTTP adapters' default, set here)
TIMEOUT = 10
# Messages of the measurements beside the mailing: enough for a steady figure, few enough for
# the one-connection run to stay short.
ALONE_MESSAGES = 2000
# One GSM-7 segment, personalized; plain text (the social channel takes nothing else).
SHORT_BODY = "Hi {{ member.first_name }}, every purchase counts double this week at Engage Club."
ACCOUNT_PREFIX = {MessengerAccount.Network.VIBER: "bench-viber:"}
# Telegram chat ids are numbers: the bench's are this plus the member id.
TELEGRAM_CHAT_BASE = 9_100_000_000


def _consents_grant(ids: list[int], *, channel: str, text: str) -> int:
    """A granted marketing consent on `channel` (with its ledger event) for each member of
    `ids` lacking one, and any other state of theirs switched back to granted: two statements,
    whatever the count. The number of consents written."""
    qn = connection.ops.quote_name
    consents, events = qn(Consent._meta.db_table), qn(ConsentEvent._meta.db_table)
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH granted AS ("
            f"  INSERT INTO {consents} (member_id, channel, purpose, category_id, state, source, "
            f"  recorded_at) SELECT id, %s, %s, NULL, %s, %s, %s "
            f"  FROM unnest(%s::bigint[]) AS id ON CONFLICT DO NOTHING RETURNING member_id) "
            f"INSERT INTO {events} (member_id, channel, purpose, category_id, action, source, "
            f"recorded_at, user_agent, consent_text, reason) SELECT member_id, %s, %s, NULL, "
            f"%s, %s, %s, '', %s, '' FROM granted",
            [channel, Consent.Purpose.MARKETING, Consent.State.GRANTED, Consent.Source.IMPORT,
             now, ids, channel, Consent.Purpose.MARKETING, ConsentEvent.Action.GRANT,
             Consent.Source.IMPORT, now, text])
        added = cursor.rowcount
    added += Consent.objects.filter(member_id__in=ids, channel=channel, category=None,
                                    purpose=Consent.Purpose.MARKETING).exclude(
        state=Consent.State.GRANTED).update(state=Consent.State.GRANTED, recorded_at=now)
    return added


def messenger_account_id_sql(network: str) -> str:
    """The SQL expression of the bench's account id on `network` for the member `id`."""
    if network == MessengerAccount.Network.TELEGRAM:
        return f"({TELEGRAM_CHAT_BASE} + id)::text"
    return f"'{ACCOUNT_PREFIX[network]}' || lpad(id::text, 12, '0')"


def messenger_audience_ensure(count: int, *, network: str, channel: str) -> list[int]:
    """The ids of the `count` first active members, each given an active messenger account on
    `network` and a granted marketing consent on `channel` (with its ledger event) where they
    lack one. One statement per table, whatever `count`; rows already there are kept, and a
    bench account switched off since (a provider said it was gone) is switched on again."""
    ids = list(Member.objects.filter(status=Member.Status.ACTIVE).order_by("pk")
               .values_list("pk", flat=True)[:count])
    if len(ids) < count:
        raise RuntimeError(f"only {len(ids)} active members for {count} {channel} messages: "
                           "seed more")
    accounts = connection.ops.quote_name(MessengerAccount._meta.db_table)
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {accounts} AS account (member_id, network, account_id, is_active, "
            f"verified_at, created_at) SELECT id, %s, {messenger_account_id_sql(network)}, true, "
            f"%s, %s FROM unnest(%s::bigint[]) AS id "
            f"ON CONFLICT (network, account_id) DO UPDATE SET is_active = true "
            f"WHERE NOT account.is_active",
            [network, now, now, ids])
        added = cursor.rowcount
        added += _consents_grant(ids, channel=channel, text=f"Yes, send me offers on {network}.")
    if added and connection.vendor == "postgresql":
        # As autovacuum would before long (see push_audience_ensure).
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {accounts}, "
                           f"{connection.ops.quote_name(Consent._meta.db_table)}")
    return ids


def email_audience(count: int) -> list[int]:
    """The ids of the `count` first active members with an email address the seed gave them,
    email consent granted, not suppressed (and confirmed, under double opt-in). Writes nothing."""
    members = (Member.objects.filter(marketing_consent_granted(channel="email"),
                                     status=Member.Status.ACTIVE).exclude(email="")
               .exclude(email__in=Suppression.objects.filter(channel="email")
                        .values("address")))
    if django_settings.ENGAGE_EMAIL_DOUBLE_OPT_IN:
        members = members.filter(email_verified_at__isnull=False)
    ids = list(members.order_by("pk").values_list("pk", flat=True)[:count])
    if len(ids) < count:
        raise RuntimeError(f"only {len(ids)} members may get email, for {count}: seed more")
    return ids


@dataclass(frozen=True)
class Adapter:
    """What one HTTP adapter's scenario needs: its peer module, the gateway's provider,
    channel and sender, the template, the audience and the settings added to the peer's."""

    name: str
    peer: str  # tests.peers.<peer>
    provider: str
    channel: str
    sender: str
    audience: Callable[[int], list[int]]
    body: str = SHORT_BODY
    subject: str = ""
    html_body: str = ""
    concurrency: int = GATEWAY_CONCURRENCY  # requests in flight per batch
    url_setting: str = "base_url"  # the gateway setting naming the peer's address
    settings: dict[str, Any] = field(default_factory=dict)
    what: str = ""
    # The n-th address of the measurements beside the mailing (no members, no database).
    address: Callable[[int], str] = lambda n: f"+4477{n:08d}"

    @property
    def scenario(self) -> str:
        return f"dispatch_{self.name}"

    def gateway_settings(self, peer_settings: dict[str, Any]) -> dict[str, Any]:
        return {**peer_settings, "timeout": TIMEOUT, "concurrency": self.concurrency,
                **self.settings}


ADAPTERS = {adapter.name: adapter for adapter in [
    Adapter("twilio", "twilio", "twilio", "sms", "EngageClub", sms_audience_ensure,
            what="an SMS mailing through Twilio's Messages API (one form POST per SMS, basic "
                 "auth, no status callback asked)"),
    Adapter("http_sms", "http_sms", "http_sms", "sms", "Club", sms_audience_ensure,
            url_setting="url",
            what="an SMS mailing through the generic HTTP SMS adapter (one JSON POST per SMS, "
                 "bearer token) to a regional aggregator's API"),
    Adapter("viber", "viber", "viber", "viber", "Engage Club",
            lambda count: messenger_audience_ensure(
                count, network=MessengerAccount.Network.VIBER, channel="viber"),
            address=lambda n: f"{ACCOUNT_PREFIX[MessengerAccount.Network.VIBER]}{n:012d}",
            what="a Viber mailing (text messages) through the Viber REST API's send_message, "
                 "each member given a Viber account and Viber consent"),
    Adapter("telegram", "telegram", "telegram", "social", "",
            lambda count: messenger_audience_ensure(
                count, network=MessengerAccount.Network.TELEGRAM, channel="social"),
            address=lambda n: str(TELEGRAM_CHAT_BASE + n),
            what="a social mailing (plain text) through a Telegram bot's sendMessage, each "
                 "member given a Telegram chat and social consent"),
    Adapter("anymail", "postmark", "anymail", "email", "Engage Club <club@engage.example.com>",
            email_audience, body=EMAIL_BODY, subject=EMAIL_SUBJECT, html_body=EMAIL_HTML_BODY,
            url_setting="api_url", address=lambda n: f"member{n}@example.com",
            what="an email mailing (text + HTML, personalized) through the anymail adapter to "
                 "Postmark (each message's JSON built by django-anymail's Postmark payload, one "
                 "POST /email/batch per batch of up to 500 on a requests session), to the "
                 "seed's addresses with email consent"),
]}

WHAT = ("start of {adapter_what} to the {n} first such members, to the loopback peer "
        "(tests/peers/{peer}.py, its own process); gateway concurrency {gateway_concurrency}; "
        "celery prefork x{concurrency} on Redis. value: sent / (completed_at - first claim); "
        "with_snapshot_per_run counts from the start instead; every message checked `sent` (or "
        "skipped: an address two members share) and counted by the peer")


def http_mailing_send(*, adapter: Adapter, target_group: TargetGroup,
                      workers: CeleryWorkers) -> dict[str, Any]:
    """One mailing to the group through the running `workers` and a fresh peer, with the CPU
    each side spent per message; raises unless every message was sent (or skipped as a shared
    address) and the peer accepted exactly as many."""
    mailings_clear()
    broker_flush()
    expected = StaticListMember.objects.filter(static_list__name=target_group.name).count()
    with PeerProcess(adapter.peer, url_setting=adapter.url_setting) as peer:
        gateway, _ = Gateway.objects.update_or_create(name=f"bench {adapter.name}", defaults={
            "channel": adapter.channel, "provider": adapter.provider, "is_active": True,
            "sender": adapter.sender, "settings": adapter.gateway_settings(peer.settings)})
        template, _ = Template.objects.update_or_create(
            name=f"bench {adapter.name} points", defaults={
                "channel": adapter.channel, "language": "en", "subject": adapter.subject,
                "body": adapter.body, "html_body": adapter.html_body})
        mailing = Mailing.objects.create(name=f"bench {adapter.scenario}",
                                         target_group=target_group, template=template,
                                         gateway=gateway)
        with mailing_cpu_meter(workers, peer) as cpu:
            with_snapshot = mailing_run_until_completed(mailing, timeout=120 + expected / 100)
        received = peer.stats()["accepted"]
    rows = Message.objects.filter(mailing=mailing)
    statuses = dict(rows.values_list("status").annotate(n=Count("pk")).order_by())
    shared = rows.filter(skip_reason=Message.SkipReason.DUPLICATE_ADDRESS).count()
    sent = statuses.get("sent", 0)
    if (sent + shared != expected or set(statuses) - {"sent", "skipped"} or received != sent
            or not sent):
        raise RuntimeError(f"mailing {mailing.pk}: {statuses}, the {adapter.peer} peer "
                           f"received {received}; expected {expected} sent or skipped as shared")
    first_claim = rows.aggregate(first=Min("claimed_at"))["first"]
    mailing.refresh_from_db()
    return {"sent": sent, "shared": shared, "received": received,
            "seconds": (mailing.completed_at - first_claim).total_seconds(),
            "with_snapshot_s": with_snapshot, "cpu_ms_per_message": cpu.per_message_ms(sent)}


def _alone_batch(adapter: Adapter, count: int) -> list[OutboundMessage]:
    return [OutboundMessage(message_id=n, address=adapter.address(n), subject=adapter.subject,
                            body=SHORT_BODY.replace("{{ member.first_name }}", "Ann")
                            if adapter.body == SHORT_BODY else adapter.body,
                            html_body=adapter.html_body)
            for n in range(1, count + 1)]


def adapter_alone(adapter: Adapter, *, peer_settings: dict[str, Any], messages: int,
                  concurrency: int) -> float:
    """Messages/s of one batch of `messages` through the adapter in this process (no workers,
    no database), `concurrency` requests in flight (1: one connection, one at a time)."""
    gateway = gateway_for(GatewayConfig(
        gateway_id=0, channel=adapter.channel, provider=adapter.provider,
        settings={**adapter.gateway_settings(peer_settings), "concurrency": concurrency},
        sender=adapter.sender, price_per_message=Decimal(0)))
    batch = _alone_batch(adapter, messages)
    return batch_rate(gateway, batch)


def _anymail_requests(gateway: AnymailGateway,
                      batch: list[OutboundMessage]) -> list[ProviderRequest]:
    """The Postmark /email/batch calls the open anymail `gateway` makes of `batch`."""
    size = gateway._batch_size
    if not size:
        raise RuntimeError("the anymail bench measures Postmark's /email/batch path")
    return [ProviderRequest("POST", *postmark_batch_request(
                gateway._backend, gateway._postmark_batch_prepare(batch[first:first + size])))
            for first in range(0, len(batch), size)]


def peer_ceiling(adapter: Adapter, *, peer_settings: dict[str, Any],
                 messages: int) -> float | None:
    """Messages/s the peer accepts from a bare aiohttp client: the adapter's own requests,
    built before the clock starts, `concurrency` in flight on one session (anymail: its
    Postmark /email/batch calls). None for an adapter that builds no requests of its own."""
    gateway = gateway_for(GatewayConfig(
        gateway_id=0, channel=adapter.channel, provider=adapter.provider,
        settings=adapter.gateway_settings(peer_settings), sender=adapter.sender,
        price_per_message=Decimal(0)))
    if not isinstance(gateway, HttpBatchGateway | AnymailGateway):
        return None
    batch = _alone_batch(adapter, messages)
    gateway.open()  # reads the settings the requests are built from
    try:
        if isinstance(gateway, AnymailGateway):
            requests = _anymail_requests(gateway, batch)
        else:
            requests = [gateway._request(outbound) for outbound in batch]
    finally:
        gateway.close()

    async def run() -> float:
        pending = iter(requests)
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=adapter.concurrency)) as session:

            async def client() -> None:
                for request in pending:
                    async with session.request(request.method, request.url, data=request.body,
                                               headers=request.headers) as reply:
                        await reply.read()
                        if reply.status >= 300:
                            raise RuntimeError(f"the peer answered {reply.status}")

            start = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(adapter.concurrency)))
            return messages / (time.perf_counter() - start)

    return asyncio.run(run())


def dispatch_http(options: Options, *, adapter: str) -> Measured:
    """Messages/s from the first claim of a `--messages` mailing through `adapter` to its
    completion. One worker (prefork, 2 children) for all runs, a fresh peer process per run;
    messages are cleared between runs."""
    chosen = ADAPTERS[adapter]
    target_group = _audience_list(chosen.audience(options.messages))
    runs: list[dict[str, Any]] = []

    with (quiet_hours_lifted(channel=chosen.channel),
          CeleryWorkers(concurrency=CONCURRENCY) as workers):
        def measure() -> float:
            run = http_mailing_send(adapter=chosen, target_group=target_group, workers=workers)
            runs.append(run)
            return run["sent"] / run["seconds"]

        try:
            value, per_run = median_of(options.runs, measure)
        finally:
            mailings_clear()
            broker_flush()
        if "Traceback" in workers.log_tail():
            raise RuntimeError(f"the worker failed:\n{workers.log_tail()}")
    alone = min(options.messages, ALONE_MESSAGES)
    with PeerProcess(chosen.peer, url_setting=chosen.url_setting) as peer:
        ceiling = peer_ceiling(chosen, peer_settings=peer.settings, messages=alone)
        one_connection = adapter_alone(chosen, peer_settings=peer.settings, messages=alone,
                                       concurrency=1)
        configured = adapter_alone(chosen, peer_settings=peer.settings, messages=alone,
                                   concurrency=chosen.concurrency)
    last = runs[-1]
    return Measured(last["sent"], value, options.runs, {
        "what": WHAT.format(adapter_what=chosen.what, n=last["sent"], peer=chosen.peer,
                            gateway_concurrency=chosen.concurrency, concurrency=CONCURRENCY),
        "per_run": per_run,
        "with_snapshot_per_run": [round(r["sent"] / r["with_snapshot_s"], 3) for r in runs],
        **cpu_per_message(runs),
        "concurrency": chosen.concurrency,
        "workers": CONCURRENCY,
        "peer_received_per_run": [r["received"] for r in runs],
        "shared_address_skipped_per_run": [r["shared"] for r in runs],
        "peer_count_check": "ok: every message sent or skipped as a shared address, and the "
                            "peer received exactly the messages sent",
        "peer_ceiling": None if ceiling is None else round(ceiling, 3),
        "peer_ceiling_what": f"{alone} of the adapter's own requests, built before the clock "
                             f"starts, from a bare aiohttp client in this process, "
                             f"{chosen.concurrency} in flight" if ceiling is not None else
                             "not measured: the adapter builds no requests of its own",
        "adapter_alone_one_connection": round(one_connection, 3),
        "adapter_alone_concurrency": round(configured, 3),
        "adapter_alone_what": f"one batch of {alone} messages through the adapter in this "
                              f"process (no workers, no database): one connection, one request "
                              f"at a time, vs {chosen.concurrency} in flight",
    })


def dispatch_twilio(options: Options) -> Measured:
    return dispatch_http(options, adapter="twilio")


def dispatch_http_sms(options: Options) -> Measured:
    return dispatch_http(options, adapter="http_sms")


def dispatch_viber(options: Options) -> Measured:
    return dispatch_http(options, adapter="viber")


def dispatch_telegram(options: Options) -> Measured:
    return dispatch_http(options, adapter="telegram")


def dispatch_anymail(options: Options) -> Measured:
    return dispatch_http(options, adapter="anymail")
