"""Mailchimp Marketing API, member events (what customer journeys start on):
`POST https://<dc>.api.mailchimp.com/3.0/lists/{list_id}/members/{subscriber_hash}/events`
(ENGAGE_MAILCHIMP_URL, a template with `{dc}`) with HTTP basic auth `anystring:<api key>`; the
data center is the key's suffix (`…-us21`). The subscriber hash is the MD5 of the lower-cased
email, so a member without an email cannot be sent (the delivery fails without retry).

The body is `{"name", "properties", "occurred_at"}`. Mailchimp takes an event name of 2 to 30
letters, digits, `_` and `-`, so ORDER_PLACED becomes `order_placed` (a longer custom type is
cut); property values must be strings, so anything else is sent as its JSON. Mailchimp answers
204 No Content."""

from __future__ import annotations

import hashlib
import json
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
    json_request,
)

API_KEY = re.compile(r"[0-9a-f]{32}-[a-z]{2,4}[0-9]{1,3}")
LIST_ID = re.compile(r"[0-9a-f]{10}")
NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_-]")


def event_name(event_type: str) -> str:
    return NOT_IN_NAME.sub("_", event_type.lower())[:30].ljust(2, "_")


def subscriber_hash(email: str) -> str:
    return hashlib.md5(email.lower().encode(), usedforsecurity=False).hexdigest()


class MailchimpConnector(CredentialsChecked):
    name: ClassVar[str] = "mailchimp"
    credential_fields: ClassVar[tuple[CredentialField, ...]] = (
        CredentialField("api_key", "API key", secret=True, pattern=API_KEY,
                        hint="A Mailchimp API key is 32 hex digits, a dash and the data center "
                             "(e.g. …-us21).",
                        help_text="32 hex digits, a dash and the data center, e.g. …-us21"),
        CredentialField("list_id", "Audience (list) id", secret=False, pattern=LIST_ID,
                        hint="A Mailchimp audience id is 10 hex digits.",
                        help_text="10 hex digits, under Audience → Settings"),
    )

    def request_build(self, event: OutgoingEvent, *, target: Target, now: datetime
                      ) -> OutgoingRequest:
        if event.member is None or not event.member.email:
            raise EventNotSendable("Mailchimp finds a member by email; this member has none")
        api_key = target.credentials["api_key"]
        base = settings.ENGAGE_MAILCHIMP_URL.format(dc=api_key.rsplit("-", 1)[1])
        url = (f"{base}/lists/{target.credentials['list_id']}/members/"
               f"{subscriber_hash(event.member.email)}/events")
        properties = {key: value if isinstance(value, str) else json.dumps(value, default=str)
                      for key, value in event.payload.items()}
        body = {"name": event_name(event.type), "properties": properties,
                "occurred_at": event.occurred_at.isoformat()}
        return json_request(url, body, headers={"authorization": basic_auth("engage", api_key)})
