"""Scenario 10, webhooks_storm: events written while a real worker relays and delivers them to
three receivers (a healthy one; one slow that answers 500 to the first call of half the events;
one answering 410 Gone), the worker killed -9 and restarted several times, and some events
written in transactions that roll back.

Judged from the receivers' own logs (each call with its webhook-id and answer) against the
event log: every committed event answered 2xx by the healthy and the flaky receivers (else
lost), no event answered 2xx twice by one receiver (duplicates), no rolled-back event ever
sent, and the 410 receiver called once before its subscription was disabled (it is probed
alone: loyalty/webhooks/delivery.py).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from typing import Any

from django.db import connections, transaction
from django.test import override_settings

from bench.chaos.core import Scenario, result
from bench.chaos.edges_seed import members_create, run_tag
from bench.chaos.edges_worker import KillableWorker, wait_for
from loyalty.models import Event
from loyalty.services import events_record
from loyalty.webhooks.delivery import CLAIM_BATCH
from loyalty.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from loyalty.webhooks.services import subscription_create, subscription_update
from tests.peers.webhook_receiver import WebhookReceiverPeer

NAME = "webhooks_storm"
SIZES = {"small": {"events": 200, "kills": 1, "rolled_back": 20},
         "full": {"events": 10_000, "kills": 5, "rolled_back": 1_000}}
EVENTS_PER_WRITE = 10
WRITE_PAUSE_S = 0.02
FLAKY_STALL_S = 0.2
WORKER_ENV = {
    # Short enough that a killed worker's claims come back within the scenario.
    "ENGAGE_WEBHOOK_TIMEOUT": "2", "ENGAGE_WEBHOOK_LEASE_MARGIN": "1",
    "ENGAGE_WEBHOOK_RELAY_TICK": "0.5", "ENGAGE_WEBHOOK_ALLOW_PRIVATE": "1",
}


class _Rollback(Exception):
    pass


def _events_write(*, tag: str, member_ids: list[int], committed: int, rolled_back: int
                  ) -> None:
    """Committed events in small transactions, with rolled-back ones in between, each held
    open a moment so the relay runs while they are in flight."""
    rng = random.Random(10)
    plan = ["commit"] * (committed // EVENTS_PER_WRITE) + ["rollback"] * (
        rolled_back // EVENTS_PER_WRITE)
    rng.shuffle(plan)
    numbers = iter(range(committed + rolled_back))
    try:
        for what in plan:
            entries = [(rng.choice(member_ids), {"chaos": tag, "n": next(numbers),
                                                 "rolled_back": what == "rollback"})
                       for _ in range(EVENTS_PER_WRITE)]
            try:
                with transaction.atomic():
                    events_record(type="ORDER_PLACED", entries=entries)
                    time.sleep(WRITE_PAUSE_S)
                    if what == "rollback":
                        raise _Rollback
            except _Rollback:
                pass
    finally:
        connections.close_all()


def _received(peer: WebhookReceiverPeer) -> tuple[Counter[str], Counter[str], set[str]]:
    """Per webhook-id: calls answered 2xx, all calls; and the ids whose payload says it was
    rolled back."""
    ok: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    rolled_back: set[str] = set()
    with peer.lock:
        received = list(peer.calls)
    for call in received:
        webhook_id = call.headers.get("webhook-id", "")
        calls[webhook_id] += 1
        if 200 <= call.answered < 300:
            ok[webhook_id] += 1
        if call.json.get("data", {}).get("payload", {}).get("rolled_back"):
            rolled_back.add(webhook_id)
    return ok, calls, rolled_back


def webhooks_storm(size: str) -> dict[str, Any]:
    plan = SIZES[size]
    tag = run_tag("webhooks")
    member_ids = members_create(tag=tag, count=100)
    peers = {"healthy": WebhookReceiverPeer(), "flaky": WebhookReceiverPeer(),
             "gone": WebhookReceiverPeer()}
    for peer in peers.values():
        peer.start()
    peers["flaky"].script.update(fail_first_share=0.5, stall=FLAKY_STALL_S)
    peers["gone"].script.update(answer_gone=True)
    subscriptions: dict[str, WebhookSubscription] = {}
    with override_settings(ENGAGE_WEBHOOK_ALLOW_PRIVATE=True):
        for role, peer in peers.items():
            # Only the scenario's own events: the suite's database may hold other scenarios'
            # work still coming in (message events from receipts applied late).
            subscription, secret = subscription_create(
                connector="standard", url=peer.hook_url, description=f"{tag} {role}",
                event_types=["ORDER_PLACED"])
            peer.secrets.append(secret)
            subscriptions[role] = subscription
    worker = KillableWorker(env=WORKER_ENV).start()
    writer = threading.Thread(target=_events_write, kwargs={
        "tag": tag, "member_ids": member_ids, "committed": plan["events"],
        "rolled_back": plan["rolled_back"]})
    rng = random.Random(1010)
    try:
        writer.start()
        deliveries = WebhookDelivery.objects.filter(subscription__in=subscriptions.values())
        expected_rows = plan["events"] * 2
        for _ in range(plan["kills"]):
            # A kill while the worker is mid-storm: after some, not all, deliveries succeeded.
            target = rng.uniform(0.1, 0.6) * expected_rows
            wait_for(lambda target=target: deliveries.filter(status="succeeded").count()
                     >= target,
                     timeout=60, interval=0.05)
            worker.kill()
            time.sleep(rng.uniform(0.2, 1.0))
            worker.start()
        writer.join()
        events = Event.objects.filter(payload__chaos=tag)
        committed = {str(pk) for pk in events.values_list("pk", flat=True)}
        wait_for(lambda: not deliveries.filter(
            subscription__in=[subscriptions["healthy"], subscriptions["flaky"]]).exclude(
            status="succeeded").exists() and deliveries.filter(
            subscription=subscriptions["healthy"]).count() >= len(committed),
            timeout=90, interval=0.3)
    finally:
        worker.stop()
        for peer in peers.values():
            peer.stop()
    lost = duplicates = redelivered = rolled_back_sent = 0
    figures: dict[str, Any] = {}
    for role in ("healthy", "flaky"):
        ok, calls, rolled = _received(peers[role])
        lost += len(committed - set(ok))
        # Engage sending again what it had recorded as delivered is a duplicate; a receiver's
        # 2xx that Engage never recorded (the worker was killed between the answer and the
        # write) is sent again after the lease by design, under the same webhook-id, which
        # the receiver deduplicates (Standard Webhooks): counted apart.
        recorded = Counter(str(event_id) for event_id in WebhookAttempt.objects.filter(
            delivery__subscription=subscriptions[role], status_code__gte=200,
            status_code__lt=300).values_list("delivery__event_id", flat=True))
        duplicates += sum(n - 1 for n in recorded.values() if n > 1)
        redelivered += sum(n - max(1, recorded[event_id]) for event_id, n in ok.items()
                           if n > 1)
        rolled_back_sent += len(rolled)
        figures[f"{role}_calls"] = sum(calls.values())
    ok, calls, rolled = _received(peers["gone"])
    rolled_back_sent += len(rolled)
    gone = subscriptions["gone"]
    gone.refresh_from_db()
    # Each claimed batch stamps its attempts with one time: one stamp is one try.
    gone_batches = (WebhookAttempt.objects.filter(delivery__subscription=gone)
                    .values("attempted_at").distinct().count())
    statuses = Counter(deliveries.values_list("status", flat=True))
    # Their receivers are gone with the scenario: later relays must not queue for them.
    for subscription in subscriptions.values():
        subscription.refresh_from_db()
        if subscription.active:
            subscription_update(subscription=subscription, active=False)
    return result(
        NAME, size, audience=len(committed), sent=statuses.get("succeeded", 0),
        failed=statuses.get("failed", 0), duplicates=duplicates, lost=lost,
        unexpected=rolled_back_sent, rolled_back_written=plan["rolled_back"],
        rolled_back_sent=rolled_back_sent, kills=worker.kills,
        redelivered_after_kill=redelivered,
        redelivery_bound=worker.kills * CLAIM_BATCH * len(("healthy", "flaky")),
        gone_disabled=not gone.active, gone_calls=sum(calls.values()),
        gone_batches=gone_batches, deliveries=dict(statuses), **figures)


SCENARIOS = [Scenario(NAME, webhooks_storm)]
