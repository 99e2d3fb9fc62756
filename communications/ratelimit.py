"""Per-gateway rate limits: one token bucket per gateway, shared by every worker process.

A provider's throughput limit belongs to the account, not to a worker: ten prefork children each
holding "30/s" would send 300/s and be throttled or banned. So the bucket lives in Redis (the
broker we already run) and one Lua script refills it and takes from it atomically; two workers
can never both spend the same token. The script reads Redis's own clock (`TIME`), because workers
on different hosts disagree about the time and a bucket refilled by client clocks would drift
by their skew.

The bucket refills continuously (`rate` tokens/s) up to `burst`. A take grants what is there, up
to what was asked, and says how long to wait for the rest, so a batch task sleeps exactly as long
as the fleet's share of the rate requires instead of polling Redis. The default burst is a tenth
of a second's worth (at least one token): small enough that a full bucket adds little to a
minute's count, large enough that a worker waking a millisecond late does not lose tokens to the
cap.

Providers also push back (HTTP 429 with Retry-After, SMTP 454, SMPP ESME_RTHROTTLED). Their limit
is the truth and ours only a guess, so a throttle reply does two things for every worker at once:
it blocks the bucket until the provider's Retry-After (a `blocked_until` in the same hash, which
the script honours, and the bucket is emptied so nobody bursts the moment it ends), and it halves
the effective rate, never below `min_rate`. The rate then climbs back linearly, regaining the
configured rate over `recovery_s` (additive increase, multiplicative decrease: the rule TCP uses
to find a link's capacity without oscillating). Every in-flight request of a throttled fleet tends
to come back throttled at once; a throttle reported while a block is in force only extends the
block, so one episode halves the rate once instead of collapsing it to the floor.

The cut is stored as a share of the configured rate, so a gateway whose configured rate changes
obeys the new rate at the next take. A bucket left alone expires from Redis only when it would
have been full and recovered anyway, so expiry never changes what a worker gets.

The embedded default (`make run`: kombu's filesystem broker, one worker) has no Redis; there the
same bucket lives in the process (`LocalBucket`), which is exact because that worker is alone.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from dataclasses import dataclass

import redis
from django.conf import settings

# A throttle reply without Retry-After still blocks briefly, so the echoes of one episode from
# other in-flight requests count as one signal.
DEFAULT_HOLD_S = 1.0
DEFAULT_RECOVERY_S = 60.0
REDIS_KEY_PREFIX = "engage:ratelimit:"


@dataclass(frozen=True)
class Grant:
    """What one take got: `granted` tokens (0..n), and `wait_s` before the rest could be had.

    `wait_s` is 0 when everything asked for was granted; otherwise it covers a throttle block in
    force plus the time for the missing tokens (at most a full burst) to accrue at today's rate.
    """

    granted: int
    wait_s: float


@dataclass(frozen=True)
class BucketStatus:
    """A bucket as every worker sees it now: tokens in it, the effective rate, the block left."""

    tokens: float
    rate: float
    blocked_s: float


@dataclass(frozen=True)
class BucketConfig:
    rate: float
    burst: float
    min_rate: float
    recovery_s: float

    @classmethod
    def checked(cls, *, rate: float, burst: float | None, min_rate: float | None,
                recovery_s: float) -> BucketConfig:
        if not _positive(rate):
            raise ValueError(f"rate must be a positive number of tokens per second, got {rate!r}")
        burst = max(1.0, rate / 10) if burst is None else burst
        if not (_positive(burst) and burst >= 1):
            raise ValueError(f"burst must be at least 1 token (a smaller bucket could never "
                             f"grant a whole one), got {burst!r}")
        min_rate = rate / 10 if min_rate is None else min_rate
        if not (_positive(min_rate) and min_rate <= rate):
            raise ValueError(f"min_rate must be positive and at most rate ({rate!r}), "
                             f"got {min_rate!r}")
        if not _positive(recovery_s):
            raise ValueError(f"recovery_s must be a positive number of seconds, "
                             f"got {recovery_s!r}")
        return cls(rate=float(rate), burst=float(burst), min_rate=float(min_rate),
                   recovery_s=float(recovery_s))


def _positive(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def _count_checked(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a whole number of tokens, at least 1, got {n!r}")
    return n


def _hold_checked(retry_after_s: float | None) -> float:
    if retry_after_s is None:
        return DEFAULT_HOLD_S
    if not (isinstance(retry_after_s, int | float) and math.isfinite(retry_after_s)
            and retry_after_s >= 0):
        raise ValueError(f"retry_after_s must be a number of seconds >= 0, got {retry_after_s!r}")
    return float(retry_after_s)


class _Bucket:
    """What both buckets share: the blocking `acquire` built on `take`."""

    def take(self, n: int = 1) -> Grant:
        raise NotImplementedError

    def acquire(self, n: int, *, deadline: float) -> int:
        """Take `n` tokens, sleeping as told between takes, until `deadline` (a monotonic time).

        Returns how many were granted, `n` unless the deadline came first; never sleeps past
        the deadline. Granted tokens are spent whether or not the caller uses them, so a batch
        that got fewer than it asked for sends that many and leaves the rest queued.
        """
        n = _count_checked(n)
        granted = 0
        while True:
            grant = self.take(n - granted)
            granted += grant.granted
            now = time.monotonic()
            if granted >= n or now >= deadline:
                return granted
            time.sleep(min(grant.wait_s, deadline - now))


# KEYS[1]: the bucket's hash. ARGV: op ('take' | 'throttle' | 'status'), rate, burst, min_rate,
# recovery_s, then n (take) or the hold in seconds (throttle).
# Numbers go back to Redis and Python as %.17g strings: Lua's own number-to-string keeps 14
# digits, which would round a Unix time to 10 ms, and Redis truncates returned numbers to ints.
_SCRIPT = """
local key = KEYS[1]
local op = ARGV[1]
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local min_share = tonumber(ARGV[4]) / rate
local recovery_s = tonumber(ARGV[5])
local arg = tonumber(ARGV[6])

local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000

local saved = redis.call('HMGET', key, 'tokens', 'ts', 'share', 'blocked_until')
local tokens = math.min(tonumber(saved[1]) or burst, burst)
local ts = tonumber(saved[2]) or now
local share = math.max(math.min(tonumber(saved[3]) or 1, 1), min_share)
local blocked_until = tonumber(saved[4]) or 0

-- Refill from the last settlement (or the end of a block) to now, while the share of the
-- configured rate climbs by 1/recovery_s per second back to 1.
local from = math.max(ts, blocked_until)
if now > from then
  local dt = now - from
  local ramp = (1 - share) * recovery_s
  if dt < ramp then
    tokens = tokens + rate * dt * (share + dt / (2 * recovery_s))
    share = share + dt / recovery_s
  else
    tokens = tokens + rate * (ramp * (share + 1) / 2 + (dt - ramp))
    share = 1
  end
  tokens = math.min(tokens, burst)
  ts = now
end

local granted = 0
local wait = 0
if op == 'take' then
  if now >= blocked_until then
    granted = math.min(arg, math.floor(tokens))
    tokens = tokens - granted
  end
  if granted < arg then
    local want = math.min(arg - granted, burst)
    wait = math.max(0, blocked_until - now) + math.max(0, want - tokens) / (rate * share)
  end
elseif op == 'throttle' then
  if now >= blocked_until then
    share = math.max(min_share, share / 2)
  end
  blocked_until = math.max(blocked_until, now + arg)
  tokens = 0
end

local function num(x) return string.format('%.17g', x) end
redis.call('HSET', key, 'tokens', num(tokens), 'ts', num(ts), 'share', num(share),
           'blocked_until', num(blocked_until))
-- Untouched this long, the bucket would be full and recovered: expiry changes nothing.
local idle = math.max(0, blocked_until - now) + recovery_s + burst / (rate * min_share) + 1
redis.call('PEXPIRE', key, math.ceil(idle * 1000))
return {granted, num(wait), num(tokens), num(rate * share), num(math.max(0, blocked_until - now))}
"""


class GatewayBucket(_Bucket):
    """A token bucket in a Redis hash at `key`, shared by every process that names the key.

    Each instance carries the configuration (rate, burst, min_rate, recovery_s); the hash holds
    only the state, so whoever takes with a new configuration applies it at once.
    """

    def __init__(self, client: redis.Redis, *, key: str, rate: float, burst: float | None = None,
                 min_rate: float | None = None,
                 recovery_s: float = DEFAULT_RECOVERY_S) -> None:
        self.key = key
        self.config = BucketConfig.checked(rate=rate, burst=burst, min_rate=min_rate,
                                           recovery_s=recovery_s)
        # redis-py runs it by EVALSHA and reloads it when Redis lost its script cache.
        self._script = client.register_script(_SCRIPT)

    def _run(self, op: str, arg: float) -> list[bytes | int]:
        c = self.config
        return self._script(keys=[self.key], args=[
            op, repr(c.rate), repr(c.burst), repr(c.min_rate), repr(c.recovery_s), repr(arg)])

    def take(self, n: int = 1) -> Grant:
        """Take up to `n` tokens now; never blocks."""
        granted, wait, *_ = self._run("take", _count_checked(n))
        return Grant(int(granted), float(wait))

    def throttle(self, retry_after_s: float | None = None) -> BucketStatus:
        """The provider said "too fast": block every taker for `retry_after_s` and slow down."""
        return self._status(self._run("throttle", _hold_checked(retry_after_s)))

    def status(self) -> BucketStatus:
        return self._status(self._run("status", 0))

    @staticmethod
    def _status(reply: list[bytes | int]) -> BucketStatus:
        _, _, tokens, rate, blocked_s = reply
        return BucketStatus(float(tokens), float(rate), float(blocked_s))


@dataclass
class _LocalState:
    tokens: float
    ts: float
    share: float = 1.0
    blocked_until: float = 0.0


_local_states: dict[str, _LocalState] = {}
_local_lock = threading.Lock()


class LocalBucket(_Bucket):
    """The same bucket, contract and arithmetic as `GatewayBucket`, kept in this process.

    For the embedded default's single worker: instances naming the same `key` share one state,
    guarded by a lock, timed by `time.monotonic`.
    """

    def __init__(self, *, key: str, rate: float, burst: float | None = None,
                 min_rate: float | None = None, recovery_s: float = DEFAULT_RECOVERY_S) -> None:
        self.key = key
        self.config = BucketConfig.checked(rate=rate, burst=burst, min_rate=min_rate,
                                           recovery_s=recovery_s)

    def _settled(self, now: float) -> _LocalState:
        c = self.config
        state = _local_states.setdefault(self.key, _LocalState(tokens=c.burst, ts=now))
        min_share = c.min_rate / c.rate
        state.tokens = min(state.tokens, c.burst)
        state.share = max(min(state.share, 1.0), min_share)
        start = max(state.ts, state.blocked_until)
        if now > start:
            dt = now - start
            ramp = (1 - state.share) * c.recovery_s
            if dt < ramp:
                state.tokens += c.rate * dt * (state.share + dt / (2 * c.recovery_s))
                state.share += dt / c.recovery_s
            else:
                state.tokens += c.rate * (ramp * (state.share + 1) / 2 + (dt - ramp))
                state.share = 1.0
            state.tokens = min(state.tokens, c.burst)
            state.ts = now
        return state

    def take(self, n: int = 1) -> Grant:
        """Take up to `n` tokens now; never blocks."""
        n = _count_checked(n)
        with _local_lock:
            now = time.monotonic()
            state = self._settled(now)
            granted = 0
            if now >= state.blocked_until:
                granted = min(n, math.floor(state.tokens))
                state.tokens -= granted
            if granted == n:
                return Grant(granted, 0.0)
            want = min(n - granted, self.config.burst)
            wait = (max(0.0, state.blocked_until - now)
                    + max(0.0, want - state.tokens) / (self.config.rate * state.share))
            return Grant(granted, wait)

    def throttle(self, retry_after_s: float | None = None) -> BucketStatus:
        """The provider said "too fast": block every taker for `retry_after_s` and slow down."""
        hold = _hold_checked(retry_after_s)
        with _local_lock:
            now = time.monotonic()
            state = self._settled(now)
            if now >= state.blocked_until:
                state.share = max(self.config.min_rate / self.config.rate, state.share / 2)
            state.blocked_until = max(state.blocked_until, now + hold)
            state.tokens = 0.0
            return self._status(state, now)

    def status(self) -> BucketStatus:
        with _local_lock:
            now = time.monotonic()
            return self._status(self._settled(now), now)

    def _status(self, state: _LocalState, now: float) -> BucketStatus:
        return BucketStatus(state.tokens, self.config.rate * state.share,
                            max(0.0, state.blocked_until - now))


def ratelimit_redis() -> redis.Redis | None:
    """The Redis holding the buckets: the Celery broker's, or None when the broker is not Redis."""
    return _redis_for(settings.CELERY_BROKER_URL)


@functools.cache
def _redis_for(url: str) -> redis.Redis | None:
    if not url.startswith(("redis://", "rediss://")):
        return None
    # A take is one round trip; a Redis that stops answering must fail the batch, not hang it.
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5,
                                health_check_interval=30)


def gateway_bucket(*, gateway_id: int, rate: float,
                   burst: float | None = None) -> GatewayBucket | LocalBucket:
    """The bucket of one gateway: in the broker's Redis, or in this process without one."""
    key = f"{REDIS_KEY_PREFIX}gateway:{gateway_id}"
    client = ratelimit_redis()
    if client is None:
        return LocalBucket(key=key, rate=rate, burst=burst)
    return GatewayBucket(client, key=key, rate=rate, burst=burst)
