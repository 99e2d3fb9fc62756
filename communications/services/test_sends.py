"""Test sends: a mailing's message, rendered for chosen members or typed addresses, sent at once
through the mailing's real gateway before the mailing is scheduled.

A test is a Message row with `is_test=True`, so its provider answer, receipts and history are
kept like any other, but it counts nowhere: batch dispatch never claims it, frequency caps do
not count it, the mailing's funnel leaves it out, and it does not take the member's one message
of the mailing (the unique (mailing, member, channel) constraint excludes test rows).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import BooleanField, ExpressionWrapper, F, OuterRef, Q, Subquery
from django.utils import timezone

from communications.gateways import GATEWAYS, GatewayError, OutboundMessage, SendResult
from communications.models import Mailing, Message, MessageStatusChange
from communications.ratelimit import gateway_bucket
from communications.renderers import (
    MEMBER_VALUE_PATHS,
    CompiledTemplate,
    member_context,
    template_rich_content,
)
from communications.services.dispatch import (
    MAX_ATTEMPTS,
    list_unsubscribe_headers,
    messages_record_results,
)
from communications.services.sending import (
    RATE_WAIT_S,
    gateway_rate,
    gateway_send,
)
from communications.services.snapshots import PUSH_PLATFORMS
from communications.services.statuses import StatusChange, changes_record
from members.models import Channel, Member, Suppression
from members.selectors import ADDRESS_FIELDS, member_reachable, push_devices
from members.services.phones import phone_normalize
from members.services.profiles import email_normalize
from members.services.suppressions import SUPPRESSIBLE_CHANNELS
from members.unsubscribe import unsubscribe_urls

Status = Message.Status
State = Mailing.State

TEST_RECIPIENTS_MAX = 20
TEST_SUBJECT_PREFIX = "[TEST] "
# A test goes out before the mailing is sent; a mailing being sent or done has its messages.
TESTABLE_STATES = (State.DRAFT, State.SCHEDULED, State.RECURRING)
TEST_CHANNELS = (Channel.EMAIL, Channel.SMS, Channel.PUSH)
PUSH_TOKEN_MAX = 254
# A typed address belongs to no member, so its email carries a link that unsubscribes no one.
INERT_UNSUBSCRIBE_URL = "https://unsubscribe.invalid/test-send"


@dataclass(frozen=True)
class _Recipient:
    member_id: int | None
    address: str
    context: dict[str, Any]
    unsubscribe_url: str | None


def mailing_test_send(*, mailing: Mailing, member_ids: Sequence[int] = (),
                      addresses: Sequence[str] = (), sample_member_id: int | None = None,
                      by: AbstractBaseUser | None = None) -> list[Message]:
    """Send the mailing's message now to each chosen member (rendered for them) and each typed
    address (rendered for the `sample_member_id` member, or with the member fields empty),
    through the mailing's gateway; returns the test messages with their outcome, members
    first, in the order given.

    At most TEST_RECIPIENTS_MAX recipients. Raises ValidationError naming the field: `state`
    (only draft, scheduled or recurring mailings), `template` / `gateway` (missing, inactive,
    of another channel), `member_ids` (unknown, or not reachable on the channel: no consent,
    no address, suppressed, blocked), `addresses` (not an address of the channel, or
    suppressed), `sample_member_id` (unknown). The messages are recorded before they go out,
    so a worker that dies mid-send leaves them `sending` for the sweeper to mark `unknown`;
    a transient failure is not retried (the marketer sees it and sends again).
    """
    mailing = (Mailing.objects.select_related("template", "gateway").get(pk=mailing.pk))
    member_ids = list(dict.fromkeys(int(pk) for pk in member_ids))
    typed = [address.strip() for address in addresses if address and address.strip()]
    _mailing_check(mailing=mailing)
    channel = mailing.template.channel
    _count_check(member_ids=member_ids, addresses=typed)
    recipients = _members_recipients(mailing=mailing, channel=channel, member_ids=member_ids)
    recipients += _typed_recipients(mailing=mailing, channel=channel, addresses=typed,
                                    sample_member_id=sample_member_id)
    ids = _messages_create(mailing=mailing, channel=channel, recipients=recipients, by=by)
    template = CompiledTemplate(subject=mailing.template.subject, body=mailing.template.body,
                                html_body=mailing.template.html_body)
    rich_content = template_rich_content(mailing.template)
    outbound: list[OutboundMessage] = []
    results: list[SendResult] = []
    for pk, recipient in zip(ids, recipients, strict=True):
        try:
            rendered = template.render(recipient.context,
                                       unsubscribe_url=recipient.unsubscribe_url)
        except Exception as exc:  # noqa: BLE001  (a template failing for one recipient fails only them)
            results.append(SendResult(pk, error=GatewayError(
                f"template failed for this recipient: {exc}", code="render", permanent=True)))
            continue
        subject = TEST_SUBJECT_PREFIX + rendered.subject if channel == Channel.EMAIL \
            else rendered.subject
        headers = (list_unsubscribe_headers(recipient.unsubscribe_url)
                   if recipient.member_id is not None and recipient.unsubscribe_url else {})
        outbound.append(OutboundMessage(message_id=pk, address=recipient.address,
                                        subject=subject, body=rendered.body,
                                        html_body=rendered.html_body, headers=headers,
                                        **rich_content))
    results += _send(mailing=mailing, outbound=outbound)
    # Every attempt is the last: a transient error fails the test instead of queueing it.
    messages_record_results(results=results, attempts={pk: MAX_ATTEMPTS for pk in ids},
                            gateway_id=mailing.gateway_id)
    order = {pk: index for index, pk in enumerate(ids)}
    return sorted(Message.objects.filter(pk__in=ids), key=lambda m: order[m.pk])


def members_by_keys(*, keys: Iterable[str]) -> list[int]:
    """Member ids from what a marketer typed: ids or external ids, in the order given; raises
    ValidationError on `member_ids` naming the ones no member has. One query."""
    keys = list(dict.fromkeys(key.strip() for key in keys if key and key.strip()))
    if not keys:
        return []
    numbers = [int(key) for key in keys if key.isdigit() and len(key) < 19]
    rows = list(Member.objects.filter(Q(external_id__in=keys) | Q(pk__in=numbers))
                .values_list("pk", "external_id"))
    by_external = {external_id: pk for pk, external_id in rows if external_id}
    by_id = {pk for pk, _ in rows}
    found: list[int] = []
    unknown: list[str] = []
    for key in keys:
        if key in by_external:
            found.append(by_external[key])
        elif key.isdigit() and int(key) in by_id:
            found.append(int(key))
        else:
            unknown.append(key)
    if unknown:
        raise ValidationError({"member_ids": f"no member with the id or external id "
                                             f"{', '.join(unknown)}"})
    return list(dict.fromkeys(found))


def _mailing_check(*, mailing: Mailing) -> None:
    if mailing.state not in TESTABLE_STATES:
        raise ValidationError({"state": f"a {mailing.state} mailing cannot be tested: test it "
                                        "before it is sent"})
    errors: dict[str, str] = {}
    if mailing.template_id is None:
        errors["template"] = "a test send needs the mailing's template"
    if mailing.gateway_id is None:
        errors["gateway"] = "a test send goes through the mailing's gateway: choose one"
    elif not mailing.gateway.is_active:
        errors["gateway"] = "this gateway is not active"
    if not errors:
        channel = mailing.template.channel
        adapter = GATEWAYS.get(mailing.gateway.provider)
        if mailing.gateway.channel != channel:
            errors["gateway"] = (f"the gateway sends {mailing.gateway.channel}, the template "
                                 f"is for {channel}")
        elif adapter is None or channel not in adapter.channels:
            errors["gateway"] = (f"the gateway's provider {mailing.gateway.provider!r} cannot "
                                 f"send {channel}")
        elif channel not in TEST_CHANNELS:
            errors["template"] = f"{channel} mailings cannot be tested yet"
    if errors:
        raise ValidationError(errors)


def _count_check(*, member_ids: Sequence[int], addresses: Sequence[str]) -> None:
    if not member_ids and not addresses:
        raise ValidationError({"member_ids": "choose at least one member or type an address"})
    if len(member_ids) + len(addresses) > TEST_RECIPIENTS_MAX:
        field = "addresses" if addresses else "member_ids"
        raise ValidationError({field: f"at most {TEST_RECIPIENTS_MAX} recipients per test "
                                      f"send, {len(member_ids) + len(addresses)} given"})


def _context(row: dict[str, Any]) -> dict[str, Any]:
    return member_context({path: row[key] for key, path in MEMBER_VALUE_PATHS.items()})


def _members_recipients(*, mailing: Mailing, channel: str,
                        member_ids: Sequence[int]) -> list[_Recipient]:
    """The chosen members with their address on the channel, in one query; only members the
    mailing itself could reach (a test is marketing to them all the same)."""
    if not member_ids:
        return []
    members = Member.objects.filter(pk__in=member_ids).annotate(_reachable=ExpressionWrapper(
        member_reachable(channel=channel), output_field=BooleanField()))
    if channel == Channel.PUSH:
        # The device the mailing itself would use (`snapshots.PUSH_PLATFORMS`, the most
        # recently seen), as the audience snapshot picks it.
        members = members.annotate(_address=Subquery(push_devices(
            member=OuterRef("pk"), platforms=PUSH_PLATFORMS.get(mailing.gateway.provider))
            .order_by(F("last_seen_at").desc(nulls_last=True), "-pk").values("token")[:1]))
    else:
        members = members.annotate(_address=F(ADDRESS_FIELDS[channel]))
    rows = {row["pk"]: row for row in
            members.values("pk", "_reachable", "_address", *MEMBER_VALUE_PATHS)}
    unknown = [str(pk) for pk in member_ids if pk not in rows]
    if unknown:
        raise ValidationError({"member_ids": f"no member with the id {', '.join(unknown)}"})
    unreachable = [str(pk) for pk in member_ids
                   if not rows[pk]["_reachable"] or not rows[pk]["_address"]]
    if unreachable:
        raise ValidationError({"member_ids": (
            f"cannot be sent {channel} marketing (no consent on the channel, no usable "
            f"address, a suppressed address, or not active): member {', '.join(unreachable)}")})
    links = (unsubscribe_urls(member_ids=member_ids, channel=Channel.EMAIL,
                              mailing_id=mailing.pk)
             if channel == Channel.EMAIL else {})
    return [_Recipient(member_id=pk, address=rows[pk]["_address"], context=_context(rows[pk]),
                       unsubscribe_url=links.get(pk)) for pk in member_ids]


def _typed_recipients(*, mailing: Mailing, channel: str, addresses: Sequence[str],
                      sample_member_id: int | None) -> list[_Recipient]:
    if not addresses:
        return []
    cleaned: list[str] = []
    problems: list[str] = []
    for raw in addresses:
        try:
            cleaned.append(_address_clean(channel=channel, raw=raw))
        except ValidationError as error:
            problems += error.messages
    if problems:
        raise ValidationError({"addresses": problems})
    if channel in SUPPRESSIBLE_CHANNELS:
        suppressed = set(Suppression.objects.filter(channel=channel, address__in=cleaned)
                         .values_list("address", flat=True))
        if suppressed:
            raise ValidationError({"addresses": (
                f"on the {channel} suppression list (a bounce, complaint or opt-out): "
                f"{', '.join(sorted(suppressed))}")})
    context = member_context({})
    if sample_member_id is not None:
        row = Member.objects.filter(pk=sample_member_id).values(*MEMBER_VALUE_PATHS).first()
        if row is None:
            raise ValidationError({"sample_member_id": f"no member with the id "
                                                       f"{sample_member_id}"})
        context = _context(row)
    link = INERT_UNSUBSCRIBE_URL if channel == Channel.EMAIL else None
    return [_Recipient(member_id=None, address=address, context=context, unsubscribe_url=link)
            for address in dict.fromkeys(cleaned)]


def _address_clean(*, channel: str, raw: str) -> str:
    if channel == Channel.EMAIL:
        try:
            return email_normalize(raw)
        except ValidationError as exc:
            raise ValidationError(f"{raw!r} is not a valid email address") from exc
    if channel == Channel.SMS:
        try:
            return phone_normalize(raw)
        except ValidationError as exc:
            raise ValidationError(f"{raw!r} is not a phone number in international form "
                                  "(+ and the country code)") from exc
    if len(raw) > PUSH_TOKEN_MAX or any(char.isspace() for char in raw):
        raise ValidationError(f"{raw[:40]!r} is not a push token")
    return raw


def _messages_create(*, mailing: Mailing, channel: str, recipients: Sequence[_Recipient],
                     by: AbstractBaseUser | None) -> list[int]:
    """The test messages, recorded as being sent before anything goes out, with who asked."""
    now = timezone.now()
    who = getattr(by, "get_username", lambda: "")() if by is not None else ""
    with transaction.atomic():
        messages = Message.objects.bulk_create([
            Message(mailing=mailing, member_id=recipient.member_id, is_test=True,
                    channel=channel, address=recipient.address, status=Status.SENDING,
                    attempts=1, gateway_id=mailing.gateway_id, created_at=now,
                    claimed_at=now, updated_at=now)
            for recipient in recipients
        ])
        ids = [message.pk for message in messages]
        changes_record(changes=[StatusChange(pk, Status.SENDING, now, "test",
                                             f"test send by {who or 'the system'}")
                                for pk in ids],
                       source=MessageStatusChange.Source.OPERATOR, recorded_at=now)
    return ids


def _send(*, mailing: Mailing, outbound: Sequence[OutboundMessage]) -> list[SendResult]:
    """Through the gateway's rate limit when it has one: a test shares the provider's rate
    with every worker. What the limit had no slot for in time is failed, not queued."""
    rate = gateway_rate(gateway=mailing.gateway)
    bucket = (gateway_bucket(gateway_id=mailing.gateway_id, rate=rate)
              if rate is not None else None)
    results = gateway_send(gateway=mailing.gateway, batch=outbound, bucket=bucket,
                           deadline=time.monotonic() + RATE_WAIT_S)
    answered = {result.message_id for result in results}
    not_sent = GatewayError("not sent: the gateway's rate limit had no slot for it in time, "
                            "the provider asked to slow down, or it could not be reached "
                            "before this one was tried; send the test again",
                            code="not_sent", permanent=True)
    return results + [SendResult(m.message_id, error=not_sent) for m in outbound
                      if m.message_id not in answered]
