"""dispatch_webpush: real workers sending a push mailing through a Web Push gateway to a push
service on loopback, whose browser then decrypts every push, and that peer's ceiling.

Each member is given a browser subscription (a web-push Device whose token is the JSON of
PushSubscription.toJSON()): its own endpoint on the benchmark's peer (tests/peers/webpush.py,
listening on BENCH_PORT, the path holding bench/push.py's TOKEN_PREFIX and the member id) and
the one browser key pair that peer decrypts with (BENCH_BROWSER), so the subscriptions written
once into the database still reach and decrypt at the fresh peer of every run. Every push costs
the sender a P-256 key, an ECDH and AES-GCM
(communications.gateways.webpush_crypto.aes128gcm_encrypt) on the same two cores as the peer
and PostgreSQL. The peer takes a push as a push service does, checking its VAPID JWT, headers
and size, and answers 201; its browser decrypts every push taken (an ECDH and AES-GCM each)
when the run's stats are read, after the clock stops, and the run fails unless every one
decrypts. A push service cannot read a push and a member's browser is not on the sender's
cores, so the browser's work is not measured with the mailing; until stop 22 the peer
decrypted each push before answering, which cost the two cores 0.13 ms a push more. The
ceiling's bodies are encrypted by pywebpush instead, so the browser is seen to read another
implementation's pushes too.

What a push costs (stop 22, runs of 20,000, `cpu_ms_per_message_per_run`): the workers 0.49 ms
of CPU, PostgreSQL 0.18, the peer 0.10, about 0.77 ms in all against 0.91 when the peer
decrypted before answering. The workers' share is more than a Push Kit push's (bench/hms.py)
by the ECDH and key derivation that RFC 8291 asks for each push (a new key pair per message,
so nothing is shared between pushes) and the subscription rule applied to each subscription.
"""

from __future__ import annotations

import json
import time
from typing import Any

from bench.cpu import cpu_per_message
from bench.options import Options
from bench.peers import PeerProcess
from bench.push import (
    ALONE_PUSHES,
    BODY,
    CEILING_CONCURRENCY,
    TOKEN_PREFIX,
    push_adapter_alone,
    push_mailing_runs,
    requests_per_second,
)
from bench.push import CONCURRENCY as WORKER_CONCURRENCY
from bench.results import Measured
from members.models import Device
from tests.peers.webpush import BENCH_PORT, bench_subscription_json

URL_SETTING = "peer_url"
WHAT = ("start of a push mailing (title + body, personalized) to the {n} first active members, "
        "each with an active web-push subscription and push consent, through a Web Push "
        "gateway (aes128gcm encryption with a fresh key and salt per push, one VAPID JWT per "
        "push service) to the loopback push service that checks the JWT and takes each push "
        "(tests/peers/webpush.py on port {port}, its own process), its browser decrypting every "
        "push after the clock stops; celery prefork x{workers} on Redis. value: sent / "
        "(completed_at - first claim); with_snapshot_per_run counts from the start instead; "
        "every message checked `sent`, counted by the peer and decrypted by its browser")


def webpush_token_sql() -> str:
    """A member's subscription as SQL from their `id`, the JSON bench_subscription_json makes
    with the endpoint `/push/bench-push:<id, 10 digits>`."""
    marker = "MEMBER_ID"
    before, after = bench_subscription_json(f"{TOKEN_PREFIX}{marker}").split(marker)
    # The JSON holds no quote of SQL's: base64url keys and a loopback URL.
    assert "'" not in before + after and "%" not in before + after
    return f"'{before}' || lpad(id::text, 10, '0') || '{after}'"


def webpush_peer_ceiling(*, settings: dict[str, Any], messages: int) -> float:
    """Pushes/s the peer accepts from a bare aiohttp client: bodies encrypted before the clock
    starts (pywebpush), one VAPID JWT, `CEILING_CONCURRENCY` requests in flight. The peer still
    checks each push's JWT; its browser decrypts them all when the stats are read after."""
    from py_vapid import Vapid02
    from pywebpush import WebPusher

    subscription = json.loads(bench_subscription_json(f"{TOKEN_PREFIX}ceiling"))
    origin = settings[URL_SETTING]
    vapid = Vapid02.from_string(settings["vapid_private_key"])  # the raw key the peer gives
    claims = {"aud": origin, "sub": settings["vapid_subject"], "exp": int(time.time()) + 3600}
    headers = {**vapid.sign(claims),
               "TTL": "86400", "Content-Encoding": "aes128gcm"}
    pusher = WebPusher(subscription)
    bodies = [pusher.encode(json.dumps({
        "title": "Ann, your points are waiting", "body": BODY,
        "data": {"engage_message_id": str(n)}}).encode(), "aes128gcm")["body"]
        for n in range(messages)]
    return requests_per_second(url=subscription["endpoint"], headers=headers, bodies=bodies)


def dispatch_webpush(options: Options) -> Measured:
    """Pushes/s from the first claim of a `--messages` web-push mailing to its completion;
    the peer's own ceiling measured after."""
    value, per_run, runs = push_mailing_runs(
        options, provider="webpush", platform=Device.Platform.WEBPUSH, url_setting=URL_SETTING,
        token_sql=webpush_token_sql())
    with PeerProcess("webpush", url_setting=URL_SETTING) as peer:
        ceiling = webpush_peer_ceiling(settings=peer.settings, messages=options.messages)
        alone = push_adapter_alone(
            provider="webpush", settings=peer.settings,
            addresses=[bench_subscription_json(f"{TOKEN_PREFIX}{n}")
                       for n in range(min(options.messages, ALONE_PUSHES))])
        peer.stats()  # raises unless the browser decrypts every push of both
    return Measured(runs[-1]["sent"], value, options.runs, {
        "what": WHAT.format(n=runs[-1]["sent"], port=BENCH_PORT, workers=WORKER_CONCURRENCY),
        "per_run": per_run,
        "with_snapshot_per_run": [round(r["sent"] / r["with_snapshot_s"], 3) for r in runs],
        **cpu_per_message(runs),
        "peer_ceiling": round(ceiling, 3),
        "peer_ceiling_what": f"a bare aiohttp client, {CEILING_CONCURRENCY} requests in flight "
                             "on one process, bodies encrypted beforehand, one VAPID JWT; the "
                             "peer verifies each, its browser decrypts them after",
        **alone,
    })
