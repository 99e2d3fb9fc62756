"""Standard Webhooks (https://www.standardwebhooks.com/): the event POSTed to the
subscription's own URL as `{"type", "timestamp", "data": {"id", "member", "occurred_at",
"payload", "version"}}`, with `webhook-id` (the event id, the same on every retry so the
receiver can drop duplicates), `webhook-timestamp` (Unix seconds) and `webhook-signature`:
`v1,` + base64 HMAC-SHA256 of `id.timestamp.body` under the subscription's secret; while a
rotated-out secret is still valid, its signature follows, space-separated."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from standardwebhooks.webhooks import Webhook

from loyalty.webhooks.connectors.base import (
    USER_AGENT,
    CredentialsChecked,
    OutgoingEvent,
    OutgoingRequest,
    Target,
    json_body,
)


def signature_header(secrets: list[str], msg_id: str, timestamp: datetime, body: bytes) -> str:
    return " ".join(Webhook(secret).sign(msg_id, timestamp, body) for secret in secrets)


class StandardConnector(CredentialsChecked):
    """No credentials: a standard webhook is signed with the subscription's secret."""

    name: ClassVar[str] = "standard"

    def request_build(self, event: OutgoingEvent, *, target: Target, now: datetime
                      ) -> OutgoingRequest:
        body = json_body({
            "type": event.type,
            "timestamp": now.isoformat(),
            "data": {
                "id": event.id,
                "member": event.member.external_id if event.member is not None else None,
                "occurred_at": event.occurred_at.isoformat(),
                "payload": event.payload,
                "version": event.version,
            },
        })
        return OutgoingRequest(target.url, {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": event.id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature_header(target.secrets, event.id, now, body),
        }, body)
