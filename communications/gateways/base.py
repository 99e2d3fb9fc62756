"""The gateway contract: every provider adapter is a small class with the same three methods.

    gateway = gateway_for(config)
    gateway.open()
    results = gateway.send(batch)      # one SendResult per OutboundMessage, same order
    gateway.close()

An adapter reuses one connection for the whole batch, never raises for one bad recipient (that
message gets a SendResult with a GatewayError), and raises GatewayError itself only when it
cannot talk to the provider at all. Provider replies are parsed here, in the provider module,
and never leak out of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

import uvloop


class GatewayError(Exception):
    """A failure classified for the retry policy.

    permanent: retrying will not help (a refused recipient, a bad request).
    in_doubt:  the provider may have accepted the message before the failure (the connection
               dropped after the data went out); such a message is reported, never resent.
    opted_out: the provider refused because the recipient opted out with it (replied STOP to
               its number): Engage withdraws their consent on the channel, for every gateway.
    """

    def __init__(self, message: str, *, code: str = "", permanent: bool,
                 retry_after: float | None = None, in_doubt: bool = False,
                 opted_out: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.permanent = permanent
        self.retry_after = retry_after
        self.in_doubt = in_doubt
        self.opted_out = opted_out


@dataclass(frozen=True)
class OutboundMessage:
    """One message as an adapter sends it, rendered for its member.

    Besides the text, push and Viber messages may carry an image (`image_url`), a link the
    message opens (`link_url`: a web URL or an app deep link such as `myapp://offers/7`) under a
    button (`button_text`, Viber), and, for push, `data` the app reads (string keys and values).
    """

    message_id: int
    address: str
    subject: str
    body: str
    html_body: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    image_url: str = ""
    link_url: str = ""
    button_text: str = ""
    data: Mapping[str, str] = field(default_factory=dict)


def push_data(outbound: OutboundMessage) -> dict[str, str]:
    """The data every push provider hands the app: the template's data, the link a tap opens
    and the image, and Engage's message id, with which the app reports the push read
    (`POST /api/v1/me/messages/<id>/read/`) and which maps the read back to the Message row."""
    data = {**outbound.data, "engage_message_id": str(outbound.message_id)}
    if outbound.link_url:
        data["link"] = outbound.link_url
    if outbound.image_url:
        data["image"] = outbound.image_url
    return data


@dataclass(frozen=True)
class SendResult:
    message_id: int
    provider_id: str = ""
    cost: Decimal | None = None
    error: GatewayError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Receipt:
    """What a provider later said about a message it accepted, in Engage's words.

    `provider_id` is what the provider answered at send (SendResult.provider_id); `status` one
    of Message.Status (delivered, undelivered, expired, rejected, bounced, opened, clicked,
    complained); `code` the provider's own state or error code, kept for the marketer.
    """

    provider_id: str
    status: str
    occurred_at: datetime
    code: str = ""
    detail: str = ""


@dataclass(frozen=True)
class GatewayConfig:
    """What an adapter gets from the Gateway row: plain data, never the model instance."""

    gateway_id: int
    channel: str
    provider: str
    settings: Mapping[str, Any]
    sender: str
    price_per_message: Decimal


# Secret for every provider: the key a provider signs its receipt webhooks with.
SHARED_SECRET_SETTINGS = ("inbound_secret",)


class BaseGateway:
    provider: ClassVar[str]
    channels: ClassVar[frozenset[str]]
    # Used only in development: a system check refuses them when DEBUG is off.
    is_sink: ClassVar[bool] = False
    # Settings that are credentials (besides SHARED_SECRET_SETTINGS): stored encrypted apart
    # from the plain settings (communications/secrets.py) and never shown in the admin;
    # `config.settings` holds both, so the adapter reads them like any other setting.
    secret_settings: ClassVar[tuple[str, ...]] = ()
    # Error codes after which the address will never work again for this provider (a push
    # token the service unregistered, a messenger account gone): the device or account is
    # deactivated (communications.services.statuses), so no snapshot addresses it again.
    dead_address_codes: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config

    @classmethod
    def settings_errors(cls, settings: Mapping[str, Any]) -> dict[str, str]:
        """Problems with a Gateway row's settings, keyed by setting name."""
        return {}

    def open(self) -> None:
        """Connect to the provider; called once per batch."""

    def close(self) -> None:
        """Release the connection; must not raise."""

    def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        raise NotImplementedError

    def health(self) -> tuple[bool, str]:
        """Can we reach the provider with these settings: (ok, what happened), never raises.

        Opens and closes a connection as a batch would (an SMTP session with its login, an
        SMPP bind and unbind, an OAuth token); an adapter with a cheaper or truer probe
        overrides it.
        """
        try:
            self.open()
        except GatewayError as error:
            return False, gateway_error_text(error)
        self.close()
        return True, "connected"

    def message_id_header(self, message_id: int) -> str:
        """A Message-ID that maps a bounce or reply back to our Message row."""
        return f"<engage.{message_id}.{self.config.gateway_id}@{self._message_id_domain()}>"

    def _message_id_domain(self) -> str:
        return str(self.config.settings.get("message_id_domain") or "engage.invalid")


def gateway_error_text(error: GatewayError) -> str:
    """An error as the marketer reads it: its class, the provider's code and text."""
    kind = "permanent" if error.permanent else "transient"
    code = f" [{error.code}]" if error.code else ""
    return f"{kind}{code}: {error.message}"


GATEWAYS: dict[str, type[BaseGateway]] = {}


def register(cls: type[BaseGateway]) -> type[BaseGateway]:
    GATEWAYS[cls.provider] = cls
    return cls


def dead_address_codes(channels: frozenset[str]) -> frozenset[str]:
    """Every provider's dead-address codes, of the providers that send on `channels`."""
    return frozenset().union(*(adapter.dead_address_codes for adapter in GATEWAYS.values()
                               if adapter.channels & channels))


def event_loop_new() -> asyncio.AbstractEventLoop:
    """The event loop an adapter holds for its batches: uvloop's, whose loop and sockets cost a
    sender about a tenth less CPU per request than asyncio's own (the HTTP adapters spend a
    good part of each message in the loop: one request, one answer)."""
    return uvloop.new_event_loop()


async def send_concurrently(batch: Sequence[OutboundMessage],
                            send_one: Callable[[OutboundMessage], Awaitable[SendResult | None]],
                            *, concurrency: int) -> list[SendResult]:
    """`send_one` over the batch with at most `concurrency` in flight; results in batch order.
    What HTTP providers answering one message per request share (FCM, Twilio, Viber, ...).

    `send_one` answers None for a message it did not attempt (the provider could not be
    reached before it): it gets no result, so the caller gives it back to the queue without
    spending one of its attempts."""
    results: list[SendResult | None] = [None] * len(batch)
    pending: Iterator[tuple[int, OutboundMessage]] = iter(enumerate(batch))

    async def worker() -> None:
        for index, outbound in pending:
            results[index] = await send_one(outbound)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(batch)))))
    return [result for result in results if result is not None]
