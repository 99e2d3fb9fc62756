"""Twilio Segment's HTTP Tracking API, the track call: `POST https://api.segment.io/v1/track`
(ENGAGE_SEGMENT_URL; EU workspaces set it to their regional endpoint) with HTTP basic auth of
the source's write key and an empty password, and
`{"userId", "event", "properties", "timestamp", "messageId"}`. The user is the member's
external id; `messageId` is the event id, which Segment deduplicates on, so a retry is one
event. Segment answers 200 to nearly everything (a wrong write key included: the event is
dropped on its side), and 400 to a body that is not JSON or over 32 KB."""

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
    basic_auth,
    event_title,
    json_request,
)

WRITE_KEY = re.compile(r"[A-Za-z0-9]{16,64}")


class SegmentConnector(CredentialsChecked):
    name: ClassVar[str] = "segment"
    credential_fields: ClassVar[tuple[CredentialField, ...]] = (
        CredentialField("write_key", "Write key", secret=True, pattern=WRITE_KEY,
                        hint="A Segment write key is 16 to 64 letters and digits.",
                        help_text="The HTTP API source's write key"),
    )

    def request_build(self, event: OutgoingEvent, *, target: Target, now: datetime
                      ) -> OutgoingRequest:
        if event.member is None:
            raise EventNotSendable("Segment needs a user id; the event has no member")
        body = {"userId": event.member.external_id, "event": event_title(event.type),
                "properties": {**event.payload, "engage_event_version": event.version},
                "timestamp": event.occurred_at.isoformat(), "messageId": event.id}
        return json_request(settings.ENGAGE_SEGMENT_URL, body, headers={
            "authorization": basic_auth(target.credentials["write_key"], "")})
