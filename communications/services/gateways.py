"""Operating a gateway: its health probe, a test message sent through it, and re-encrypting its
secrets under a new key."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from communications.gateways import (
    GATEWAYS,
    GatewayError,
    OutboundMessage,
    SendResult,
    gateway_for,
)
from communications.gateways.base import gateway_error_text
from communications.models import Gateway, Message, MessageStatusChange
from communications.ratelimit import gateway_bucket
from communications.secrets import secrets_rotate
from communications.services.dispatch import (
    MAX_ATTEMPTS,
    messages_record_results,
)
from communications.services.sending import (
    RATE_WAIT_S,
    gateway_config,
    gateway_rate,
    gateway_send,
)
from communications.services.statuses import StatusChange, changes_record
from communications.services.test_sends import _address_clean
from members.models import Suppression
from members.services.suppressions import SUPPRESSIBLE_CHANNELS

logger = logging.getLogger(__name__)

Status = Message.Status
HEALTH_DETAIL_MAX = Gateway._meta.get_field("last_health_detail").max_length
TEST_TEXT_MAX = 2000


def gateway_health_check(*, gateway: Gateway) -> Gateway:
    """Probe the provider with the gateway's settings (connect and log in, then let go) and
    record the outcome on the row: last_health_ok / _at / _detail. A probe never raises: a
    failure, even an unexpected one, is the gateway's health, for the marketer to read."""
    try:
        ok, detail = gateway_for(gateway_config(gateway=gateway)).health()
    except GatewayError as error:  # unreadable secrets; a sink while DEBUG is off
        ok, detail = False, gateway_error_text(error)
    except Exception as exc:  # noqa: BLE001  (an adapter bug is recorded, not lost in a log)
        logger.exception("gateway %s: health probe failed", gateway.pk)
        ok, detail = False, f"probe failed unexpectedly: {exc!r}"
    now = timezone.now()
    detail = detail[:HEALTH_DETAIL_MAX]
    Gateway.objects.filter(pk=gateway.pk).update(last_health_ok=ok, last_health_at=now,
                                                 last_health_detail=detail)
    gateway.last_health_ok, gateway.last_health_at, gateway.last_health_detail = ok, now, detail
    return gateway


@dataclass(frozen=True)
class GatewayTestResult:
    """A test message and the gateway's classified answer (None when it was sent)."""

    message: Message
    error: GatewayError | None

    @property
    def outcome(self) -> str:
        if self.error is None:
            return f"sent (provider id {self.message.provider_id or '—'})"
        if self.error.in_doubt:
            return "in doubt (the provider may have it): " + gateway_error_text(self.error)
        return gateway_error_text(self.error) + (
            f" (retry after {self.error.retry_after:g} s)" if self.error.retry_after else "")


def gateway_test_send(*, gateway: Gateway, address: str, text: str, subject: str = "",
                      by: AbstractBaseUser | None = None) -> GatewayTestResult:
    """Send one message through the gateway now, to a typed address, and return what the
    provider answered. It is a Message with `is_test` and no mailing or member, recorded
    before it goes out and never retried (the operator reads the answer and tries again).

    Raises ValidationError naming the field: `gateway` (inactive, or its provider cannot send
    its channel), `address` (not an address of the channel, or on the suppression list),
    `text` (empty or too long).
    """
    adapter = GATEWAYS.get(gateway.provider)
    if not gateway.is_active:
        raise ValidationError({"gateway": "this gateway is not active"})
    if adapter is None or gateway.channel not in adapter.channels:
        raise ValidationError({"gateway": f"the provider {gateway.provider!r} cannot send "
                                          f"{gateway.channel}"})
    text = text.strip()
    if not text:
        raise ValidationError({"text": "type the text to send"})
    if len(text) > TEST_TEXT_MAX:
        raise ValidationError({"text": f"at most {TEST_TEXT_MAX} characters"})
    try:
        address = _address_clean(channel=gateway.channel, raw=address.strip())
    except ValidationError as error:
        raise ValidationError({"address": error.messages}) from error
    if (gateway.channel in SUPPRESSIBLE_CHANNELS and Suppression.objects.filter(
            channel=gateway.channel, address=address).exists()):
        raise ValidationError({"address": f"{address} is on the {gateway.channel} suppression "
                                          "list (a bounce, complaint or opt-out)"})
    subject = subject.strip() or f"Test of gateway {gateway.name}"
    message = _test_message_create(gateway=gateway, address=address, subject=subject,
                                   text=text, by=by)
    result = _send_one(gateway=gateway, outbound=OutboundMessage(
        message_id=message.pk, address=address, subject=subject, body=text))
    messages_record_results(results=[result], attempts={message.pk: MAX_ATTEMPTS},
                            gateway_id=gateway.pk)
    message.refresh_from_db()
    return GatewayTestResult(message=message, error=result.error)


def gateway_secrets_rotate() -> int:
    """Re-encrypt every gateway's secrets with the first key of ENGAGE_SECRETS_KEY (after a new
    key was put in front); returns how many rows changed. Raises SecretsUnreadable, changing
    nothing, when a row was written with a key no longer listed."""
    with transaction.atomic():
        rows = list(Gateway.objects.select_for_update().exclude(secrets="")
                    .values_list("pk", "secrets"))
        rotated = [Gateway(pk=pk, secrets=secrets_rotate(token)) for pk, token in rows]
        Gateway.objects.bulk_update(rotated, ["secrets"], batch_size=500)
    return len(rotated)


def _test_message_create(*, gateway: Gateway, address: str, subject: str, text: str,
                         by: AbstractBaseUser | None) -> Message:
    now = timezone.now()
    who = by.get_username() if by is not None else "the system"
    with transaction.atomic():
        message = Message.objects.create(
            mailing=None, member=None, is_test=True, channel=gateway.channel, address=address,
            status=Status.SENDING, attempts=1, gateway=gateway,
            content={"subject": subject, "body": text}, created_at=now, claimed_at=now,
            updated_at=now)
        changes_record(changes=[StatusChange(message.pk, Status.SENDING, now, "test",
                                             f"gateway test send by {who}")],
                       source=MessageStatusChange.Source.OPERATOR, recorded_at=now)
    return message


def _send_one(*, gateway: Gateway, outbound: OutboundMessage) -> SendResult:
    """Within the gateway's rate limit, shared with every worker; a message the limit had no
    slot for in time fails, not queued."""
    rate = gateway_rate(gateway=gateway)
    bucket = gateway_bucket(gateway_id=gateway.pk, rate=rate) if rate is not None else None
    results = gateway_send(gateway=gateway, batch=[outbound], bucket=bucket,
                           deadline=time.monotonic() + RATE_WAIT_S)
    if results:
        return results[0]
    return SendResult(outbound.message_id, error=GatewayError(
        "not sent: the gateway's rate limit had no slot for it in time, or the provider "
        "asked to slow down; send the test again", code="not_sent", permanent=True))
