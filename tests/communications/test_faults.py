"""Fault tests of the mailing pipeline: real workers killed, the broker restarted empty, a
provider throttling, failing and hanging, receipts repeated out of order.

Each ends with the same count against what the loopback peer received, by Engage's message id
(the SMTP Message-ID header, the push's `engage_message_id`): 0 duplicates (no message, no
address received twice) and 0 lost (every message of the audience in a final status or
`unknown`; every `sent` one received by the peer; everything the peer received `sent` or
`unknown`, never failed or still pending).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import OuterRef
from django.urls import reverse
from django.utils import timezone

from communications.models import Mailing, Message, MessageStatusChange, ProviderReceipt
from communications.ratelimit import REDIS_KEY_PREFIX, ratelimit_redis
from communications.services import mailing_schedule
from communications.services.statuses import RECEIPTS_PER_APPLY, STATUS_RANK
from communications.webhooks import webhook_signature
from config.celery import app as celery_app
from members.models import Consent, Device, Member, Suppression
from tests.communications.factories import (
    GatewayFactory,
    MailingFactory,
    MessageFactory,
    TemplateFactory,
)
from tests.communications.faults import RedisServer, WorkerProcess, message_ids
from tests.conftest import wait_until
from tests.members.factories import ConsentFactory, DeviceFactory, MemberFactory
from tests.peers.fcm import FcmPeer
from tests.peers.smtp import SmtpPeer

pytestmark = [pytest.mark.slow, pytest.mark.pipeline, pytest.mark.django_db(transaction=True)]

Status = Message.Status
# Where a message of a finished mailing may be: decided, or in doubt.
SETTLED = {Status.SENT, Status.UNKNOWN, Status.FAILED, Status.SKIPPED, Status.EXPIRED,
           Status.CANCELLED, Status.DELIVERED, Status.UNDELIVERED, Status.OPENED,
           Status.CLICKED, Status.BOUNCED, Status.COMPLAINED, Status.REJECTED}
# Recorded as accepted by the provider: sent, or a receipt about it since.
HANDED_OVER = {Status.SENT, Status.DELIVERED, Status.UNDELIVERED, Status.OPENED, Status.CLICKED,
               Status.BOUNCED, Status.COMPLAINED}
# A claim unconfirmed this long ends `unknown`; a sending mailing quiet this long is
# re-dispatched (production: 900 s and 60 s).
CLAIM_TIMEOUT_S = 4
REDISPATCH_AFTER_S = 2
# A batch of 100 goes out in chunks of this many: a kill leaves at most one in doubt.
HANDOVER_CHUNK = 20


# --- fixtures ---------------------------------------------------------------------------------

@pytest.fixture
def fcm_peer() -> Iterator[FcmPeer]:
    peer = FcmPeer().start()
    yield peer
    peer.stop()


@pytest.fixture
def worker_env(transactional_db, tmp_path) -> dict[str, str]:
    """The environment of a worker on the test database and the test broker, with short
    leases; a test may point CELERY_BROKER_URL elsewhere before starting one."""
    db = connection.settings_dict
    return {
        **os.environ,
        "DEBUG": "1",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CONN_MAX_AGE": "0",
        "ENGAGE_VAR_DIR": str(tmp_path),
        "ENGAGE_SCHEDULER_TICK": "0.5",
        "ENGAGE_BATCH_SIZE": "100",
        "ENGAGE_HANDOVER_CHUNK": str(HANDOVER_CHUNK),
        "ENGAGE_CLAIM_TIMEOUT": str(CLAIM_TIMEOUT_S),
        "ENGAGE_REDISPATCH_AFTER": str(REDISPATCH_AFTER_S),
        # A task held by a killed worker comes back after this long (a duplicate delivery).
        "CELERY_VISIBILITY_TIMEOUT": "10",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def workers(transactional_db) -> Iterator[list[WorkerProcess]]:
    """Workers a test starts, stopped at its end; their logs are printed if it fails."""
    started: list[WorkerProcess] = []
    celery_app.control.purge()
    yield started
    for worker in started:
        worker.stop()
        if "Traceback" in worker.output():
            print(worker.output()[-20_000:])  # shown by pytest when the test fails


@pytest.fixture
def redis_server(tmp_path) -> Iterator[RedisServer]:
    server = RedisServer(log_dir=tmp_path).start()
    yield server
    server.kill()


# --- data and the count -----------------------------------------------------------------------

def _members(n: int, *, channel: str = "email") -> list[Member]:
    """n members with a granted marketing consent on `channel`, written in bulk."""
    members = Member.objects.bulk_create(MemberFactory.build_batch(n))
    Consent.objects.bulk_create([ConsentFactory.build(member=m, channel=channel)
                                 for m in members])
    return members


def _email_mailing(peer: SmtpPeer, **gateway_settings) -> Mailing:
    mailing = MailingFactory(gateway=GatewayFactory(
        settings={**peer.gateway_settings(), **gateway_settings}))
    mailing_schedule(mailing=mailing, at=timezone.now() - timedelta(seconds=1))
    return mailing


def _state(mailing: Mailing) -> str:
    return Mailing.objects.values_list("state", flat=True).get(pk=mailing.pk)


def _wait_completed(mailing: Mailing, worker: WorkerProcess, *, timeout: float) -> None:
    def completed() -> bool:
        worker.assert_running()
        return _state(mailing) == Mailing.State.COMPLETED

    wait_until(completed, timeout=timeout, interval=0.25,
               what=f"mailing {mailing.pk} to complete")


def _statuses(mailing: Mailing) -> dict[int, str]:
    return dict(Message.objects.filter(mailing=mailing).values_list("pk", "status"))


def _smtp_received(peer: SmtpPeer) -> Counter[int]:
    return message_ids(r.message["Message-ID"] for r in peer.received)


def _assert_no_duplicate_no_loss(*, audience: int, statuses: dict[int, str],
                                 received: Counter[int]) -> None:
    """0 duplicates, 0 lost, counted against the peer (see the module's docstring)."""
    duplicates = {pk: n for pk, n in received.items() if n > 1}
    assert duplicates == {}, f"received more than once: {duplicates}"
    assert len(statuses) == audience
    unsettled = {pk: s for pk, s in statuses.items() if s not in SETTLED}
    assert unsettled == {}, f"messages never settled: {unsettled}"
    sent = {pk for pk, s in statuses.items() if s in HANDED_OVER}
    lost = sent - set(received)
    assert lost == set(), f"recorded as sent, never received: {sorted(lost)[:20]}"
    foreign = set(received) - set(statuses)
    assert foreign == set(), f"received, not a message of the mailing: {sorted(foreign)[:20]}"
    wrong = {pk: statuses[pk] for pk in received if pk not in sent
             and statuses[pk] != Status.UNKNOWN}
    assert wrong == {}, f"received, yet recorded as neither sent nor unknown: {wrong}"


def _assert_unknown_never_requeued(mailing: Mailing) -> None:
    """A message once in doubt never went back to the queue (so no batch could send it
    again); the peer's count above shows it was not handed over twice either."""
    in_doubt = MessageStatusChange.objects.filter(message__mailing=mailing,
                                                  status=Status.UNKNOWN)
    history: dict[int, list[str]] = {}
    for message_id, status in (MessageStatusChange.objects
                               .filter(message_id__in=in_doubt.values("message_id"))
                               .order_by("recorded_at", "pk")
                               .values_list("message_id", "status")):
        history.setdefault(message_id, []).append(status)
    requeued = {pk: changes for pk, changes in history.items()
                if Status.QUEUED in changes[changes.index(Status.UNKNOWN):]}
    assert requeued == {}


# --- 1. a worker killed with SIGKILL, again and again -----------------------------------------

def test_a_worker_killed_five_times_mid_mailing_sends_every_email_at_most_once_and_loses_none(
    smtp_peer, worker_env, workers, tmp_path
):
    # given a mailing of 2,000 emails and one worker sending it
    audience = 2000
    _members(audience)
    mailing = _email_mailing(smtp_peer)
    worker = WorkerProcess(env=worker_env, log_dir=tmp_path)
    workers.append(worker)
    chance = random.Random(5)

    # when the worker is killed at 5 random moments while it sends, restarted each time
    kills = 0
    for _ in range(5):
        worker.start()
        before = len(smtp_peer.received)

        def sending(before: int = before) -> bool:
            worker.assert_running()
            return len(smtp_peer.received) > before + 30

        wait_until(sending, timeout=60, interval=0.02, what="the restarted worker to send")
        if len(smtp_peer.received) >= audience * 0.95:
            break  # too late to kill it mid-mailing
        time.sleep(chance.uniform(0.0, 0.4))
        worker.kill()
        kills += 1
    else:
        worker.start()
    _wait_completed(mailing, worker, timeout=90)

    # then
    statuses = _statuses(mailing)
    received = _smtp_received(smtp_peer)
    _assert_no_duplicate_no_loss(audience=audience, statuses=statuses, received=received)
    _assert_unknown_never_requeued(mailing)
    addresses = Counter(r.rcpt_tos[0] for r in smtp_peer.received)
    assert [a for a, n in addresses.items() if n > 1] == []
    assert kills >= 3, "the worker finished before it could be killed"
    assert set(statuses.values()) <= {Status.SENT, Status.UNKNOWN}
    # Each kill leaves in doubt at most the chunk it was sending; the rest of its batch went
    # back to the queue and out once.
    assert Counter(statuses.values())[Status.UNKNOWN] <= kills * HANDOVER_CHUNK
    sent = Message.objects.filter(mailing=mailing, status=Status.SENT)
    headers = {r.message["Message-ID"] for r in smtp_peer.received}
    assert all(provider_id in headers and message_ids([provider_id]) == {pk: 1}
               for pk, provider_id in sent.values_list("pk", "provider_id"))


# --- 2. the broker restarted without persistence ----------------------------------------------

def test_redis_restarted_empty_at_30_percent_of_a_mailing_loses_no_email_and_repeats_none(
    smtp_peer, worker_env, workers, redis_server, tmp_path
):
    # given a mailing of 1,500 emails and a worker whose broker is a Redis without persistence
    audience = 1500
    _members(audience)
    mailing = _email_mailing(smtp_peer)
    worker = WorkerProcess(env={**worker_env, "CELERY_BROKER_URL": redis_server.url},
                           log_dir=tmp_path)
    workers.append(worker)
    worker.start()

    # when Redis dies at 30% of the mailing and comes back empty two seconds later
    wait_until(lambda: len(smtp_peer.received) >= audience * 0.3, timeout=60, interval=0.02,
               what="30% of the mailing")
    redis_server.kill()
    at_restart = len(smtp_peer.received)
    log_at_restart = len(worker.output())
    time.sleep(2)
    redis_server.start()
    _wait_completed(mailing, worker, timeout=90)

    # then the scheduler tick re-enqueued what the broker lost, nothing went out twice
    assert at_restart < audience, "the mailing finished before the broker was restarted"
    assert f"'stalled': [{mailing.pk}]" in worker.output()[log_at_restart:], (
        "the scheduler tick never re-dispatched the mailing after the broker came back")
    statuses = _statuses(mailing)
    received = _smtp_received(smtp_peer)
    _assert_no_duplicate_no_loss(audience=audience, statuses=statuses, received=received)
    _assert_unknown_never_requeued(mailing)
    assert set(statuses.values()) <= {Status.SENT, Status.UNKNOWN}


# --- 3. a push provider answering 429, 503, and not answering ---------------------------------

def test_throttled_and_unavailable_pushes_are_retried_once_allowed_and_stalled_ones_end_unknown(
    fcm_peer, worker_env, workers, tmp_path
):
    # given 300 push members; FCM throttles 20 of them (429, Retry-After 1 s) and is
    # unavailable for 20 (503, Retry-After 1 s) twice each before it accepts them, and holds
    # its reply to 10 accepted pushes past the gateway's 1 s timeout
    members = _members(300, channel="push")
    devices = Device.objects.bulk_create([
        DeviceFactory.build(member=m, token=f"fault-token-{m.pk}", last_seen_at=timezone.now())
        for m in members])
    tokens = [d.token for d in devices]
    throttled, unavailable, stalled = tokens[10:30], tokens[100:120], tokens[200:210]
    fcm_peer.script.throttled = dict.fromkeys(throttled, 1)
    fcm_peer.script.unavailable = set(unavailable)
    fcm_peer.script.unavailable_retry_after = 1
    fcm_peer.script.stalled = set(stalled)
    fcm_peer.script.stall_seconds = 2.5
    fcm_peer.script.recover_after = 2
    mailing = MailingFactory(
        template=TemplateFactory(channel="push", subject="Hi {{ member.first_name }}",
                                 body="Double points today"),
        gateway=GatewayFactory(channel="push", provider="fcm", sender="",
                               settings=fcm_peer.gateway_settings(timeout=1)))
    mailing_schedule(mailing=mailing, at=timezone.now() - timedelta(seconds=1))

    # when one worker sends it
    worker = WorkerProcess(env=worker_env, log_dir=tmp_path).start()
    workers.append(worker)
    _wait_completed(mailing, worker, timeout=90)

    # then
    statuses = _statuses(mailing)
    received = Counter(int(p.data["engage_message_id"]) for p in fcm_peer.received)
    _assert_no_duplicate_no_loss(audience=300, statuses=statuses, received=received)
    _assert_unknown_never_requeued(mailing)
    by_token = dict(Message.objects.filter(mailing=mailing).values_list("address", "pk"))
    assert {t: statuses[by_token[t]] for t in throttled + unavailable} == dict.fromkeys(
        throttled + unavailable, Status.SENT)
    assert {t: statuses[by_token[t]] for t in stalled} == dict.fromkeys(stalled, Status.UNKNOWN)
    assert all(received[by_token[t]] == 1 for t in stalled)
    assert Counter(statuses.values()) == {Status.SENT: 290, Status.UNKNOWN: 10}
    # each retried push was tried three times, never sooner than its Retry-After allowed
    requests: dict[str, list[float]] = {}
    for request in fcm_peer.requests:
        requests.setdefault(request.token, []).append(request.at)
    assert {t: len(requests[t]) for t in throttled + unavailable} == dict.fromkeys(
        throttled + unavailable, 3)
    early = {t: [round(b - a, 2) for a, b in zip(times, times[1:], strict=False)]
             for t in throttled + unavailable if (times := requests[t])
             and min(b - a for a, b in zip(times, times[1:], strict=False)) < 0.95}
    assert early == {}, f"retried before the Retry-After elapsed (s between tries): {early}"


# --- 4. receipts repeated and out of order ----------------------------------------------------

# What the provider will say about each message, in the order it happens.
RECEIPT_PATHS = (
    ("delivered",), ("delivered", "opened"), ("delivered", "opened", "clicked"), ("bounced",),
    ("undelivered",), ("delivered", "opened", "complained"),
)


RECEIPTS_SECRET = "fault-test-inbound-secret"


def _receipts_post(client, gateway, receipts: list[dict]) -> None:
    body = json.dumps({"receipts": receipts}).encode()
    response = client.post(
        reverse("gateway-receipts", args=[gateway.pk]), body, content_type="application/json",
        headers={"X-Engage-Signature": webhook_signature(secret=RECEIPTS_SECRET, body=body)})
    assert response.status_code == 202, response.content


def test_receipts_posted_twice_and_out_of_order_end_in_the_exact_status_never_moving_back(
    client, smtp_peer, worker_env, workers, tmp_path
):
    # given a mailing of 200 emails, paced by the gateway's rate limit, so that the provider's
    # receipts for a batch reach Engage before the batch's sends are recorded
    audience = 200
    _members(audience)
    mailing = _email_mailing(smtp_peer, inbound_secret=RECEIPTS_SECRET, rate_per_second=100)
    ratelimit_redis().delete(f"{REDIS_KEY_PREFIX}gateway:{mailing.gateway_id}")
    chance = random.Random(4)
    paths: dict[str, tuple[str, ...]] = {}  # Message-ID -> what the provider reports
    events: list[dict] = []
    worker = WorkerProcess(env=worker_env, log_dir=tmp_path).start()
    workers.append(worker)

    # when the provider reports each email as soon as it has it, last event first (a click in
    # one call, then its delivery and open in the next), each call made twice
    def report_new() -> None:
        last, earlier = [], []
        for received in smtp_peer.received[len(paths):]:
            provider_id = received.message["Message-ID"]
            path = paths[provider_id] = chance.choice(RECEIPT_PATHS)
            start = timezone.now()
            reported = [{"provider_id": provider_id, "status": status,
                         "occurred_at": (start + timedelta(seconds=step)).isoformat()}
                        for step, status in enumerate(path, 1)]
            last.append(reported[-1])
            earlier += reported[:-1]
        for call in (last, earlier):
            if call:
                chance.shuffle(call)
                _receipts_post(client, mailing.gateway, call)
                _receipts_post(client, mailing.gateway, call[::-1])
                events.extend(call)

    deadline = time.monotonic() + 90
    while _state(mailing) != Mailing.State.COMPLETED:
        assert time.monotonic() < deadline, "the mailing did not complete"
        worker.assert_running()
        report_new()
        time.sleep(0.05)
    report_new()
    # and the provider's retries of every call, late, in two shuffled halves
    chance.shuffle(events)
    _receipts_post(client, mailing.gateway, events[: len(events) // 2])
    _receipts_post(client, mailing.gateway, events[len(events) // 2:])
    wait_until(lambda: not ProviderReceipt.objects.filter(applied_at__isnull=True).exists(),
               timeout=30, what="every receipt to be applied")

    # then every email is in the status its last receipt says, counted against the peer
    statuses = _statuses(mailing)
    received = _smtp_received(smtp_peer)
    _assert_no_duplicate_no_loss(audience=audience, statuses=statuses, received=received)
    provider_ids = dict(Message.objects.filter(mailing=mailing).values_list("provider_id", "pk"))
    assert {provider_ids[p]: statuses[provider_ids[p]] for p in paths} == {
        provider_ids[p]: path[-1] for p, path in paths.items()}
    assert ProviderReceipt.objects.count() == len(events)
    # some receipts came before their send was recorded
    early = Message.objects.filter(
        mailing=mailing, provider_id__in=ProviderReceipt.objects.filter(
            received_at__lt=OuterRef("sent_at")).values("provider_id"))
    assert early.exists()
    # each change recorded once, each moving its message forward
    history: dict[int, list[str]] = {}
    for message_id, status in (MessageStatusChange.objects.filter(message__mailing=mailing)
                               .order_by("recorded_at", "pk").values_list("message_id",
                                                                          "status")):
        history.setdefault(message_id, []).append(status)
    backwards = {pk: changes for pk, changes in history.items()
                 if any(STATUS_RANK[a] >= STATUS_RANK[b] for a, b in zip(changes, changes[1:],
                                                                      strict=False))}
    assert backwards == {}
    assert all(changes[0] == Status.SENT and changes[-1] == statuses[pk]
               for pk, changes in history.items())
    # bounces and complaints suppressed their address once
    suppressed = {p for p, path in paths.items() if path[-1] in ("bounced", "complained")}
    addresses = dict(Message.objects.filter(mailing=mailing).values_list("provider_id",
                                                                         "address"))
    assert sorted(Suppression.objects.values_list("address", flat=True)) == sorted(
        addresses[p] for p in suppressed)


def test_one_webhook_call_of_more_receipts_than_one_apply_takes_is_applied_whole(
    client, smtp_peer, worker_env, workers, tmp_path
):
    # given more sent emails than one pass of receipts_apply takes, and a worker
    n = RECEIPTS_PER_APPLY + 300
    mailing = MailingFactory(state=Mailing.State.COMPLETED, gateway=GatewayFactory(
        settings={**smtp_peer.gateway_settings(), "inbound_secret": RECEIPTS_SECRET}))
    Message.objects.bulk_create([
        MessageFactory.build(mailing=mailing, member=m, gateway=mailing.gateway, address=m.email,
                             status=Status.SENT, provider_id=f"<fault.{m.pk}@peer>")
        for m in _members(n)])
    worker = WorkerProcess(env=worker_env, log_dir=tmp_path).start()
    workers.append(worker)

    # when the provider reports every delivery in one call (the webhook takes up to 10,000)
    _receipts_post(client, mailing.gateway, [
        {"provider_id": provider_id, "status": "delivered",
         "occurred_at": timezone.now().isoformat()}
        for provider_id in Message.objects.filter(mailing=mailing)
        .values_list("provider_id", flat=True)])

    # then the worker applies them all, not only the first pass
    def applied() -> bool:
        worker.assert_running()
        return not ProviderReceipt.objects.filter(applied_at__isnull=True).exists()

    wait_until(applied, timeout=30, what="every receipt of the call to be applied")
    assert Counter(_statuses(mailing).values()) == {Status.DELIVERED: n}
