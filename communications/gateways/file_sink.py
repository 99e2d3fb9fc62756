"""Development sink: each email is written as an .eml file, one folder per gateway.

Lets a newcomer watch a mailing complete with nothing installed. Refused by a system check when
DEBUG is off.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings as django_settings

from communications.gateways.base import BaseGateway, OutboundMessage, SendResult, register
from communications.gateways.email_message import email_message_build


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
        results = []
        for outbound in batch:
            message_id = self.message_id_header(outbound.message_id)
            email = email_message_build(outbound, sender=self.config.sender,
                                        message_id=message_id)
            path = self._directory / f"message-{outbound.message_id}.eml"
            path.write_bytes(email.message().as_bytes())
            results.append(SendResult(outbound.message_id, provider_id=path.name,
                                      cost=self.config.price_per_message))
        return results
