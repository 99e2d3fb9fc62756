"""A circuit breaker per gateway, shared by every worker through the broker's Redis.

A batch that reached the provider with nothing (every message a transient error: refused
connections, timeouts, 5xx) counts as a failure of the gateway; any message sent closes the
count again. After `ENGAGE_CIRCUIT_FAILURES` failing batches in a row the circuit opens for
`ENGAGE_CIRCUIT_OPEN_SECONDS`: batches go to the gateway's backup, or wait, instead of
spending every message's attempts on a dead provider. When it closes, the next batch is the
trial: one more failure opens it again at once.

Without Redis (the embedded default) each process keeps its own circuits. A Redis that does
not answer leaves every circuit closed: the breaker only saves attempts, it never stops mail.
"""
from __future__ import annotations

import logging
import threading
import time

import redis
from django.conf import settings

from communications.ratelimit import REDIS_KEY_PREFIX, ratelimit_redis

logger = logging.getLogger(__name__)

# Failures further apart than this do not add up.
FAILURE_WINDOW_S = 600

_local_lock = threading.Lock()
_local_failures: dict[int, int] = {}
_local_open_until: dict[int, float] = {}


def _keys(gateway_id: int) -> tuple[str, str]:
    base = f"{REDIS_KEY_PREFIX}circuit:{gateway_id}"
    return f"{base}:failures", f"{base}:open"


def circuit_open_seconds(*, gateway_id: int) -> float:
    """How long the gateway's circuit stays open; 0 when it is closed."""
    client = ratelimit_redis()
    if client is None:
        with _local_lock:
            return max(0.0, _local_open_until.get(gateway_id, 0.0) - time.monotonic())
    try:
        remaining_ms = client.pttl(_keys(gateway_id)[1])
    except redis.RedisError as error:
        logger.warning("circuit of gateway %s unreadable, taken as closed: %s", gateway_id, error)
        return 0.0
    return remaining_ms / 1000 if remaining_ms > 0 else 0.0


def circuit_record(*, gateway_id: int, failed: bool) -> bool:
    """Count a batch's outcome; True when this failure opened the circuit."""
    threshold = settings.ENGAGE_CIRCUIT_FAILURES
    open_s = settings.ENGAGE_CIRCUIT_OPEN_SECONDS
    client = ratelimit_redis()
    if client is None:
        return _local_record(gateway_id=gateway_id, failed=failed, threshold=threshold,
                             open_s=open_s)
    failures_key, open_key = _keys(gateway_id)
    try:
        if not failed:
            client.delete(failures_key)
            return False
        with client.pipeline() as pipe:
            pipe.incr(failures_key)
            pipe.expire(failures_key, FAILURE_WINDOW_S)
            count, _ = pipe.execute()
        if count < threshold:
            return False
        # The count starts again, so the trial batch after the circuit closes reopens it alone.
        with client.pipeline() as pipe:
            pipe.set(open_key, "1", px=int(open_s * 1000))
            pipe.set(failures_key, threshold - 1, ex=FAILURE_WINDOW_S)
            pipe.execute()
    except redis.RedisError as error:
        logger.warning("circuit of gateway %s not recorded: %s", gateway_id, error)
        return False
    logger.warning("gateway %s: %s failing batches in a row, circuit open for %s s",
                   gateway_id, threshold, open_s)
    return True


def _local_record(*, gateway_id: int, failed: bool, threshold: int, open_s: float) -> bool:
    with _local_lock:
        if not failed:
            _local_failures.pop(gateway_id, None)
            return False
        count = _local_failures.get(gateway_id, 0) + 1
        if count < threshold:
            _local_failures[gateway_id] = count
            return False
        _local_failures[gateway_id] = threshold - 1
        _local_open_until[gateway_id] = time.monotonic() + open_s
    return True


def circuit_close(*, gateway_id: int) -> None:
    """Close the circuit by hand (the provider is known to be back)."""
    client = ratelimit_redis()
    if client is None:
        with _local_lock:
            _local_failures.pop(gateway_id, None)
            _local_open_until.pop(gateway_id, None)
        return
    client.delete(*_keys(gateway_id))
