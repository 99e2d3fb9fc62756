"""webhook_delivery: real workers delivering signed webhooks to a loopback receiver, the
latency from an event accepted to its webhook received, and the receiver's own ceiling.

Throughput: `--messages` ORDER_PLACED events of seeded members are written straight into the
event log (the outbox; not timed: events_ingest measures that), for one standard subscription
to the Standard Webhooks receiver (tests/peers/webhook_receiver.py in its own process, checking
every signature). The clock starts with the first relay task published and stops when no
delivery is pending; meanwhile the relay task is published every RELAY_TICK_S, as the beat
schedule does in production (a task sends for at most 30 s, then leaves the rest to the next).
The value is deliveries/s over that span, relay (event log -> delivery rows) included; every
delivery must have succeeded and the receiver must have verified exactly as many calls.

Latency: on the idle system, LATENCY_EVENTS events are posted one at a time, LATENCY_RATE a
second, to the integration API (gunicorn, production settings), each nudging the relay after
its commit as the ingest does; the latency of an event runs from the moment its POST was sent
(so it includes the API's own answer time) to the wall-clock time the receiver saw its
webhook-id, on the same machine.

Ceiling: the receiver fed by a bare aiohttp client with prebuilt signed bodies.
"""

from __future__ import annotations

import json
import statistics
import time
import urllib.request
import uuid
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from bench.database import broker_flush
from bench.options import Options
from bench.peers import PeerProcess
from bench.results import Measured, median_of
from bench.workers import CeleryWorkers

CONCURRENCY = 2
RELAY_TICK_S = 1.0
LATENCY_EVENTS = 300
LATENCY_RATE = 20.0
DESCRIPTION = "bench webhook_delivery"
MARK = "webhook_delivery"


def _peer_post(base: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(f"{base}{path}", method="POST" if body is not None
                                     else "GET", data=json.dumps(body).encode()
                                     if body is not None else None,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310  (loopback peer)
        return json.loads(reply.read())


def _peer_base(peer: PeerProcess) -> str:
    return peer.settings["url"].rsplit("/hook", 1)[0]


def _rows_delete(subscription_ids: list[int]) -> None:
    """These subscriptions' deliveries and attempts, and the bench's events: raw deletes, since
    Django's cascade would load every row first."""
    from loyalty.models import Event
    from loyalty.webhooks.models import WebhookAttempt, WebhookDelivery

    qn = connection.ops.quote_name
    deliveries = qn(WebhookDelivery._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {qn(WebhookAttempt._meta.db_table)} WHERE delivery_id IN (SELECT id"
            f" FROM {deliveries} WHERE subscription_id = ANY(%s))", [subscription_ids])
        cursor.execute(f"DELETE FROM {deliveries} WHERE subscription_id = ANY(%s)",
                       [subscription_ids])
        cursor.execute(f"DELETE FROM {qn(Event._meta.db_table)} WHERE payload->>'bench' = %s",
                       [MARK])


def bench_leftovers_clear() -> None:
    """What an earlier run left: its subscription with its rows, and the bench's events."""
    from loyalty.webhooks.models import WebhookSubscription

    ids = list(WebhookSubscription.objects.filter(description=DESCRIPTION)
               .values_list("pk", flat=True))
    _rows_delete(ids)
    WebhookSubscription.objects.filter(pk__in=ids).delete()


def _events_write(member_ids: list[int], count: int) -> None:
    from loyalty.models import Event

    now = timezone.now()
    Event.objects.bulk_create([Event(
        id=uuid.uuid4(), type="ORDER_PLACED", occurred_at=now,
        member_id=member_ids[n % len(member_ids)],
        payload={"bench": MARK, "order": f"B-{n}", "total": "59.90", "items": n % 5 + 1})
        for n in range(count)], batch_size=5000)


def _delivered_run(*, subscription_id: int, member_ids: list[int], count: int,
                   peer: PeerProcess, timeout: float) -> dict[str, Any]:
    from django.db.models import Max, Min

    from loyalty.webhooks.models import WebhookAttempt, WebhookDelivery
    from loyalty.webhooks.tasks import webhooks_relay

    base = _peer_base(peer)
    _peer_post(base, "/_peer/reset", {})
    _events_write(member_ids, count)
    deliveries = WebhookDelivery.objects.filter(subscription_id=subscription_id)
    started = time.perf_counter()
    deadline = started + timeout
    next_tick = started
    while True:
        now = time.perf_counter()
        if now >= next_tick:
            for _ in range(CONCURRENCY):
                webhooks_relay.apply_async()
            next_tick = now + RELAY_TICK_S
        # Created, and none of them pending: the relay's rows appear all at once.
        if (deliveries.exists()
                and not deliveries.filter(status=WebhookDelivery.Status.PENDING).exists()):
            break
        if now > deadline:
            raise RuntimeError(f"{deliveries.filter(status='succeeded').count()} of {count} "
                               f"deliveries done after {timeout:g} s")
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    succeeded = deliveries.filter(status=WebhookDelivery.Status.SUCCEEDED).count()
    verified = _peer_post(base, "/_peer/stats")["verified"]
    if succeeded != count or verified != count:
        raise RuntimeError(f"{succeeded} deliveries succeeded and the receiver verified "
                           f"{verified}; expected {count}")
    span = WebhookAttempt.objects.filter(delivery__subscription_id=subscription_id).aggregate(
        first=Min("attempted_at"), last=Max("attempted_at"))
    return {"delivered": count, "seconds": seconds,
            "attempts_span_s": (span["last"] - span["first"]).total_seconds()}


def _latencies(*, peer: PeerProcess, external_ids: list[str], count: int) -> list[float]:
    """Milliseconds from each event's POST to its webhook at the receiver."""
    from bench.member_api import Gunicorn
    from loyalty.integration.keys import api_key_create

    base = _peer_base(peer)
    _peer_post(base, "/_peer/reset", {})
    api_key, key = api_key_create(name="bench webhook_delivery", scopes=["events:write"],
                                  by=None)
    sent: dict[str, float] = {}
    try:
        with Gunicorn(workers=1) as server:
            for n in range(count):
                body = json.dumps({"type": "ORDER_PLACED",
                                   "member": external_ids[n % len(external_ids)],
                                   "payload": {"bench": MARK, "order": f"L-{n}"}}).encode()
                request = urllib.request.Request(
                    f"{server.url}/api/v1/integration/events/", data=body, method="POST",
                    headers={"Authorization": f"Api-Key {key}",
                             "Content-Type": "application/json",
                             "Idempotency-Key": str(uuid.uuid4()),
                             "X-Forwarded-Proto": "https"})
                posted = time.time()
                with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310
                    sent[json.loads(reply.read())["id"]] = posted
                time.sleep(max(0.0, 1 / LATENCY_RATE - (time.time() - posted)))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                arrivals = _peer_post(base, "/_peer/arrivals")
                if all(event_id in arrivals for event_id in sent):
                    break
                time.sleep(0.2)
            else:
                raise RuntimeError(f"{len(set(sent) - set(arrivals))} of {count} events never "
                                   f"reached the receiver\n{server.log_tail()}")
    finally:
        api_key.delete()
    return [(arrivals[event_id] - posted) * 1000 for event_id, posted in sent.items()]


def receiver_ceiling(*, peer: PeerProcess, secret: str, messages: int) -> float:
    """Calls/s the receiver verifies and answers from a bare aiohttp client, prebuilt signed
    bodies, `CEILING_CONCURRENCY` in flight."""
    from bench.push import CEILING_CONCURRENCY, requests_per_second
    from loyalty.webhooks.connectors.standard import signature_header

    now = timezone.now()
    msg_id = str(uuid.uuid4())
    body = json.dumps({"type": "ORDER_PLACED", "timestamp": now.isoformat(), "data": {
        "id": msg_id, "member": "M00000001", "occurred_at": now.isoformat(),
        "payload": {"order": "B-1", "total": "59.90", "items": 3}, "version": 1}}).encode()
    headers = {"content-type": "application/json", "webhook-id": msg_id,
               "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": signature_header([secret], msg_id, now, body)}
    return requests_per_second(url=peer.settings["url"], headers=headers,
                               bodies=[body] * messages, concurrency=CEILING_CONCURRENCY)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def webhook_delivery(options: Options) -> Measured:
    """Deliveries/s from the first relay task to the last delivery, `--messages` a run."""
    from loyalty.webhooks.services import subscription_create
    from members.models import Member

    if not settings.ENGAGE_WEBHOOK_ALLOW_PRIVATE:
        raise RuntimeError("the receiver is on loopback: run with ENGAGE_WEBHOOK_ALLOW_PRIVATE=1 "
                           "(make bench sets it)")
    members = list(Member.objects.filter(status=Member.Status.ACTIVE).order_by("pk")
                   .values_list("pk", "external_id")[:20_000])
    if not members:
        raise RuntimeError("no active members: seed some first")
    member_ids = [pk for pk, _ in members]
    external_ids = [external_id for _, external_id in members]
    count = options.messages
    latency_count = min(LATENCY_EVENTS, max(10, count // 10))
    bench_leftovers_clear()
    broker_flush()
    runs: list[dict[str, Any]] = []
    try:
        with PeerProcess("webhook_receiver", url_setting="url") as peer:
            subscription, secret = subscription_create(url=peer.settings["url"],
                                                       description=DESCRIPTION)
            _peer_post(_peer_base(peer), "/_peer/secrets", {"secret": secret})
            with CeleryWorkers(concurrency=CONCURRENCY) as workers:
                def measure() -> float:
                    run = _delivered_run(subscription_id=subscription.pk, member_ids=member_ids,
                                         count=count, peer=peer, timeout=120 + count / 50)
                    runs.append(run)
                    # Every run starts from the same tables.
                    _rows_delete([subscription.pk])
                    return run["delivered"] / run["seconds"]

                value, per_run = median_of(options.runs, measure)
                # The backlog's relay ticks are spent before the idle measurement.
                broker_flush()
                time.sleep(1)
                latencies = _latencies(peer=peer, external_ids=external_ids,
                                       count=latency_count)
                if "Traceback" in workers.log_tail():
                    raise RuntimeError(f"the worker failed:\n{workers.log_tail()}")
            ceiling = receiver_ceiling(peer=peer, secret=secret, messages=min(count, 20_000))
    finally:
        bench_leftovers_clear()
        broker_flush()
    return Measured(count, value, options.runs, {
        "what": f"{count} ORDER_PLACED events of {len(member_ids)} members written into the "
                f"event log (not timed), relayed and delivered Standard-Webhooks-signed to a "
                f"loopback receiver (its own process, verifying every signature) by celery "
                f"prefork x{CONCURRENCY} on Redis, {settings.ENGAGE_WEBHOOK_IN_FLIGHT} calls in "
                f"flight per worker process; value: deliveries / (first relay task published "
                f"-> none pending), relay ticks every {RELAY_TICK_S:g} s as the beat would",
        "per_run": per_run,
        "attempts_span_per_run_s": [round(r["attempts_span_s"], 3) for r in runs],
        "accepted_to_received_p95_ms": round(_percentile(latencies, 0.95), 1),
        "accepted_to_received_p50_ms": round(statistics.median(latencies), 1),
        "accepted_to_received_max_ms": round(max(latencies), 1),
        "latency_what": f"{latency_count} events POSTed one at a time at {LATENCY_RATE:g}/s to "
                        f"/api/v1/integration/events/ (gunicorn x1, DEBUG off) on the idle "
                        f"system; from the POST sent to the receiver's arrival time",
        "receiver_ceiling": round(ceiling, 3),
        "receiver_ceiling_what": "a bare aiohttp client, prebuilt signed bodies, 32 in flight, "
                                 "the receiver verifying each signature",
    })
