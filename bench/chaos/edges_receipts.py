"""Scenario 9, receipts_storm: delivery receipts posted shuffled, 10% of them twice, 1% for
provider ids Engage never sent, 1% in batches signed with the wrong secret, to the receipts
webhook from several clients while several appliers run at once.

The oracle is the list of receipts as generated: a message must end at the highest-ranked
status among its genuinely signed receipts (each message's receipts are one chain of distinct
ranks, so the order they arrive in must not matter), its recorded changes must only ever move
forward, no change may be recorded twice, and nothing from a forged batch may be stored.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, connections
from django.test import Client, override_settings

from bench.chaos.core import Scenario, result
from bench.chaos.edges_seed import members_create, run_tag, sent_messages_create
from communications.models import Gateway, Message, MessageStatusChange, ProviderReceipt
from communications.services.statuses import STATUS_RANK, receipts_apply
from communications.webhooks import SIGNATURE_HEADER, webhook_signature

NAME = "receipts_storm"
SIZES = {"small": 2_000, "full": 200_000}
# Large enough that concurrent calls share several receipts (the duplicates) in different
# orders: at 250 a call, unsorted inserts deadlocked in about one small run out of four.
PER_CALL = {"small": 250, "full": 500}
CLIENTS = 4
APPLIERS = 2
S = Message.Status
# What a provider may report for one message, in the order it happens; ranks strictly rise.
CHAINS = [
    [S.DELIVERED],
    [S.DELIVERED, S.OPENED],
    [S.DELIVERED, S.OPENED, S.CLICKED],
    [S.UNDELIVERED],
    [S.DELIVERED, S.BOUNCED],
    [S.DELIVERED, S.OPENED, S.CLICKED, S.COMPLAINED],
    [S.EXPIRED],
]
SECRET = "chaos-receipts-secret-0123456789abcdef"
FORGED_CODE = "FORGED"


def _plan(*, receipts: int, provider_ids: list[str], tag: str, rng: random.Random
          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
    """Genuine receipts (duplicates and unknown ids included), forged ones, and the status
    each message must end at."""
    base = datetime(2026, 1, 1, tzinfo=UTC)
    genuine: list[dict[str, Any]] = []
    expected: dict[str, str] = {}
    unknown = receipts // 100
    forged_count = receipts // 100
    originals = receipts - receipts // 10 - unknown - forged_count
    ids = iter(provider_ids)
    while len(genuine) < originals:
        provider_id = next(ids)
        chain = rng.choice(CHAINS)[:originals - len(genuine)]
        for step, status in enumerate(chain):
            genuine.append({"provider_id": provider_id, "status": status,
                            "occurred_at": (base + timedelta(minutes=step)).isoformat(),
                            "code": status.upper()})
        expected[provider_id] = chain[-1]
    genuine += [dict(receipt) for receipt in rng.sample(genuine, receipts // 10)]
    genuine += [{"provider_id": f"{tag}-unknown-{n}", "status": S.DELIVERED,
                 "occurred_at": base.isoformat(), "code": "DELIVERED"} for n in range(unknown)]
    # Forged: a complaint for messages that have none, which would show if it were applied.
    targets = [pid for pid, status in expected.items() if status != S.COMPLAINED]
    forged = [{"provider_id": rng.choice(targets), "status": S.COMPLAINED,
               "occurred_at": (base + timedelta(hours=1)).isoformat(), "code": FORGED_CODE}
              for _ in range(forged_count)]
    rng.shuffle(genuine)
    return genuine, forged, expected


def _bodies(receipts: list[dict[str, Any]], per_call: int) -> list[bytes]:
    return [json.dumps({"receipts": receipts[start:start + per_call]}).encode()
            for start in range(0, len(receipts), per_call)]


def _post_all(*, gateway_id: int, signed: list[bytes], forged: list[bytes]) -> Counter[int]:
    """Every body posted from CLIENTS threads through the full request stack; answers by code."""
    work = [(body, webhook_signature(secret=SECRET, body=body)) for body in signed]
    work += [(body, webhook_signature(secret="not-" + SECRET, body=body)) for body in forged]
    random.Random(9).shuffle(work)
    answers: Counter[int] = Counter()
    lock = threading.Lock()

    def client(share: list[tuple[bytes, str]]) -> None:
        http = Client()
        try:
            for body, signature in share:
                reply = http.post(f"/hooks/gateways/{gateway_id}/receipts", data=body,
                                  content_type="application/json", secure=True,
                                  headers={SIGNATURE_HEADER: signature})
                with lock:
                    answers[reply.status_code] += 1
        finally:
            connections.close_all()

    threads = [threading.Thread(target=client, args=(work[n::CLIENTS],)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def _apply_while(posting: threading.Thread, gateway_id: int) -> None:
    """Appliers racing each other (SKIP LOCKED) and the webhook, as workers do."""
    def applier() -> None:
        try:
            while posting.is_alive():
                if not receipts_apply(gateway_id=gateway_id, limit=500):
                    posting.join(0.05)
            while receipts_apply(gateway_id=gateway_id, limit=500):
                pass
        finally:
            connections.close_all()

    threads = [threading.Thread(target=applier) for _ in range(APPLIERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _backward_and_twice(mailing_id: int) -> tuple[int, int]:
    """Recorded receipt changes that moved a message backwards (or sideways) from the change
    before it, and changes to a status recorded more than once for a message."""
    qn = connection.ops.quote_name
    changes, messages = qn(MessageStatusChange._meta.db_table), qn(Message._meta.db_table)
    rank = "CASE c.status " + " ".join(
        f"WHEN '{status}' THEN {value}" for status, value in STATUS_RANK.items()) + " END"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FILTER (WHERE previous IS NOT NULL AND this <= previous) FROM ("
            f"SELECT {rank} AS this, lag({rank}) OVER (PARTITION BY c.message_id ORDER BY c.id) "
            f"AS previous FROM {changes} c JOIN {messages} m ON m.id = c.message_id "
            f"WHERE m.mailing_id = %s) AS ordered", [mailing_id])
        backward = cursor.fetchone()[0]
        cursor.execute(
            f"SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM {changes} c "
            f"JOIN {messages} m ON m.id = c.message_id WHERE m.mailing_id = %s "
            f"GROUP BY c.message_id, c.status HAVING count(*) > 1) AS twice", [mailing_id])
        twice = cursor.fetchone()[0]
    return backward, int(twice)


def receipts_storm(size: str) -> dict[str, Any]:
    count = SIZES[size]
    rng = random.Random(20260109)
    tag = run_tag("receipts")
    gateway = Gateway.objects.create(name=tag, channel="push", provider="fcm", settings={
        "project_id": "engage-chaos", "inbound_secret": SECRET})
    # About two receipts per message on average: enough messages for every chain.
    member_ids = members_create(tag=tag, count=count // 2 + 10)
    mailing, by_provider_id = sent_messages_create(tag=tag, gateway=gateway,
                                                   member_ids=member_ids, channel="push")
    genuine, forged, expected = _plan(receipts=count, provider_ids=list(by_provider_id),
                                      tag=tag, rng=rng)
    answers: Counter[int] = Counter()
    posting = threading.Thread(target=lambda: answers.update(_post_all(
        gateway_id=gateway.pk, signed=_bodies(genuine, PER_CALL[size]),
        forged=_bodies(forged, PER_CALL[size]))))
    # The in-process client calls itself `testserver`, which pytest allows and a plain run
    # (make chaos) would refuse as a foreign host.
    with override_settings(ALLOWED_HOSTS=[*settings.ALLOWED_HOSTS, "testserver"]):
        posting.start()
        _apply_while(posting, gateway.pk)
        posting.join()

    final = dict(Message.objects.filter(mailing=mailing).values_list("provider_id", "status"))
    mismatches = sum(1 for provider_id, status in expected.items()
                     if final[provider_id] != status)
    # A message with no receipt must still be `sent`.
    untouched_moved = sum(1 for provider_id, status in final.items()
                          if provider_id not in expected and status != S.SENT)
    stored = ProviderReceipt.objects.filter(gateway=gateway)
    forged_accepted = stored.filter(code=FORGED_CODE).count()
    # Genuine receipts of known messages that never got applied: lost.
    genuine_keys = {(r["provider_id"], r["status"]) for r in genuine
                    if r["provider_id"] in by_provider_id}
    applied = set(stored.filter(applied_at__isnull=False).values_list("provider_id", "status"))
    lost = len(genuine_keys - applied)
    backward, twice = _backward_and_twice(mailing.pk)
    unknown_pending = stored.filter(provider_id__startswith=f"{tag}-unknown-",
                                    applied_at__isnull=True).count()
    return result(
        NAME, size, audience=len(by_provider_id), sent=len(genuine) + len(forged),
        unknown=unknown_pending, failed=answers.get(403, 0),
        duplicates=twice, lost=lost, unexpected=forged_accepted,
        receipts_posted=len(genuine) + len(forged), duplicated=count // 10,
        unknown_ids=count // 100, forged=len(forged), answers=dict(answers),
        status_mismatches=mismatches + untouched_moved, backward_transitions=backward,
        bad_signatures_accepted=forged_accepted)


SCENARIOS = [Scenario(NAME, receipts_storm)]
