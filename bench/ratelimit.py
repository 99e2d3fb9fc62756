"""rate_limit_error: how closely two worker processes sharing a gateway's bucket keep its rate.

Each rate gets its own bucket in the bench Redis and two forked processes that do what a batch
task does before sending: `acquire` a chunk (a twentieth of a second's worth), record when it
completed, repeat. The rates run side by side, as gateways do in production. After a warm-up that
drains the full bucket they start with, the fleet's rate over the window is the tokens of every
completed chunk after the first one, divided by the time from the first completion to the last:
counting completions between fixed clock ticks instead would be off by a whole token at 1/s
(1.7% of a minute) depending on where the ticks fall.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any

import redis
from django.conf import settings

from bench.options import Options
from bench.results import Measured, median_of
from communications.ratelimit import REDIS_KEY_PREFIX, GatewayBucket, ratelimit_redis

RATES = (1.0, 30.0, 1000.0)
WINDOW_S = 60.0
WARMUP_S = 2.0
WORKERS = 2
CHUNKS_PER_S = 20
WHAT = ("{workers} forked processes per gateway acquiring chunks of 1/{chunks}s of the rate from "
        "one Redis token bucket (default burst), rates {rates}/s side by side; rate measured "
        "over {window:g} s after a {warmup:g} s warm-up; value: worst |error| in % of the "
        "configured rate")


def _rate_name(rate: float) -> str:
    return f"{rate:g}/s"


def _chunk(rate: float) -> int:
    return max(1, round(rate / CHUNKS_PER_S))


def _worker(url: str, key: str, rate: float, stop_at: float,
            results: multiprocessing.Queue) -> None:
    # Its own connection, as every prefork child of a Celery worker has.
    bucket = GatewayBucket(redis.Redis.from_url(url), key=key, rate=rate)
    chunk = _chunk(rate)
    completed: list[float] = []
    while bucket.acquire(chunk, deadline=stop_at) == chunk:
        completed.append(time.monotonic())
    results.put((key, completed))


def _measured_rate(completed: list[float], *, chunk: int, since: float) -> float:
    times = sorted(t for t in completed if t >= since)
    if len(times) < 2 or times[-1] <= times[0]:
        raise RuntimeError(f"only {len(times)} chunks completed in the window")
    return chunk * (len(times) - 1) / (times[-1] - times[0])


def _run_once(client: redis.Redis, *, window_s: float) -> dict[str, float]:
    """Every rate for one window; the signed error in % per rate."""
    keys = {rate: f"{REDIS_KEY_PREFIX}bench:{os.getpid()}:{_rate_name(rate)}" for rate in RATES}
    client.delete(*keys.values())
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    started = time.monotonic()
    stop_at = started + WARMUP_S + window_s
    processes = [
        context.Process(target=_worker, args=(settings.CELERY_BROKER_URL, key, rate, stop_at,
                                              results))
        for rate, key in keys.items() for _ in range(WORKERS)
    ]
    for process in processes:
        process.start()
    try:
        completed: dict[str, list[float]] = {key: [] for key in keys.values()}
        for _ in processes:
            key, times = results.get(timeout=WARMUP_S + window_s + 60)
            completed[key].extend(times)
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
        client.delete(*keys.values())
    errors = {}
    for rate, key in keys.items():
        measured = _measured_rate(completed[key], chunk=_chunk(rate), since=started + WARMUP_S)
        errors[_rate_name(rate)] = round((measured / rate - 1) * 100, 3)
    return errors


def rate_limit_error(options: Options, *, window_s: float = WINDOW_S) -> Measured:
    """Worst deviation, in %, of a shared bucket's delivered rate from its configured rate.

    `window_s` is a minute at full size; the smoke test passes a shorter one.
    """
    client = ratelimit_redis()
    if client is None:
        raise RuntimeError("rate_limit_error needs a Redis broker: set CELERY_BROKER_URL=redis://")
    errors_per_run: list[dict[str, float]] = []

    def measure() -> float:
        errors = _run_once(client, window_s=window_s)
        errors_per_run.append(errors)
        return max(abs(error) for error in errors.values())

    value, per_run = median_of(options.runs, measure)
    extra: dict[str, Any] = {
        "what": WHAT.format(workers=WORKERS, chunks=CHUNKS_PER_S,
                            rates=", ".join(f"{r:g}" for r in RATES), window=window_s,
                            warmup=WARMUP_S),
        "window_s": window_s,
        "per_run": per_run,
        "errors": {name: [run[name] for run in errors_per_run] for name in errors_per_run[0]},
    }
    return Measured(round(window_s), value, options.runs, extra)
