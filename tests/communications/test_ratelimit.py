"""The per-gateway token bucket, in Redis (the broker's, as `make test` configures it) and in
process (the embedded default): both obey the same contract."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from django.conf import settings as django_settings

from communications.ratelimit import (
    GatewayBucket,
    LocalBucket,
    gateway_bucket,
    ratelimit_redis,
)

KINDS = ["redis", "local"]
Bucket = GatewayBucket | LocalBucket


def _redis() -> redis.Redis:
    client = ratelimit_redis()
    if client is None:
        pytest.fail("these tests need the Redis broker: run them through `make test` "
                    "(CELERY_BROKER_URL=redis://...)")
    return client


@pytest.fixture(params=KINDS)
def kind(request) -> str:
    return request.param


@pytest.fixture
def key() -> Iterator[str]:
    key = f"test:ratelimit:{uuid.uuid4().hex}"
    yield key
    client = ratelimit_redis()
    if client is not None:
        client.delete(key)


@pytest.fixture
def make_bucket(kind: str, key: str) -> Callable[..., Bucket]:
    """A bucket of the parametrized kind at this test's own key; every call is another taker."""

    def make(**config: float) -> Bucket:
        if kind == "redis":
            return GatewayBucket(_redis(), key=key, **config)
        return LocalBucket(key=key, **config)

    return make


def _server_time(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1_000_000


def _take_until(bucket: Bucket, *, chunk: int, start_at: float, stop_at: float) -> int:
    # Both takers begin at the same moment, however long one took to start.
    time.sleep(max(0.0, start_at - time.monotonic()))
    granted = 0
    while (now := time.monotonic()) < stop_at:
        grant = bucket.take(chunk)
        granted += grant.granted
        time.sleep(min(grant.wait_s, max(0.0, stop_at - now)))
    return granted


def _taker_process(url: str, key: str, rate: float, burst: float, start_at: float,
                   stop_at: float, results: multiprocessing.Queue) -> None:
    # Its own connection, as a prefork worker child has.
    bucket = GatewayBucket(redis.Redis.from_url(url), key=key, rate=rate, burst=burst)
    results.put(_take_until(bucket, chunk=7, start_at=start_at, stop_at=stop_at))


def _two_takers(kind: str, key: str, *, rate: float, burst: float,
                seconds: float) -> tuple[list[int], float]:
    """Two takers competing for `seconds`: what each got, and the seconds that passed."""
    start_at = time.monotonic() + 0.3
    stop_at = start_at + seconds
    if kind == "redis":
        client = _redis()
        context = multiprocessing.get_context("fork")
        results = context.Queue()
        args = (django_settings.CELERY_BROKER_URL, key, rate, burst, start_at, stop_at, results)
        processes = [context.Process(target=_taker_process, args=args) for _ in range(2)]
        for process in processes:
            process.start()
        time.sleep(max(0.0, start_at - time.monotonic()))
        started = _server_time(client)
        granted = [results.get(timeout=seconds + 10) for _ in processes]
        for process in processes:
            process.join(timeout=10)
        return granted, _server_time(client) - started
    granted = []

    def taker() -> None:
        bucket = LocalBucket(key=key, rate=rate, burst=burst)
        granted.append(_take_until(bucket, chunk=7, start_at=start_at, stop_at=stop_at))

    threads = [threading.Thread(target=taker) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, start_at - time.monotonic()))
    started = time.monotonic()
    for thread in threads:
        thread.join(timeout=seconds + 10)
    return granted, time.monotonic() - started


RATE, BURST, SECONDS = 200.0, 20.0, 0.6


@pytest.fixture(scope="module", params=KINDS)
def two_takers_run(request) -> Iterator[tuple[list[int], float]]:
    """One run of two takers (processes on Redis, threads in process), shared by two tests."""
    key = f"test:ratelimit:{uuid.uuid4().hex}"
    yield _two_takers(request.param, key, rate=RATE, burst=BURST, seconds=SECONDS)
    client = ratelimit_redis()
    if client is not None:
        client.delete(key)


def test_two_concurrent_takers_never_get_more_than_rate_times_elapsed_plus_burst(
        two_takers_run):
    granted, elapsed = two_takers_run

    assert len(granted) == 2 and all(granted), f"both takers competed: {granted}"
    assert sum(granted) <= RATE * elapsed + BURST


def test_two_concurrent_takers_together_get_the_configured_rate(two_takers_run):
    granted, _ = two_takers_run

    # a full bucket, then the rate while they take: no token lost to the burst cap
    assert sum(granted) >= 0.9 * (BURST + RATE * SECONDS)


def test_take_grants_what_the_bucket_holds_and_says_how_long_the_rest_takes(make_bucket):
    bucket = make_bucket(rate=10.0, burst=5)

    grant = bucket.take(8)

    assert grant.granted == 5
    assert 0.29 <= grant.wait_s <= 0.3  # 3 more tokens at 10/s


def test_a_throttle_blocks_every_taker_until_retry_after(make_bucket):
    throttled_by, other_worker = make_bucket(rate=100.0), make_bucket(rate=100.0)

    # when
    started = time.monotonic()
    throttled_by.throttle(0.3)

    # then the other worker gets nothing and is told to wait out the block
    grant = other_worker.take(1)
    assert grant.granted == 0
    assert 0.29 <= grant.wait_s <= 0.35
    # and gets its token only once the block is over
    assert other_worker.acquire(1, deadline=started + 2) == 1
    assert time.monotonic() - started >= 0.3


def test_a_throttle_halves_the_rate_then_it_climbs_back_linearly_to_the_configured_rate(
        make_bucket):
    # the full rate is regained over 0.3 s, so from half in 0.15 s
    bucket = make_bucket(rate=100.0, recovery_s=0.3)

    # when
    before = time.monotonic()
    bucket.throttle(0.1)
    after = time.monotonic()

    # then the rate is halved while blocked
    assert bucket.status().rate == pytest.approx(50.0)
    # and climbs 1000/3 per second once the block is over
    time.sleep(0.17)
    earliest = time.monotonic() - after - 0.1
    rate = bucket.status().rate
    latest = time.monotonic() - before - 0.1
    assert 50 + 100 / 0.3 * earliest - 1e-6 <= rate <= min(100.0, 50 + 100 / 0.3 * latest) + 1e-6
    # up to the configured rate, and no further
    time.sleep(0.15)
    assert bucket.status().rate == 100.0


def test_throttles_reported_during_a_block_cut_the_rate_once(make_bucket):
    bucket = make_bucket(rate=100.0)

    for _ in range(5):  # the in-flight requests of one episode, all answered 429
        bucket.throttle(2.0)

    assert bucket.status().rate == pytest.approx(50.0)


def test_repeated_throttles_never_cut_the_rate_below_min_rate(make_bucket):
    bucket = make_bucket(rate=100.0, min_rate=20.0)

    for _ in range(6):
        bucket.throttle(0)  # each a separate episode: no block left in force

    assert bucket.status().rate == pytest.approx(20.0, rel=0.01)


def test_acquire_returns_what_it_got_by_the_deadline_without_sleeping_past_it(make_bucket):
    bucket = make_bucket(rate=10.0, burst=1)

    started = time.monotonic()
    granted = bucket.acquire(5, deadline=started + 0.25)

    assert 1 <= granted < 5
    assert time.monotonic() - started < 0.3


@pytest.mark.parametrize("config, field", [
    ({"rate": 0}, "rate"),
    ({"rate": -5.0}, "rate"),
    ({"rate": float("nan")}, "rate"),
    ({"rate": 10.0, "burst": 0.5}, "burst"),
    ({"rate": 10.0, "min_rate": 11.0}, "min_rate"),
    ({"rate": 10.0, "recovery_s": 0}, "recovery_s"),
])
def test_a_bad_configuration_is_refused_naming_the_setting(make_bucket, config, field):
    with pytest.raises(ValueError, match=rf"^{field} must be .*, got"):
        make_bucket(**config)


def test_a_take_of_no_tokens_is_refused(make_bucket):
    with pytest.raises(ValueError, match="n must be a whole number of tokens, at least 1"):
        make_bucket(rate=10.0).take(0)


def test_gateway_bucket_lives_in_the_brokers_redis():
    bucket = gateway_bucket(gateway_id=7, rate=30.0)

    assert isinstance(bucket, GatewayBucket)
    assert bucket.key == "engage:ratelimit:gateway:7"


def test_gateway_bucket_is_in_process_on_the_embedded_filesystem_broker(settings):
    settings.CELERY_BROKER_URL = "filesystem://"

    bucket = gateway_bucket(gateway_id=7, rate=30.0)

    assert ratelimit_redis() is None
    assert isinstance(bucket, LocalBucket)
