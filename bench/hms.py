"""dispatch_hms: real workers sending a push mailing through the Huawei Push Kit adapter to its
peer on loopback (tests/peers/hms.py, its own process), and that peer's own ceilings fed by a
bare client: one push per request, as the adapter sends, and 1000 tokens per request, what
multicast would give for identical pushes (communications/gateways/hms.py says why the adapter
does not multicast).

The audience, mailing and runs are dispatch_push's (bench/push.py), the members given an active
Huawei device instead of a Firebase one.

Why the figure moves between sets of runs (2,745 in one, 1,845 in another): it is bound by the
CPU the two cores have left, not by anything that changes from run to run. Measured over five
runs of 20,000 in three sets, from /proc while other sessions' work ran beside (load average 5
to 8): per push the workers take 0.38 to 0.40 ms of CPU, the peer 0.165 and PostgreSQL 0.115,
0.66 to 0.68 ms in all, the same in every run, while pushes/s went from 636 to 1,391. The access
token is fetched once per worker process and peer (one grant each, not one per batch), both
children send the same share of the 500-message batches, and the peer, one process at 0.165 ms
a push, is not the limit. At 0.66 ms a push the two cores give at most about 3,000/s; 2,000/s
is only reached when other work leaves the mailing more than 1.3 of them.
"""

from __future__ import annotations

import json

from bench.cpu import cpu_per_message
from bench.options import Options
from bench.peers import PeerProcess
from bench.push import (
    ALONE_PUSHES,
    BODY,
    CEILING_CONCURRENCY,
    CONCURRENCY,
    TOKEN_LENGTH,
    TOKEN_PREFIX,
    push_adapter_alone,
    push_mailing_runs,
    requests_per_second,
)
from bench.results import Measured
from communications.gateways.base import OutboundMessage
from communications.gateways.hms import access_token_fetch, message_json
from members.models import Device

MULTICAST_TOKENS = 1000
MULTICAST_REQUESTS = 20
MULTICAST_CONCURRENCY = 4
WHAT = ("start of a push mailing (title + body, personalized) to the {n} first active members, "
        "each with an active Huawei device and push consent, through a Push Kit gateway (one "
        "request per push, OAuth token cached per process) to the loopback Push Kit peer "
        "(tests/peers/hms.py, its own process); celery prefork x{concurrency} on Redis. value: "
        "sent / (completed_at - first claim); with_snapshot_per_run counts from the start "
        "instead; every message checked `sent` and counted by the peer")


def _token(n: int) -> str:
    return f"{TOKEN_PREFIX}{n:010d}".ljust(TOKEN_LENGTH, "x")


def peer_ceilings(*, settings: dict, messages: int) -> tuple[float, float]:
    """Pushes/s the peer accepts from a bare aiohttp client with prebuilt bodies and one access
    token: one push per request (`CEILING_CONCURRENCY` in flight), and tokens/s at
    MULTICAST_TOKENS per request (MULTICAST_CONCURRENCY in flight)."""
    token, _ = access_token_fetch(token_url=settings["token_url"], app_id=settings["app_id"],
                                  client_secret=settings["client_secret"], timeout=10)
    url = f"{settings['endpoint']}/v1/{settings['app_id']}/messages:send"
    headers = {"Authorization": f"Bearer {token}",
               "Content-Type": "application/json; charset=utf-8"}

    def body(n: int) -> bytes:
        return message_json(OutboundMessage(message_id=n, address=_token(n),
                                            subject="Ann, your points are waiting", body=BODY))

    single = requests_per_second(url=url, headers=headers,
                                 bodies=[body(n) for n in range(messages)])
    multicast_bodies = []
    for n in range(MULTICAST_REQUESTS):
        request = json.loads(body(n))
        request["message"]["token"] = [_token(n * MULTICAST_TOKENS + k)
                                       for k in range(MULTICAST_TOKENS)]
        multicast_bodies.append(json.dumps(request).encode())
    multicast = requests_per_second(url=url, headers=headers, bodies=multicast_bodies,
                                    concurrency=MULTICAST_CONCURRENCY) * MULTICAST_TOKENS
    return single, multicast


def dispatch_hms(options: Options) -> Measured:
    """Pushes/s from the first claim of a `--messages` push mailing through Push Kit to its
    completion; the peer's ceilings are measured after, on a fresh peer."""
    value, per_run, runs = push_mailing_runs(options, provider="hms",
                                             platform=Device.Platform.HMS)
    with PeerProcess("hms", url_setting="endpoint") as peer:
        single, multicast = peer_ceilings(settings=peer.settings, messages=options.messages)
        alone = push_adapter_alone(
            provider="hms", settings=peer.settings,
            addresses=[_token(n) for n in range(min(options.messages, ALONE_PUSHES))])
    return Measured(runs[-1]["sent"], value, options.runs, {
        "what": WHAT.format(n=runs[-1]["sent"], concurrency=CONCURRENCY),
        "per_run": per_run,
        "with_snapshot_per_run": [round(r["sent"] / r["with_snapshot_s"], 3) for r in runs],
        **cpu_per_message(runs),
        "peer_ceiling": round(single, 3),
        "peer_ceiling_what": f"a bare aiohttp client, one push per request, "
                             f"{CEILING_CONCURRENCY} requests in flight on one process, "
                             "prebuilt bodies, one access token",
        "peer_multicast_ceiling": round(multicast, 3),
        "peer_multicast_ceiling_what": f"tokens/s, {MULTICAST_TOKENS} tokens per request, "
                                       f"{MULTICAST_CONCURRENCY} requests in flight: what "
                                       "multicast would reach for identical pushes",
        **alone,
    })
