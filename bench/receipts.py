"""receipts_ingest: delivery receipts posted in signed batches to the real app under gunicorn,
acknowledged at once, and applied to their messages by real Celery workers.

The messages the receipts are about are written straight into the message table as sent
(one INSERT ... SELECT): how they were sent is the dispatch scenarios' business, and only
their (gateway, provider id) matters here.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.db import connection
from django.db.models import Count, Max
from django.utils import timezone

from bench.database import broker_flush, table_truncate
from bench.mailings import mailings_clear
from bench.options import Options
from bench.results import Measured, median_of
from bench.workers import ROOT, CeleryWorkers
from communications.models import (
    Gateway,
    Mailing,
    Message,
    MessageStatusChange,
    ProviderReceipt,
)
from communications.webhooks import SIGNATURE_HEADER, webhook_signature
from members.models import Member

# As many clients as gunicorn workers: a fourth client's call waited for a free worker, and
# the p99 of 500-receipt calls went from about 150 to 500 ms. A 500-receipt call costs the app
# about 17 ms in-process; its INSERT of the receipts took 18 ms of CPU as a bulk_create and 9 ms
# as one unnest statement, which took the ack p99 here from 333 to about 130 ms.
RECEIPTS_PER_CALL = 500
CLIENTS = 3
# The sustained rate issue 5 asks for; one more run posts at it to read the ack there.
TARGET_EVENTS_PER_S = 5000
GUNICORN_WORKERS = 3
CELERY_CONCURRENCY = 2
SECRET = "bench-inbound-secret-0123456789abcdef"
WHAT = ("{n} `delivered` receipts for sent messages, posted as signed JSON batches of "
        "{per_call} by {clients} concurrent clients to hooks/gateways/<id>/receipts of the app "
        "under gunicorn ({gunicorn} sync workers, loopback) and applied by celery prefork "
        "x{celery} (apply_receipts). value: receipts / (last applied_at - first post); "
        "ack_ms: the webhook's answer (202) as the clients saw it, posting as fast as they are "
        "answered; at_target_rate: one more run posting on a schedule of 5,000 receipts/s; "
        "every message checked `delivered` with one status change each")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Gunicorn:
    """`gunicorn config.wsgi` on loopback with the bench environment, for a `with` block."""

    host = "127.0.0.1"

    def __init__(self, *, workers: int = GUNICORN_WORKERS) -> None:
        self.port = _free_port()
        self.log_path = Path(tempfile.gettempdir()) / f"engage-bench-gunicorn-{os.getpid()}.log"
        self._command = [
            sys.executable, "-m", "gunicorn", "config.wsgi:application",
            "--bind", f"{self.host}:{self.port}", "--workers", str(workers),
            "--worker-class", "sync", "--log-level", "warning", "--backlog", "256",
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Gunicorn:
        log = self.log_path.open("ab")
        env = {**os.environ, "ALLOWED_HOSTS": self.host}
        self.process = subprocess.Popen(self._command, cwd=ROOT, env=env, stdout=log,
                                        stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited at start:\n{self.log_tail()}")
            try:
                status, _ = _request(self.host, self.port, "GET", "/healthz", b"", {})
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"gunicorn did not answer /healthz in 60 s:\n{self.log_tail()}")

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no gunicorn log)"


def _request(host: str, port: int, method: str, path: str, body: bytes,
             headers: dict[str, str]) -> tuple[int, bytes]:
    # As behind the TLS-terminating proxy of a production setup (DEBUG off redirects to https).
    client = http.client.HTTPConnection(host, port, timeout=60)
    try:
        client.request(method, path, body=body or None,
                       headers={"X-Forwarded-Proto": "https", **headers})
        reply = client.getresponse()
        return reply.status, reply.read()
    finally:
        client.close()


def receipts_gateway() -> Gateway:
    """The gateway the receipts are for, with the secret they are signed with."""
    gateway, _ = Gateway.objects.update_or_create(name="bench receipts", defaults={
        "channel": "push", "provider": "fcm", "is_active": True,
        "settings": {"project_id": "engage-bench", "inbound_secret": SECRET}})
    return gateway


def sent_messages_create(*, count: int) -> tuple[Gateway, list[str]]:
    """A completed mailing of `count` messages sent through a gateway that takes signed
    receipts; returns the gateway and the messages' provider ids."""
    gateway = receipts_gateway()
    ids = list(Member.objects.order_by("pk").values_list("pk", flat=True)[:count])
    if len(ids) < count:
        raise RuntimeError(f"only {len(ids)} members for {count} receipts: seed more")
    now = timezone.now()
    mailing = Mailing.objects.create(name="bench receipts_ingest", gateway=gateway,
                                     state=Mailing.State.COMPLETED, started_at=now,
                                     completed_at=now)
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {qn(Message._meta.db_table)} (mailing_id, member_id, channel, address, "
            f"status, skip_reason, attempts, gateway_id, provider_id, error_code, error, "
            f"created_at, claimed_at, sent_at, updated_at) "
            f"SELECT %s, id, 'push', 'bench-token-' || id, %s, '', 1, %s, "
            f"'projects/engage-bench/messages/' || id, '', '', %s, %s, %s, %s "
            f"FROM unnest(%s::bigint[]) AS id",
            [mailing.pk, Message.Status.SENT, gateway.pk, now, now, now, now, ids])
    return gateway, [f"projects/engage-bench/messages/{member_id}" for member_id in ids]


def receipt_bodies(provider_ids: list[str], *, per_call: int) -> list[bytes]:
    """The JSON bodies a provider would post: `per_call` delivery receipts each."""
    occurred_at = datetime.now(UTC).isoformat()
    return [json.dumps({"receipts": [
        {"provider_id": provider_id, "status": "delivered", "occurred_at": occurred_at,
         "code": "DELIVERED"} for provider_id in provider_ids[start:start + per_call]]}).encode()
        for start in range(0, len(provider_ids), per_call)]


def webhook_warm(*, host: str, port: int, workers: int) -> None:
    """Signed calls with no receipt in them (answered 400, nothing stored), several per
    gunicorn worker from as many clients, so that no measured call is a worker's first (its
    database connection, URLconf and view loaded on the way: 100 ms and more)."""
    body = json.dumps({"receipts": []}).encode()
    path = f"/hooks/gateways/{receipts_gateway().pk}/receipts"
    headers = {"Content-Type": "application/json",
               SIGNATURE_HEADER: webhook_signature(secret=SECRET, body=body)}

    def client() -> None:
        for _ in range(4):
            status, reply = _request(host, port, "POST", path, body, headers)
            if status != 400:
                raise RuntimeError(f"the receipts webhook answered {status} {reply[:300]!r}")

    threads = [threading.Thread(target=client) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def receipts_post(*, host: str, port: int, gateway_id: int, bodies: list[bytes],
                  clients: int, calls_per_s: float | None = None) -> list[float]:
    """Post every body, signed, from `clients` threads at once; the seconds each call took to
    be answered. Raises on any answer but 202.

    With `calls_per_s` the calls go out on a fixed schedule (call i at i / calls_per_s), as a
    provider sending at that rate would, instead of as fast as they are answered."""
    path = f"/hooks/gateways/{gateway_id}/receipts"
    pending: queue.SimpleQueue[tuple[int, bytes]] = queue.SimpleQueue()
    for index, body in enumerate(bodies):
        pending.put((index, body))
    schedule_start = time.perf_counter()
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        while not failures:
            try:
                index, body = pending.get_nowait()
            except queue.Empty:
                return
            if calls_per_s is not None:
                time.sleep(max(0.0, schedule_start + index / calls_per_s - time.perf_counter()))
            headers = {"Content-Type": "application/json",
                       SIGNATURE_HEADER: webhook_signature(secret=SECRET, body=body)}
            start = time.perf_counter()
            status, reply = _request(host, port, "POST", path, body, headers)
            took = time.perf_counter() - start
            with lock:
                if status != 202:
                    failures.append(f"{status} {reply[:300]!r}")
                latencies.append(took)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"the receipts webhook answered {failures[0]}")
    return latencies


def _receipts_tables_clear() -> None:
    mailings_clear()
    table_truncate(ProviderReceipt)
    table_truncate(MessageStatusChange)


def receipts_until_applied(*, expected: int, timeout: float) -> datetime:
    """Wait until `expected` receipts are applied; when the last one was."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        applied = ProviderReceipt.objects.filter(applied_at__isnull=False).aggregate(
            n=Count("pk"), last=Max("applied_at"))
        if applied["n"] >= expected:
            return applied["last"]
        time.sleep(0.05)
    raise RuntimeError(f"{applied['n']} of {expected} receipts applied after {timeout:.0f} s")


def receipts_run(*, count: int, host: str, port: int, per_call: int = RECEIPTS_PER_CALL,
                 clients: int = CLIENTS, events_per_s: float | None = None) -> dict[str, Any]:
    """One run: fresh sent messages, every receipt posted, then applied; raises unless every
    message ended `delivered` with exactly one recorded change."""
    _receipts_tables_clear()
    broker_flush()
    gateway, provider_ids = sent_messages_create(count=count)
    bodies = receipt_bodies(provider_ids, per_call=per_call)
    started = timezone.now()
    ack_start = time.perf_counter()
    latencies = receipts_post(host=host, port=port, gateway_id=gateway.pk, bodies=bodies,
                              clients=clients,
                              calls_per_s=events_per_s / per_call if events_per_s else None)
    acked_s = time.perf_counter() - ack_start
    last_applied = receipts_until_applied(expected=count, timeout=60 + count / 200)
    delivered = Message.objects.filter(status=Message.Status.DELIVERED).count()
    changes = MessageStatusChange.objects.filter(source=MessageStatusChange.Source.RECEIPT,
                                                 status=Message.Status.DELIVERED).count()
    if delivered != count or changes != count:
        raise RuntimeError(f"{delivered} messages delivered and {changes} changes recorded "
                           f"for {count} receipts")
    return {"events": count, "seconds": (last_applied - started).total_seconds(),
            "acked_s": acked_s, "latencies": latencies}


def _percentile(values: list[float], share: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(share * 100) - 1]


def receipts_ingest(options: Options) -> Measured:
    """Status events/s from the first webhook call until the last receipt is applied, for
    `--messages` receipts; ack p50/p99 over every call of every run in `extra`."""
    runs: list[dict[str, Any]] = []

    def measure() -> float:
        run = receipts_run(count=options.messages, host=server.host, port=server.port)
        runs.append(run)
        return run["events"] / run["seconds"]

    with Gunicorn() as server, CeleryWorkers(concurrency=CELERY_CONCURRENCY) as workers:
        webhook_warm(host=server.host, port=server.port, workers=GUNICORN_WORKERS)
        try:
            value, per_run = median_of(options.runs, measure)
            # The ack at the rate the issue asks to sustain, beside the ack at full speed.
            paced = receipts_run(count=options.messages, host=server.host, port=server.port,
                                 events_per_s=TARGET_EVENTS_PER_S)
        finally:
            _receipts_tables_clear()
            broker_flush()
        if "Traceback" in workers.log_tail():
            raise RuntimeError(f"the worker failed:\n{workers.log_tail()}")
        if "Traceback" in server.log_tail():
            raise RuntimeError(f"gunicorn failed:\n{server.log_tail()}")
    latencies = [took for run in runs for took in run["latencies"]]
    return Measured(options.messages, value, options.runs, {
        "what": WHAT.format(n=options.messages, per_call=RECEIPTS_PER_CALL, clients=CLIENTS,
                            gunicorn=GUNICORN_WORKERS, celery=CELERY_CONCURRENCY),
        "per_run": per_run,
        "ack_p50_ms": round(_percentile(latencies, 0.50) * 1000, 1),
        "ack_p99_ms": round(_percentile(latencies, 0.99) * 1000, 1),
        "ack_target_p99_ms": 100,
        "calls": len(latencies),
        "acked_per_s": [round(run["events"] / run["acked_s"], 1) for run in runs],
        "at_target_rate": {
            "events_per_s": TARGET_EVENTS_PER_S,
            "ack_p50_ms": round(_percentile(paced["latencies"], 0.50) * 1000, 1),
            "ack_p99_ms": round(_percentile(paced["latencies"], 0.99) * 1000, 1),
            "calls": len(paced["latencies"]),
        },
    })
