"""A load generator for the member API: `python -m bench.loadgen --url U --members F ...`.

Each request is one member's call with that member's app token, alternating the home call and
the first inbox page. `--rate R` starts R requests a second on schedule (open loop: a slow
answer does not slow the schedule, it shows as latency); `--concurrency C` keeps C requests in
flight instead (closed loop: the most the server serves). Writes the latencies (ms) of every
call, per call (failed ones included, with the time they took), and the errors by status or
exception to `--out`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import time
from pathlib import Path
from typing import Any

CALLS = {"home": "/api/v1/me/home/", "inbox": "/api/v1/me/messages/"}


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"requests": 0}
    ordered = sorted(values)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2)

    return {"requests": len(ordered), "p50_ms": pct(0.50), "p95_ms": pct(0.95),
            "p99_ms": pct(0.99), "mean_ms": round(statistics.fmean(ordered), 2)}


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp

    index, shards = (int(part) for part in args.shard.split("/"))
    members = json.loads(Path(args.members).read_text())[index::shards]
    plan = itertools.cycle([(member, name) for member in members for name in CALLS])
    latencies: dict[str, list[float]] = {name: [] for name in CALLS}
    errors: dict[str, int] = {}

    async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def call(member: int, name: str) -> None:
            headers = {"Authorization": f"Bearer mt_{args.token_secret}-{member}",
                       "X-Forwarded-Proto": "https"}
            start = time.perf_counter()
            try:
                async with session.get(args.url + CALLS[name], headers=headers) as reply:
                    await reply.read()
                    status = reply.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = type(exc).__name__
            # A failed call counts with the time it took (a timeout as 30 s): an overloaded
            # server shows in the percentiles, not as a shorter list of fast answers.
            latencies[name].append((time.perf_counter() - start) * 1000)
            if status != 200:
                errors[str(status)] = errors.get(str(status), 0) + 1

        started = time.perf_counter()
        deadline = started + args.duration
        if args.rate:
            interval = 1 / args.rate
            pending: set[asyncio.Task[None]] = set()
            n = 0
            while True:
                due = started + n * interval
                if due >= deadline:
                    break
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                member, name = next(plan)
                task = asyncio.create_task(call(member, name))
                pending.add(task)
                task.add_done_callback(pending.discard)
                n += 1
            await asyncio.gather(*pending)
        else:
            async def client() -> None:
                while time.perf_counter() < deadline:
                    member, name = next(plan)
                    await call(member, name)

            await asyncio.gather(*(client() for _ in range(args.concurrency)))
        seconds = time.perf_counter() - started
    return {"latencies_ms": latencies, "errors": errors, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--members", required=True, help="JSON file of member ids")
    parser.add_argument("--token-secret", required=True)
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--rate", type=float, default=0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--shard", default="0/1")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    result = asyncio.run(_run(args))
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
