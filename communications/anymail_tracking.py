"""Tracking events from email services, normalized by django-anymail, into Engage's receipts.

Anymail's webhook views (`hooks/anymail/<esp>/tracking/`, e.g. `hooks/anymail/postmark/tracking/`)
check HTTP basic auth against `ANYMAIL["WEBHOOK_SECRET"]` ("user:password", from the
ANYMAIL_WEBHOOK_SECRET environment variable), parse the ESP's payload and send anymail's
`tracking` signal once per event. The receiver here maps each event to a Message status, and the
views are wrapped so that every event of one webhook call is stored together: one lookup of the
messages, one `receipts_record` per gateway (applied in bulk by a worker), whatever the number of
events the ESP batched into the call. Without a secret the views refuse every call: an open
endpoint would let anyone bounce or unsubscribe members.

Event types (anymail's `EventType`) to statuses:
    queued, sent -> sent          delivered -> delivered     bounced -> bounced (suppresses)
    rejected -> rejected          failed -> undelivered      opened -> opened
    clicked -> clicked            complained -> complained (suppresses)
    unsubscribed -> the member's email marketing consent withdrawn (source: unsubscribe link)
    deferred, autoresponded, subscribed, unknown -> nothing (a later event decides)

The message is found by the ESP's message id (our Message.provider_id, set at send) and, for the
gateway, by the `engage_message_id` metadata the adapter attached; the receipt itself is always
keyed by the ESP's id, so it moves only the message the ESP accepted under that id. A message
whose send was left in doubt has no ESP id: the first event naming it by metadata gives it the
event's id, so this and later receipts find it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from functools import wraps
from typing import Any

from anymail.signals import AnymailTrackingEvent, EventType
from anymail.urls import urlpatterns as anymail_urlpatterns
from django.conf import settings
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import URLPattern
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from communications.gateways import Receipt
from communications.gateways.anymail_esp import PROVIDER, esp_key
from communications.models import Gateway, Message
from communications.services.statuses import receipts_record
from members.models import Channel, Consent, ConsentEvent, ConsentSource, Member, Purpose
from members.services.consents import consent_record

logger = logging.getLogger(__name__)
Status = Message.Status

EVENT_STATUSES: dict[str, str] = {
    EventType.QUEUED: Status.SENT,
    EventType.SENT: Status.SENT,
    EventType.DELIVERED: Status.DELIVERED,
    EventType.BOUNCED: Status.BOUNCED,
    EventType.REJECTED: Status.REJECTED,
    EventType.FAILED: Status.UNDELIVERED,
    EventType.OPENED: Status.OPENED,
    EventType.CLICKED: Status.CLICKED,
    EventType.COMPLAINED: Status.COMPLAINED,
}
# Anymail calls Postmark's SoftBounce "bounced"; the address is not dead, so it must not be
# suppressed: the message is undelivered.
SOFT_BOUNCE_TYPES = {"Postmark": frozenset({"SoftBounce"})}


@dataclass(frozen=True)
class TrackedEvent:
    esp: str  # the gateway's `esp` setting (postmark)
    esp_name: str  # anymail's display name (Postmark)
    provider_id: str
    engage_message_id: int | None
    status: str  # a Message status, or "" for an unsubscribe
    unsubscribed: bool
    occurred_at: Any
    recipient: str
    code: str
    detail: str
    user_agent: str


def _message_id_from(metadata: Any) -> int | None:
    value = metadata.get("engage_message_id") if isinstance(metadata, dict) else None
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def tracking_event_read(*, event: AnymailTrackingEvent, esp_name: str) -> TrackedEvent | None:
    """What an anymail tracking event means for Engage; None when it changes nothing."""
    event_type = event.event_type
    unsubscribed = event_type == EventType.UNSUBSCRIBED
    status = EVENT_STATUSES.get(event_type, "")
    if not status and not unsubscribed:
        return None
    raw = event.esp_event if isinstance(event.esp_event, dict) else {}
    code = str(event.reject_reason or event_type)
    if event_type == EventType.BOUNCED and raw.get("Type") in SOFT_BOUNCE_TYPES.get(esp_name,
                                                                                     ()):
        status, code = Status.UNDELIVERED, str(raw["Type"])
    detail = " ".join(str(part) for part in (event.description, event.mta_response) if part)
    if event_type == EventType.CLICKED and event.click_url:
        detail = str(event.click_url)
    return TrackedEvent(
        esp=esp_key(esp_name), esp_name=esp_name, provider_id=str(event.message_id or ""),
        engage_message_id=_message_id_from(event.metadata), status=status,
        unsubscribed=unsubscribed, occurred_at=event.timestamp or timezone.now(),
        recipient=(event.recipient or "").strip().lower(), code=code[:64], detail=detail,
        user_agent=str(event.user_agent or ""),
    )


def _anymail_gateways() -> dict[int, str]:
    """{gateway id: its esp} of every anymail gateway (a handful of rows)."""
    return {pk: str(gw_settings.get("esp", "")) if isinstance(gw_settings, dict) else ""
            for pk, gw_settings in Gateway.objects.filter(provider=PROVIDER)
            .values_list("pk", "settings")}


def tracking_events_record(*, events: Sequence[TrackedEvent]) -> None:
    """Store one webhook call's events: receipts per gateway, unsubscribes through the consent
    ledger. One query finds every message the events name."""
    if not events:
        return
    gateways = _anymail_gateways()
    message_ids = {e.engage_message_id for e in events if e.engage_message_id is not None}
    provider_ids = {e.provider_id for e in events if e.provider_id}
    found = Q(pk__in=message_ids, gateway_id__in=list(gateways))
    if provider_ids:
        # `provider_id <> ''` lets PostgreSQL use the partial (gateway, provider id) index.
        found |= (Q(gateway_id__in=list(gateways), provider_id__in=provider_ids)
                  & ~Q(provider_id=""))
    rows = list(Message.objects.filter(found).values("pk", "gateway_id", "provider_id",
                                                      "member_id"))
    by_pk = {row["pk"]: row for row in rows}
    _provider_ids_adopt(events, by_pk)
    by_provider_id = {(row["gateway_id"], row["provider_id"]): row for row in rows}
    receipts: dict[int, list[Receipt]] = defaultdict(list)
    unsubscribes: list[tuple[TrackedEvent, dict[str, Any] | None]] = []
    for event in events:
        message = _message_for(event, by_pk, by_provider_id, gateways)
        if event.unsubscribed:
            unsubscribes.append((event, message))
            continue
        gateway_id = message["gateway_id"] if message else _sole_gateway(event.esp, gateways)
        if gateway_id is None or not event.provider_id:
            logger.warning("%s %s event for message %r matches no anymail gateway; dropped",
                           event.esp_name, event.status, event.provider_id)
            continue
        receipts[gateway_id].append(Receipt(
            provider_id=event.provider_id, status=event.status, occurred_at=event.occurred_at,
            code=event.code, detail=event.detail))
    for gateway_id, gateway_receipts in receipts.items():
        receipts_record(gateway_id=gateway_id, receipts=gateway_receipts)
    if unsubscribes:
        _unsubscribes_apply(unsubscribes)


def _provider_ids_adopt(events: Sequence[TrackedEvent],
                        by_pk: dict[int, dict[str, Any]]) -> None:
    """Give the ESP's message id to our messages that never learned it: the send was left in
    doubt (no answer after the request went out) and the ESP took it after all. Its events
    carry our metadata, so the first one names both ids; the receipts, keyed by the ESP's id,
    then find the message. A message that has an id keeps it."""
    adopted: dict[int, str] = {}
    for event in events:
        row = by_pk.get(event.engage_message_id) if event.engage_message_id else None
        if row is not None and not row["provider_id"] and event.provider_id:
            adopted.setdefault(row["pk"], event.provider_id[:200])
    if not adopted:
        return
    messages = list(Message.objects.filter(pk__in=list(adopted), provider_id="").only("pk"))
    for message in messages:
        message.provider_id = by_pk[message.pk]["provider_id"] = adopted[message.pk]
    Message.objects.bulk_update(messages, ["provider_id"])


def _message_for(event: TrackedEvent, by_pk: dict[int, dict[str, Any]],
                 by_provider_id: dict[tuple[int, str], dict[str, Any]],
                 gateways: dict[int, str]) -> dict[str, Any] | None:
    if event.engage_message_id is not None and event.engage_message_id in by_pk:
        return by_pk[event.engage_message_id]
    for gateway_id in gateways:
        message = by_provider_id.get((gateway_id, event.provider_id))
        if message is not None:
            return message
    return None


def _sole_gateway(esp: str, gateways: dict[int, str]) -> int | None:
    """The gateway of an event whose message is not known yet (the webhook overtook the
    record of the send): only when one anymail gateway speaks to this ESP."""
    candidates = [pk for pk, gateway_esp in gateways.items() if gateway_esp == esp]
    return candidates[0] if len(candidates) == 1 else None


def _unsubscribes_apply(unsubscribes: list[tuple[TrackedEvent, dict[str, Any] | None]]) -> None:
    """Withdraw email marketing consent of the member each unsubscribe names: the message's
    member, or without a known message every member holding the address (as a STOP from a
    shared phone does). Members already withdrawn get no new event."""
    by_member: dict[int, TrackedEvent] = {}
    addresses = {event.recipient: event for event, message in unsubscribes
                 if message is None and event.recipient}
    for event, message in unsubscribes:
        if message is not None and message["member_id"] is not None:
            by_member.setdefault(message["member_id"], event)
    if addresses:
        for member_id, email in Member.objects.filter(email__in=list(addresses)).values_list(
                "pk", "email"):
            by_member.setdefault(member_id, addresses[email])
    if not by_member:
        return
    withdrawn = set(Consent.objects.filter(
        member_id__in=list(by_member), channel=Channel.EMAIL, purpose=Purpose.MARKETING,
        category=None, state=Consent.State.WITHDRAWN).values_list("member_id", flat=True))
    members = Member.objects.in_bulk([pk for pk in by_member if pk not in withdrawn])
    for member_id, member in members.items():
        event = by_member[member_id]
        consent_record(
            member=member, channel=Channel.EMAIL, action=ConsentEvent.Action.WITHDRAW,
            source=ConsentSource.UNSUBSCRIBE_LINK, at=event.occurred_at,
            user_agent=event.user_agent or f"{event.esp_name} webhook",
            consent_text=(f"Unsubscribed through {event.esp_name} ({event.code}) from email "
                          f"marketing, message {event.provider_id or 'unknown'}"),
        )


# --- the signal receiver and the webhook views --------------------------------------------

# The events of the webhook call being handled; None outside one (events are then stored
# one by one, as they come).
_call_events: ContextVar[list[TrackedEvent] | None] = ContextVar("anymail_call_events",
                                                                 default=None)


def tracking_received(sender: Any, event: AnymailTrackingEvent, esp_name: str,
                      **kwargs: Any) -> None:
    """anymail.signals.tracking receiver (connected in CommunicationsConfig.ready)."""
    tracked = tracking_event_read(event=event, esp_name=esp_name)
    if tracked is None:
        return
    collected = _call_events.get()
    if collected is None:
        tracking_events_record(events=[tracked])
    else:
        collected.append(tracked)


def webhook_secret_configured() -> bool:
    secret = (getattr(settings, "ANYMAIL", None) or {}).get("WEBHOOK_SECRET")
    return bool(secret)


def _webhook(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not webhook_secret_configured():
            return JsonResponse({"code": "webhook_not_configured",
                                 "detail": "set ANYMAIL_WEBHOOK_SECRET (user:password) and "
                                           "give the ESP that basic auth"}, status=403)
        token = _call_events.set([])
        try:
            response = view(request, *args, **kwargs)
            events = _call_events.get() or []
            if 200 <= response.status_code < 300:
                tracking_events_record(events=events)
        finally:
            _call_events.reset(token)
        return response

    return csrf_exempt(wrapped)


# Anymail's tracking webhooks (its inbound-mail ones are left out: Engage takes no mail in).
urlpatterns = [
    URLPattern(pattern.pattern, _webhook(pattern.callback), pattern.default_args, pattern.name)
    for pattern in anymail_urlpatterns
    if isinstance(pattern, URLPattern) and "inbound" not in (pattern.name or "")
]
