"""The contract every connector keeps, and what it is given.

A connector turns one event owed to one subscription into one HTTP request: `request_build(
event, target, now) -> OutgoingRequest`. It does no I/O, so the delivery machinery builds a
whole claimed batch first and sends it concurrently, and classifies every answer the same way
whatever the connector (loyalty/webhooks/delivery.py). A connector that cannot express an event
at all (Mailchimp needs the member's email) raises `EventNotSendable`: the delivery fails at
once, without retry, with that reason in its attempt log.

`credentials_clean(raw) -> dict` checks what a marketer typed for the connector and returns
what is stored (sealed); a wrong value is a ValidationError keyed by the credential's name, so
the admin and the API name the field. `credential_fields` says which fields the connector takes,
what each must look like, and which are secret (never shown again, only masked);
`CredentialsChecked` gives the `credentials_clean` that checks exactly that.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol

from django.core.exceptions import ValidationError


class EventNotSendable(Exception):  # noqa: N818  (a reason, not a fault)
    """This event cannot be expressed for this connector; retrying will not change that."""


@dataclass(frozen=True)
class MemberIdentity:
    external_id: str
    email: str
    phone: str


@dataclass(frozen=True)
class OutgoingEvent:
    """One event of the log with its member's identity, as a connector reads it."""

    id: str
    type: str
    occurred_at: datetime
    payload: dict[str, Any]
    version: int
    member: MemberIdentity | None


@dataclass(frozen=True)
class Target:
    """Where and as whom a subscription's events go, opened once per batch."""

    url: str
    credentials: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OutgoingRequest:
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class CredentialField:
    name: str
    label: str
    secret: bool
    pattern: re.Pattern[str]
    hint: str  # what a wrong value is told
    help_text: str = ""


class Connector(Protocol):
    name: ClassVar[str]
    credential_fields: ClassVar[tuple[CredentialField, ...]]

    def credentials_clean(self, raw: dict[str, Any]) -> dict[str, str]: ...

    def request_build(self, event: OutgoingEvent, *, target: Target, now: datetime
                      ) -> OutgoingRequest: ...


USER_AGENT = "Engage-Webhooks/1"


def json_body(data: Any) -> bytes:
    """A request body as every connector sends it: compact JSON, anything not JSON (a
    Decimal, a date in a payload) as its text."""
    return json.dumps(data, separators=(",", ":"), default=str).encode()


def json_request(url: str, data: Any, *, headers: dict[str, str],
                 content_type: str = "application/json") -> OutgoingRequest:
    """A POST of `data` as JSON with the platform's own `headers` (authorization, ...)."""
    return OutgoingRequest(url, {**headers, "content-type": content_type,
                                 "user-agent": USER_AGENT}, json_body(data))


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class CredentialsChecked:
    """The usual `credentials_clean`: the declared fields of `raw`, stripped, each matching its
    pattern; every wrong field reported at once, under its name. Keys not declared are an
    error too (a typo would otherwise be dropped silently)."""

    credential_fields: ClassVar[tuple[CredentialField, ...]] = ()

    def credentials_clean(self, raw: dict[str, Any]) -> dict[str, str]:
        errors: dict[str, str] = {}
        cleaned: dict[str, str] = {}
        for name in sorted(set(raw) - {spec.name for spec in self.credential_fields}):
            errors[name] = "Not a credential of this connector."
        for spec in self.credential_fields:
            value = raw.get(spec.name)
            value = value.strip() if isinstance(value, str) else ""
            if not value:
                errors[spec.name] = f"{spec.label} is required."
            elif not spec.pattern.fullmatch(value):
                errors[spec.name] = spec.hint
            else:
                cleaned[spec.name] = value
        if errors:
            raise ValidationError(errors)
        return cleaned


def event_title(event_type: str) -> str:
    """ORDER_PLACED -> "Order Placed": how a metric or a track event is named on platforms
    whose own events are worded that way."""
    return event_type.replace("_", " ").title()
