"""dispatch_apns: real workers sending a push mailing to Apple devices through the APNs adapter
(HTTP/2 over TLS, one connection per batch, its default 64 streams in flight) to the loopback
APNs peer (tests/peers/apns.py) in a process of its own; beside it, what the peer takes from a
bare HTTP/2 client and what the adapter sends alone (no workers, no database), one stream at a
time and with its concurrency.

The audience is bench/push.py's (`push_audience_ensure`), each member with an Apple device
instead of a Firebase one. An APNs token is 64 hex digits; the bench writes them after its
TOKEN_PREFIX, which marks its devices, and the peer run as a process takes that prefix before a
well-formed token and checks the rest as it checks any token.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpcore
import jwt

from bench.database import broker_flush
from bench.mailings import mailings_clear
from bench.options import Options
from bench.peers import PeerProcess, batch_rate
from bench.push import (
    BODY,
    TOKEN_PREFIX,
    _audience_list,
    push_audience_ensure,
    push_mailing_send,
    quiet_hours_lifted,
)
from bench.results import Measured, median_of
from bench.workers import CeleryWorkers
from communications.gateways import GatewayConfig, OutboundMessage, gateway_for
from communications.gateways.apns import DEFAULT_CONCURRENCY, apns_id
from members.models import Device

CONCURRENCY = 2  # celery prefork children, as the other dispatch scenarios
TOKEN_SQL = f"'{TOKEN_PREFIX}' || lpad(to_hex(id), 64, '0')"
# Pushes of the measurements beside the mailing: enough for a steady figure, few enough for
# the one-stream run to stay short.
ALONE_MESSAGES = 3000
WHAT = ("start of a push mailing (title + body, personalized) to the {n} first active members, "
        "each with an active Apple device and push consent, through an APNs gateway (HTTP/2 over "
        "TLS, ES256 provider token, one connection per batch, {streams} streams in flight) to "
        "the loopback APNs peer (tests/peers/apns.py, its own process); celery prefork "
        "x{concurrency} on Redis. value: sent / (completed_at - first claim); "
        "with_snapshot_per_run counts from the start instead; every message checked `sent` and "
        "counted by the peer")


def _peer_cpu_seconds(peer: PeerProcess) -> float:
    assert peer.process is not None
    fields = Path(f"/proc/{peer.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _tokens(count: int) -> list[str]:
    return [f"{TOKEN_PREFIX}{n:064x}" for n in range(1, count + 1)]


def adapter_alone(*, settings: dict[str, Any], messages: int, concurrency: int) -> float:
    """Pushes/s of one batch of `messages` through the adapter, `concurrency` streams."""
    gateway = gateway_for(GatewayConfig(
        gateway_id=0, channel="push", provider="apns",
        settings={**settings, "concurrency": concurrency}, sender="",
        price_per_message=Decimal(0)))
    batch = [OutboundMessage(message_id=n, address=token, subject="Ann, your points are waiting",
                             body=BODY) for n, token in enumerate(_tokens(messages), start=1)]
    return batch_rate(gateway, batch)


def peer_ceiling(*, settings: dict[str, Any], messages: int) -> float:
    """Pushes/s the peer accepts from a bare httpcore client on one connection: requests
    prebuilt, one provider token, DEFAULT_CONCURRENCY streams in flight."""
    token = jwt.encode({"iss": settings["team_id"], "iat": int(time.time())},
                       settings["private_key"], algorithm="ES256",
                       headers={"kid": settings["key_id"]})
    common = [(b"apns-topic", settings["topic"].encode()), (b"apns-push-type", b"alert"),
              (b"authorization", f"bearer {token}".encode())]
    requests = [(f"{settings['endpoint']}/3/device/{device}".encode(),
                 [*common, (b"apns-id", apns_id(n).encode())],
                 json.dumps({"aps": {"alert": {"title": "Ann, your points are waiting",
                                               "body": BODY}},
                             "engage_message_id": str(n)}).encode())
                for n, device in enumerate(_tokens(messages), start=1)]

    async def run() -> float:
        pending = iter(requests)
        async with httpcore.AsyncConnectionPool(
                ssl_context=ssl.create_default_context(cafile=settings["ca_file"]),
                max_connections=1, http1=False, http2=True) as pool:

            async def client() -> None:
                for url, headers, body in pending:
                    reply = await pool.request(b"POST", url, headers=headers, content=body)
                    if reply.status != 200:
                        raise RuntimeError(f"the peer answered {reply.status}")

            start = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(DEFAULT_CONCURRENCY)))
            return messages / (time.perf_counter() - start)

    return asyncio.run(run())


def dispatch_apns(options: Options) -> Measured:
    """Pushes/s from the first claim of a `--messages` push mailing to Apple devices to its
    completion; one worker (prefork, 2 children) for all runs, a fresh peer per run. Then,
    against one more peer: its ceiling, and the adapter alone with one stream and with 64."""
    ids = push_audience_ensure(options.messages, platform=Device.Platform.APNS,
                               token_sql=TOKEN_SQL)
    target_group = _audience_list(ids)
    runs: list[dict[str, Any]] = []

    def measure() -> float:
        run = push_mailing_send(target_group=target_group, provider="apns",
                                url_setting="stats_url")
        runs.append(run)
        return run["sent"] / run["seconds"]

    with quiet_hours_lifted(channel="push"), CeleryWorkers(concurrency=CONCURRENCY) as workers:
        try:
            value, per_run = median_of(options.runs, measure)
        finally:
            mailings_clear()
            broker_flush()
        if "Traceback" in workers.log_tail():
            raise RuntimeError(f"the worker failed:\n{workers.log_tail()}")
    alone = min(options.messages, ALONE_MESSAGES)
    with PeerProcess("apns", url_setting="stats_url") as peer:
        cpu = _peer_cpu_seconds(peer)
        ceiling = peer_ceiling(settings=peer.settings, messages=alone)
        peer_ms = (_peer_cpu_seconds(peer) - cpu) * 1000 / alone
        one_stream = adapter_alone(settings=peer.settings, messages=alone, concurrency=1)
        streams = adapter_alone(settings=peer.settings, messages=alone,
                                concurrency=DEFAULT_CONCURRENCY)
        connections = peer.stats()["pushing_connections"]
    if connections != 3:
        raise RuntimeError(f"{connections} connections pushed for 3 batches of one each")
    return Measured(runs[-1]["sent"], value, options.runs, {
        "what": WHAT.format(n=runs[-1]["sent"], streams=DEFAULT_CONCURRENCY,
                            concurrency=CONCURRENCY),
        "per_run": per_run,
        "with_snapshot_per_run": [round(r["sent"] / r["with_snapshot_s"], 3) for r in runs],
        "peer_ceiling": round(ceiling, 3),
        "peer_ceiling_what": f"{alone} pushes from a bare httpcore client in this process, "
                            f"{DEFAULT_CONCURRENCY} streams on one connection, requests "
                            "prebuilt, one provider token",
        "peer_cpu_ms_per_push": round(peer_ms, 3),
        "adapter_alone_one_stream": round(one_stream, 3),
        "adapter_alone_streams": round(streams, 3),
        "adapter_alone_what": f"one batch of {alone} pushes through the adapter in this process "
                              f"(no workers, no database), one connection, 1 stream in flight "
                              f"vs {DEFAULT_CONCURRENCY}",
    })
