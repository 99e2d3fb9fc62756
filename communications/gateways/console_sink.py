"""Development sink: each message is printed to the worker's standard output as one readable
block, so `make run` shows a mailing's messages in its terminal as they go out.

A block starts with a header line naming the channel, the message, the gateway and the address,
then one labelled line per field the message has (from, subject, image, link, button, data;
an email's extra headers and the size of its HTML part), a blank line and the body:

    === sms message 42 · gateway 3 · to +4915112345678 ===
    from:     Club
    <blank>
    Hi Ann, every purchase counts double this week.

Each block goes out in one write: under a Celery worker, whose standard output is redirected to
its log, a block is one log record, and blocks of two worker processes never interleave.
Every message is "sent"; no settings. Refused by a system check and by `gateway_for` when DEBUG
is off: a sink would swallow real members' messages.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from communications.gateways.base import BaseGateway, OutboundMessage, SendResult, register
from communications.gateways.file_sink import sink_record

# Record field -> label, in the order a block shows them.
LABELS = {"sender": "from", "subject": "subject", "image_url": "image", "link_url": "link",
          "button_text": "button", "data": "data"}
LABEL_WIDTH = 10


@register
class ConsoleSinkGateway(BaseGateway):
    provider = "console"
    channels = frozenset({"email", "sms", "push", "viber", "social"})
    is_sink = True

    def health(self) -> tuple[bool, str]:
        return True, "prints each message to the worker's standard output"

    def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        for outbound in batch:
            sys.stdout.write(self.block(outbound))
            sys.stdout.flush()
        return [SendResult(outbound.message_id, provider_id=f"console#{outbound.message_id}",
                           cost=self.config.price_per_message) for outbound in batch]

    def block(self, outbound: OutboundMessage) -> str:
        """The text printed for one message."""
        record = sink_record(outbound, self.config)
        rows = [(label, record[key]) for key, label in LABELS.items() if record[key]]
        rows += list(outbound.headers.items())
        if outbound.html_body:
            rows.append(("html", f"{len(outbound.html_body)} characters (not shown)"))
        lines = [f"=== {self.config.channel} message {outbound.message_id} · gateway "
                 f"{self.config.gateway_id} · to {outbound.address} ==="]
        lines += [f"{label + ':':<{LABEL_WIDTH - 1}} {_shown(value)}" for label, value in rows]
        return "\n".join([*lines, "", outbound.body, "", ""])


def _shown(value: object) -> str:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else str(value)
