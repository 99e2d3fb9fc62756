"""Sending one batch through one gateway: the adapter built from the gateway row (its secrets
decrypted), paced by the gateway's shared rate limit, and counted by its circuit breaker;
while the circuit is open the batch goes to the gateway's backup."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Protocol

import redis
from django.conf import settings

from communications.circuits import circuit_open_seconds, circuit_record
from communications.gateways import (
    BaseGateway,
    GatewayConfig,
    GatewayError,
    OutboundMessage,
    SendResult,
    gateway_for,
    rate_per_second_error,
)
from communications.models import Gateway
from communications.ratelimit import GatewayBucket, LocalBucket
from communications.secrets import SecretsUnreadable
from members.models import Channel

logger = logging.getLogger(__name__)

# A rate-limited batch claims no more than its gateway's rate grants in this many seconds, and
# waits no longer for its tokens: what the bucket has not granted by then (other workers took
# the rate) goes back to the queue, no attempt counted, for the next batch.
RATE_WAIT_S = 10.0
Bucket = GatewayBucket | LocalBucket


class Handover(Protocol):
    """A caller that follows its batch out chunk by chunk (the mailing dispatch): it fences
    each chunk just before the provider sees it and records each chunk's results as they come,
    so a worker killed mid-batch leaves only the chunk in flight in doubt."""

    def handing(self, chunk: Sequence[OutboundMessage]) -> Sequence[OutboundMessage]:
        """Just before `chunk` goes to the provider: those of it still this batch's to send."""

    def answered(self, results: Sequence[SendResult]) -> None:
        """Results as they come: a chunk's, or every message's when the connection failed."""


def gateway_in_service(*, gateway: Gateway) -> Gateway | None:
    """The gateway a batch goes through: `gateway`, or while its circuit is open its backup
    (active, of the same channel, its own circuit closed); None when neither can take it.
    One step only: a backup's backup is not followed."""
    if not circuit_open_seconds(gateway_id=gateway.pk):
        return gateway
    backup = gateway.backup
    if (backup is not None and backup.is_active and backup.channel == gateway.channel
            and not circuit_open_seconds(gateway_id=backup.pk)):
        return backup
    return None


def circuit_count(*, gateway: Gateway, results: Sequence[SendResult]) -> None:
    """A batch the provider answered (a message sent, or refused for good) closes the count;
    one where every message failed transiently or in doubt counts against the gateway. A
    throttle reply is the provider answering, not failing."""
    if not results:
        return
    if any(r.error is not None and r.error.retry_after for r in results):
        return
    answered = any(r.error is None or (r.error.permanent and not r.error.in_doubt)
                   for r in results)
    circuit_record(gateway_id=gateway.pk, failed=not answered)


def gateway_rate(*, gateway: Gateway) -> float | None:
    """The gateway's `rate_per_second`, or None without one (or with an unusable one on a row
    saved around the validation: logged and not applied)."""
    rate = gateway.settings.get("rate_per_second") if isinstance(gateway.settings, dict) else None
    if rate is None:
        return None
    problem = rate_per_second_error(rate)
    if problem:
        logger.warning("gateway %s: rate_per_second=%r ignored, it %s", gateway.pk, rate, problem)
        return None
    return float(rate)


def gateway_config(*, gateway: Gateway) -> GatewayConfig:
    """What the adapter gets from the row: its plain and decrypted secret settings together.

    Raises GatewayError (transient: the operator can put the key back) when the secrets were
    encrypted with a key ENGAGE_SECRETS_KEY no longer holds.
    """
    try:
        adapter_settings = gateway.adapter_settings()
    except SecretsUnreadable as exc:
        raise GatewayError(str(exc), code="secrets_unreadable", permanent=False) from exc
    return GatewayConfig(
        gateway_id=gateway.pk, channel=gateway.channel, provider=gateway.provider,
        settings=adapter_settings,
        sender=gateway.sender or (settings.ENGAGE_DEFAULT_FROM_EMAIL
                                  if gateway.channel == Channel.EMAIL else ""),
        price_per_message=gateway.price_per_message,
    )


def gateway_send(*, gateway: Gateway, batch: Sequence[OutboundMessage],
                 bucket: Bucket | None = None, deadline: float | None = None,
                 handover: Handover | None = None) -> list[SendResult]:
    """Send a batch through one gateway row: open, send, close; a failed open fails them all.

    Without a `bucket`, every message gets a result. With one (the gateway's rate limit), the
    batch goes out in chunks of the bucket's burst, each once its tokens are granted, until
    `deadline` (a `time.monotonic()` value); a throttle reply (a transient error with
    `retry_after`) slows the bucket for every worker. A throttle, a connection lost mid-send
    or the deadline ends the batch early: messages not handed to the provider get no result,
    and the caller gives them back to the queue.

    With a `handover`, an unpaced batch goes out in chunks of ENGAGE_HANDOVER_CHUNK too, each
    fenced and answered through it (a lost connection ends that batch early as well).
    """
    if not batch:
        return []
    try:
        adapter = gateway_for(gateway_config(gateway=gateway))
        adapter.open()
    except GatewayError as error:
        # Nothing went out: every message of the batch shares the connection failure.
        failed = [SendResult(m.message_id, error=error) for m in batch]
        if handover is not None:
            handover.answered(failed)
        return failed
    try:
        if bucket is None and handover is None:
            return adapter.send(batch)
        if bucket is None:
            return _send_chunked(adapter=adapter, batch=batch, handover=handover)
        return _send_paced(adapter=adapter, batch=batch, bucket=bucket,
                           deadline=(deadline if deadline is not None
                                     else time.monotonic() + RATE_WAIT_S),
                           handover=handover)
    finally:
        adapter.close()


def _chunk_send(*, adapter: BaseGateway, chunk: Sequence[OutboundMessage],
                handover: Handover | None) -> tuple[list[SendResult], bool]:
    """Send one chunk: its results, and whether the batch must end here. It ends when the
    adapter answered fewer than it was handed (it stopped: those never left, and the caller
    gives them back to the queue) or lost the connection: after that it could only report the
    rest falsely "in doubt", each spending an attempt."""
    if handover is not None:
        chunk = handover.handing(chunk)
        if not chunk:
            return [], False
    answered = adapter.send(chunk)
    if handover is not None:
        handover.answered(answered)
    stopped = len(answered) < len(chunk) or any(
        r.error is not None and r.error.in_doubt for r in answered)
    return answered, stopped


def _send_chunked(*, adapter: BaseGateway, batch: Sequence[OutboundMessage],
                  handover: Handover) -> list[SendResult]:
    step = max(1, settings.ENGAGE_HANDOVER_CHUNK)
    results: list[SendResult] = []
    for start in range(0, len(batch), step):
        answered, stopped = _chunk_send(adapter=adapter, chunk=batch[start:start + step],
                                        handover=handover)
        results += answered
        if stopped:
            break
    return results


def _send_paced(*, adapter: BaseGateway, batch: Sequence[OutboundMessage], bucket: Bucket,
                deadline: float, handover: Handover | None = None) -> list[SendResult]:
    # Chunks of the burst: a provider counting per second sees the rate, not the batch at once;
    # with a handover no bigger than its chunks either.
    step = max(1, int(bucket.config.burst))
    if handover is not None:
        step = min(step, max(1, settings.ENGAGE_HANDOVER_CHUNK))
    results: list[SendResult] = []
    for start in range(0, len(batch), step):
        chunk = batch[start:start + step]
        granted = _tokens_acquire(bucket=bucket, n=len(chunk), deadline=deadline)
        if granted:
            answered, stopped = _chunk_send(adapter=adapter, chunk=chunk[:granted],
                                            handover=handover)
            results += answered
            hold = max((r.error.retry_after for r in answered
                        if r.error is not None and not r.error.permanent
                        and r.error.retry_after is not None), default=None)
            if hold is not None:
                _bucket_throttle(bucket=bucket, retry_after_s=hold)
            # After a throttle the rest waits for the bucket, in a later batch.
            if hold is not None or stopped:
                break
        if granted < len(chunk):
            break
    return results


def _tokens_acquire(*, bucket: Bucket, n: int, deadline: float) -> int:
    try:
        return bucket.acquire(n, deadline=deadline)
    except redis.RedisError as exc:
        # Without the shared bucket the rate cannot be kept: send nothing rather than too much.
        logger.warning("rate limit %s unavailable, batch given back: %s", bucket.key, exc)
        return 0


def _bucket_throttle(*, bucket: Bucket, retry_after_s: float) -> None:
    try:
        bucket.throttle(retry_after_s)
    except redis.RedisError as exc:
        logger.warning("rate limit %s not throttled: %s", bucket.key, exc)
