"""events_ingest: loyalty events accepted through the integration API, each written with its
outbox row (the event log is the outbox) in the request's transaction.

Served: `gunicorn config.wsgi` with `WORKERS` sync workers, production settings, on loopback
(bench/member_api.py's Gunicorn). Loaded: `GENERATORS` processes of this module's aiohttp
client (`python -m bench.events`), each keeping `CONCURRENCY // GENERATORS` batches of `BATCH`
events in flight (closed loop) for `DURATION_S`, with an API key holding events:write and an
Idempotency-Key per batch, as the loyalty engine sends them. Every event names a seeded member
by external id, so each batch also pays the member lookup.

The value is accepted events per second; the events counted in the database afterwards must
equal the accepted ones, or the run fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.options import Options
from bench.results import Measured, median_of

BATCH = 500
WORKERS = 3
GENERATORS = 1
CONCURRENCY = 6
DURATION_S = 10.0
MEMBERS_SAMPLE = 20_000
PATH = "/api/v1/integration/events/batch/"


def _batch(external_ids: list[str], start: int) -> dict[str, Any]:
    count = len(external_ids)
    return {"events": [
        {"type": "CART_ABANDONED", "member": external_ids[(start + n) % count],
         "payload": {"items": n % 7 + 1, "value": "19.90"}}
        for n in range(BATCH)]}


async def _load(args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp

    external_ids = json.loads(Path(args.members).read_text())
    accepted = 0
    latencies: list[float] = []
    errors: dict[str, int] = {}
    cursor = 0
    headers = {"Authorization": f"Api-Key {args.key}", "Content-Type": "application/json",
               "X-Forwarded-Proto": "https"}
    async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=60)) as session:
        started = time.perf_counter()
        deadline = started + args.duration

        async def client() -> None:
            nonlocal accepted, cursor
            while time.perf_counter() < deadline:
                body = json.dumps(_batch(external_ids, cursor))
                cursor += BATCH
                begun = time.perf_counter()
                try:
                    async with session.post(args.url + PATH, data=body, headers={
                            **headers, "Idempotency-Key": str(uuid.uuid4())}) as reply:
                        await reply.read()
                        status = reply.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    continue
                if status != 201:
                    errors[str(status)] = errors.get(str(status), 0) + 1
                    continue
                accepted += BATCH
                latencies.append((time.perf_counter() - begun) * 1000)

        await asyncio.gather(*(client() for _ in range(args.concurrency)))
        seconds = time.perf_counter() - started
    return {"accepted": accepted, "seconds": seconds, "latencies_ms": latencies,
            "errors": errors}


def _generators_run(*, url: str, key: str, external_ids: list[str], duration: float
                    ) -> dict[str, Any]:
    from bench.loadgen import summary
    from bench.workers import ROOT

    with tempfile.TemporaryDirectory(prefix="engage-events-") as folder:
        processes = []
        for n in range(GENERATORS):
            shard_path = Path(folder) / f"members-{n}.json"
            shard_path.write_text(json.dumps(external_ids[n::GENERATORS]))
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "bench.events", "--url", url, "--key", key,
                 "--members", str(shard_path), "--duration", str(duration),
                 "--concurrency", str(max(1, CONCURRENCY // GENERATORS)),
                 "--out", str(Path(folder) / f"out-{n}.json")], cwd=ROOT))
        for process in processes:
            if process.wait(timeout=duration + 120) != 0:
                raise RuntimeError("an events load generator failed")
        parts = [json.loads((Path(folder) / f"out-{n}.json").read_text())
                 for n in range(GENERATORS)]
    errors: dict[str, int] = {}
    for part in parts:
        for status, count in part["errors"].items():
            errors[status] = errors.get(status, 0) + count
    seconds = max(part["seconds"] for part in parts)
    accepted = sum(part["accepted"] for part in parts)
    return {"accepted": accepted, "events_per_s": accepted / seconds,
            "batch_latency": summary([v for part in parts for v in part["latencies_ms"]]),
            "errors": errors}


def events_ingest(options: Options) -> Measured:
    """Accepted events/s through POST /api/v1/integration/events/batch/."""
    from bench.member_api import Gunicorn
    from loyalty.integration.keys import api_key_create
    from loyalty.models import Event
    from members.models import Member

    external_ids = list(Member.objects.filter(status=Member.Status.ACTIVE).order_by("pk")
                        .values_list("external_id", flat=True)[:MEMBERS_SAMPLE])
    api_key, key = api_key_create(name="bench events_ingest", scopes=["events:write"], by=None)
    runs: list[dict[str, Any]] = []
    try:
        with Gunicorn(workers=WORKERS) as server:
            # Warm-up: every worker opens its database connection.
            _generators_run(url=server.url, key=key, external_ids=external_ids, duration=2)

            def measure() -> float:
                before = Event.objects.count()
                run = _generators_run(url=server.url, key=key, external_ids=external_ids,
                                      duration=DURATION_S)
                recorded = Event.objects.count() - before
                if run["errors"] or recorded != run["accepted"]:
                    raise RuntimeError(
                        f"errors {run['errors']}, {run['accepted']} events accepted but "
                        f"{recorded} recorded\n{server.log_tail()}")
                runs.append(run)
                return run["events_per_s"]

            value, per_run = median_of(options.runs, measure)
    finally:
        api_key.delete()
    return Measured(options.members, value, options.runs, {
        "what": f"events accepted per second, batches of {BATCH} posted to {PATH} with an "
                f"API key and an Idempotency-Key each, {CONCURRENCY} batches in flight "
                f"(closed loop) for {DURATION_S:g} s, members by external id out of "
                f"{len(external_ids)}; gunicorn x{WORKERS} sync workers, DEBUG off, "
                f"{GENERATORS} aiohttp generator on the same 2 cores",
        "per_run": per_run,
        "batch_latency_last_run": runs[-1]["batch_latency"],
    })


def main() -> None:
    parser = argparse.ArgumentParser(description="events_ingest load generator")
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--members", required=True, help="JSON file of member external ids")
    parser.add_argument("--duration", type=float, default=DURATION_S)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    Path(args.out).write_text(json.dumps(asyncio.run(_load(args))))


if __name__ == "__main__":
    main()
