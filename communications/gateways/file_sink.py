"""Development sink: each message is written to a file in the gateway's folder, in the form that
fits its channel, so a newcomer can watch a mailing complete with nothing installed.

The folder is `<directory>/gateway-<id>/` (setting `directory`, default ENGAGE_SINK_DIR):
- email: one `message-<id>.eml` per message, the MIME email an SMTP server would get, headers
  (Message-ID, List-Unsubscribe) and HTML part included.
- sms, push, viber, social: one JSON line per message appended to `messages.jsonl`, with the
  message id, channel, address, sender, subject (a push title), body, image_url, link_url,
  button_text, data and the time it was written (`sink_record`). A batch's lines are appended in
  one write under an exclusive lock, so the lines of two worker processes never interleave.

Every message is "sent", its provider id naming where it went. Refused by a system check and by
`gateway_for` when DEBUG is off: a sink would swallow real members' messages.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings as django_settings

from communications.gateways.base import (
    BaseGateway,
    GatewayConfig,
    OutboundMessage,
    SendResult,
    register,
)
from communications.gateways.email_message import email_message_build

JSON_LINES = "messages.jsonl"


def sink_record(outbound: OutboundMessage, config: GatewayConfig) -> dict[str, Any]:
    """What a sink shows of one message: what its channel's provider would have been handed."""
    return {
        "message_id": outbound.message_id, "channel": config.channel,
        "address": outbound.address, "sender": config.sender, "subject": outbound.subject,
        "body": outbound.body, "image_url": outbound.image_url, "link_url": outbound.link_url,
        "button_text": outbound.button_text, "data": dict(outbound.data),
        "sent_at": datetime.now(UTC).isoformat(),
    }


def _append(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        # The lock, not O_APPEND alone: a write may come back short and need a second call.
        fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)  # releases the lock


@register
class FileSinkGateway(BaseGateway):
    provider = "file_sink"
    channels = frozenset({"email", "sms", "push", "viber", "social"})
    is_sink = True

    @classmethod
    def settings_errors(cls, settings: Mapping[str, Any]) -> dict[str, str]:
        directory = settings.get("directory")
        if directory is not None and not isinstance(directory, str):
            return {"directory": "must be a folder path"}
        return {}

    def open(self) -> None:
        directory = self.config.settings.get("directory") or django_settings.ENGAGE_SINK_DIR
        self._directory = Path(directory) / f"gateway-{self.config.gateway_id}"
        self._directory.mkdir(parents=True, exist_ok=True)

    def health(self) -> tuple[bool, str]:
        try:
            self.open()
            probe = self._directory / ".health"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            return False, f"cannot write to the sink folder: {exc}"
        return True, f"writes to {self._directory}"

    def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        if self.config.channel == "email":
            return [self._email_write(outbound) for outbound in batch]
        lines = "".join(json.dumps(sink_record(outbound, self.config), ensure_ascii=False) + "\n"
                        for outbound in batch)
        _append(self._directory / JSON_LINES, lines.encode())
        return [SendResult(outbound.message_id, provider_id=f"{JSON_LINES}#{outbound.message_id}",
                           cost=self.config.price_per_message) for outbound in batch]

    def _email_write(self, outbound: OutboundMessage) -> SendResult:
        email = email_message_build(outbound, sender=self.config.sender,
                                    message_id=self.message_id_header(outbound.message_id))
        path = self._directory / f"message-{outbound.message_id}.eml"
        path.write_bytes(email.message().as_bytes())
        return SendResult(outbound.message_id, provider_id=path.name,
                          cost=self.config.price_per_message)
