"""Klaviyo's Events API: `POST https://a.klaviyo.com/api/events` (ENGAGE_KLAVIYO_URL) with a
private API key (`Authorization: Klaviyo-API-Key pk_...`) and the pinned `revision` header; the
body is a JSON:API document
`{"data": {"type": "event", "attributes": {"properties", "metric", "profile", "time",
"unique_id"}}}`. The metric is named from our event type ("Order Placed"); Klaviyo creates it
on first use. `unique_id` is the event id, so a retried or replayed delivery is one event in
Klaviyo. The profile is found by any of email, phone number and external id (at least one is
required); Klaviyo answers 202 Accepted."""

from __future__ import annotations

import re
from datetime import datetime
from typing import ClassVar

from django.conf import settings

from loyalty.webhooks.connectors.base import (
    CredentialField,
    CredentialsChecked,
    EventNotSendable,
    OutgoingEvent,
    OutgoingRequest,
    Target,
    event_title,
    json_request,
)

# The API revision the body follows; Klaviyo keeps a revision working for two years.
REVISION = "2025-01-15"
PRIVATE_KEY = re.compile(r"pk_[A-Za-z0-9]{20,64}")


class KlaviyoConnector(CredentialsChecked):
    name: ClassVar[str] = "klaviyo"
    credential_fields: ClassVar[tuple[CredentialField, ...]] = (
        CredentialField("api_key", "API key", secret=True, pattern=PRIVATE_KEY,
                        hint="A Klaviyo private API key starts with pk_ (a public key or site "
                             "id cannot create events).",
                        help_text="a private key, pk_…, with the events:write scope"),
    )

    def request_build(self, event: OutgoingEvent, *, target: Target, now: datetime
                      ) -> OutgoingRequest:
        member = event.member
        profile = {} if member is None else {
            key: value for key, value in (("email", member.email),
                                          ("phone_number", member.phone),
                                          ("external_id", member.external_id)) if value}
        if not profile:
            raise EventNotSendable("Klaviyo needs the member's email, phone or external id; "
                                   "the event has no member")
        body = {"data": {"type": "event", "attributes": {
            "properties": {**event.payload, "engage_event_version": event.version},
            "metric": {"data": {"type": "metric", "attributes": {"name": event_title(
                event.type)}}},
            "profile": {"data": {"type": "profile", "attributes": profile}},
            "time": event.occurred_at.isoformat(),
            "unique_id": event.id,
        }}}
        return json_request(settings.ENGAGE_KLAVIYO_URL, body, headers={
            "authorization": f"Klaviyo-API-Key {target.credentials['api_key']}",
            "revision": REVISION,
            "accept": "application/vnd.api+json",
        }, content_type="application/vnd.api+json")
