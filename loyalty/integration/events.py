"""Events posted by the loyalty engine, the shop or the POS, checked against the catalog and
recorded in the event log (the outbox) in one bulk write.

An event names a catalog type (Event.Type) or an active custom type (CustomEventType, whose
payload must satisfy its JSON Schema), and the member by external id. A batch is all or
nothing: every event is checked first, and one bad event records none, each bad one reported
by its index.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import jsonschema
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from loyalty.event_log import event_readers_nudge_after_commit
from loyalty.integration.models import CustomEventType
from loyalty.models import Event
from loyalty.webhooks.relay import events_relay_nudge
from members.models import Member

BATCH_LIMIT = 1_000


@dataclass
class EventRefused:
    """Why one posted event cannot be recorded: a stable code, a sentence, and for a payload
    that fails its schema the JSON path of the failure."""

    code: str
    detail: str
    path: str | None = None

    def as_dict(self) -> dict[str, Any]:
        found = {"code": self.code, "detail": self.detail}
        if self.path is not None:
            found["path"] = self.path
        return found


@dataclass
class EventsRefused(Exception):
    """A batch with bad events: index -> why."""

    errors: dict[int, EventRefused] = field(default_factory=dict)


def events_relay_after_commit() -> None:
    """Wake the webhook relay, and the other readers of the log, once the events'
    transaction commits."""
    transaction.on_commit(events_relay_nudge)
    event_readers_nudge_after_commit()


def events_append(events: Sequence[Event]) -> list[Event]:
    """Write events of Engage's own making in one INSERT, inside the caller's transaction."""
    written = Event.objects.bulk_create(events)
    events_relay_after_commit()
    return written


def event_new(*, type: str, member_id: int | None, payload: Mapping[str, Any],
              occurred_at: datetime | None = None, version: int = 1) -> Event:
    return Event(id=uuid.uuid4(), type=type, occurred_at=occurred_at or timezone.now(),
                 member_id=member_id, payload=dict(payload), version=version)


def consent_changes_record(consent_events: Sequence[Any]) -> None:
    """CONSENT_CHANGED for each grant or withdrawal of the consent ledger (members.hooks
    CONSENTS_CHANGED), in the ledger's transaction."""
    events_append([event_new(
        type=Event.Type.CONSENT_CHANGED, member_id=change.member_id,
        occurred_at=change.recorded_at,
        payload={"channel": change.channel, "purpose": change.purpose,
                 "category": change.category.code if change.category_id else None,
                 "action": change.action, "source": change.source,
                 "consent_event_id": change.pk})
        for change in consent_events])


def _schema_path(error: jsonschema.ValidationError) -> str:
    return "$" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}"
                         for part in error.absolute_path)


def _event_check(raw: Any, validators: Mapping[str, jsonschema.Draft202012Validator | None],
                 members: Mapping[str, int]) -> Event | EventRefused:
    if not isinstance(raw, Mapping):
        return EventRefused("invalid_event", "an event is a JSON object")
    type_ = raw.get("type")
    if not isinstance(type_, str) or type_ not in validators:
        return EventRefused("unknown_event_type",
                            f"{type_!r} is neither in the catalog nor a custom event type")
    payload = raw.get("payload", {})
    if not isinstance(payload, Mapping):
        return EventRefused("invalid_payload", "the payload must be a JSON object", "$")
    validator = validators[type_]
    if validator is not None:
        error = jsonschema.exceptions.best_match(validator.iter_errors(payload))
        if error is not None:
            return EventRefused("invalid_payload", error.message, _schema_path(error))
    member_id = None
    external_id = raw.get("member")
    if external_id is not None:
        member_id = members.get(external_id) if isinstance(external_id, str) else None
        if member_id is None:
            return EventRefused("unknown_member", f"no member has the external id {external_id!r}")
    occurred_at = timezone.now()
    if raw.get("occurred_at") is not None:
        parsed = (parse_datetime(raw["occurred_at"]) if isinstance(raw["occurred_at"], str)
                  else None)
        if parsed is None or timezone.is_naive(parsed):
            return EventRefused("invalid_event",
                                "occurred_at must be an ISO 8601 time with its offset")
        occurred_at = parsed
    version = raw.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= 32767:
        return EventRefused("invalid_event", "version must be a whole number from 1")
    return event_new(type=type_, member_id=member_id, payload=payload, occurred_at=occurred_at,
                     version=version)


def _validators(types: set[str]) -> dict[str, jsonschema.Draft202012Validator | None]:
    found: dict[str, jsonschema.Draft202012Validator | None] = {
        name: None for name in Event.Type.values}
    custom = types - found.keys()
    if custom:
        for name, schema in CustomEventType.objects.filter(
                name__in=custom, active=True).values_list("name", "payload_schema"):
            found[name] = jsonschema.Draft202012Validator(schema) if schema else None
    return found


def events_ingest(*, raw_events: Sequence[Any]) -> list[Event]:
    """Check posted events and record them all in one INSERT, or none (EventsRefused)."""
    if not raw_events:
        raise EventsRefused({0: EventRefused("invalid_event", "send at least one event")})
    if len(raw_events) > BATCH_LIMIT:
        raise EventsRefused({BATCH_LIMIT: EventRefused(
            "batch_too_large", f"at most {BATCH_LIMIT} events in one batch")})
    types = {raw.get("type") for raw in raw_events
             if isinstance(raw, Mapping) and isinstance(raw.get("type"), str)}
    external_ids = {raw.get("member") for raw in raw_events
                    if isinstance(raw, Mapping) and isinstance(raw.get("member"), str)}
    members = dict(Member.objects.filter(external_id__in=external_ids)
                   .exclude(status=Member.Status.ERASED).values_list("external_id", "pk"))
    validators = _validators(types)
    checked = [_event_check(raw, validators, members) for raw in raw_events]
    refused = {index: found for index, found in enumerate(checked)
               if isinstance(found, EventRefused)}
    if refused:
        raise EventsRefused(refused)
    with transaction.atomic():
        return events_append(checked)
