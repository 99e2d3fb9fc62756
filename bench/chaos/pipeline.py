"""The fault scenarios of the sending pipeline: workers killed, tasks redelivered, the broker
restarted, poison members. Each runs a real email mailing through real Celery workers and beat
schedulers (subprocesses) to the SMTP peer, breaks something on the way, waits for the mailing
to end and returns the checker's counts; none asserts anything itself.

The workers get the scenario process's database (whatever DATABASE_URL Django was set up with,
the test database under pytest) and short timings: the sweeper marks claims older than
CLAIM_TIMEOUT_S `unknown`, and the scheduler re-dispatches a sending mailing quiet for
REDISPATCH_AFTER_S, so a run recovers in seconds what production recovers in minutes.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redis
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from bench.chaos.checker import mailing_check, smtp_log_read
from bench.chaos.core import Scenario, result
from bench.mailings import first_members_rules, mailing_create
from bench.workers import ROOT
from communications.models import Mailing, Message, Template
from communications.services import mailing_schedule
from members.models import Member
from members.selectors import marketing_consent_granted
from tests.peers.smtp import SmtpPeer, free_port

# aiosmtpd logs every SMTP command at INFO.
logging.getLogger("mail.log").setLevel(logging.WARNING)

CLAIM_TIMEOUT_S = 8
REDISPATCH_AFTER_S = 2.0
SCHEDULER_TICK_S = 0.5
# A restarted worker takes 2-3 s to import Django and connect; a kill before then kills nothing
# that works.
WORKER_UP_S = 4.0
OPEN_STATUSES = (Message.Status.CREATED, Message.Status.QUEUED, Message.Status.SENDING)
ENDED = (Mailing.State.COMPLETED, Mailing.State.CANCELLED, Mailing.State.FAILED)
DISPATCH_QUEUES = ("dispatch.email",)


def progress(text: str) -> None:
    print(f"chaos: {text}", file=sys.stderr, flush=True)


# --- processes -------------------------------------------------------------------------------

# Processes of each worker (prefork): a kill -9 takes all of them, each holding its batch.
WORKER_CONCURRENCY = 2


def handover_chunk(batch_size: int) -> int:
    return max(1, batch_size // 5)


def celery_env(*, broker_url: str | None = None, batch_size: int) -> dict[str, str]:
    """The environment of the scenario's workers and schedulers: this process's database and
    broker (or `broker_url`), and the short recovery timings."""
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return {
        **os.environ,
        "DATABASE_URL": (f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:"
                         f"{db['PORT'] or 5432}/{db['NAME']}"),
        "CELERY_BROKER_URL": broker_url or settings.CELERY_BROKER_URL,
        "ENGAGE_CLAIM_TIMEOUT": str(CLAIM_TIMEOUT_S),
        "ENGAGE_REDISPATCH_AFTER": str(REDISPATCH_AFTER_S),
        "ENGAGE_SCHEDULER_TICK": str(SCHEDULER_TICK_S),
        "ENGAGE_BATCH_SIZE": str(batch_size),
        # A fifth of a batch, as production's 100 of 500: a kill leaves at most that in doubt.
        "ENGAGE_HANDOVER_CHUNK": str(handover_chunk(batch_size)),
        # Nothing but the mailing under test: the other periodic jobs stay out of its way.
        "ENGAGE_WATCH_REFRESH": "86400", "ENGAGE_ATTRIBUTION_TICK": "86400",
        "ENGAGE_DATE_TRIGGER_TICK": "86400", "ENGAGE_GATEWAY_HEALTH_INTERVAL": "86400",
    }


class CeleryProcess:
    """A `celery worker` or `celery beat` subprocess that can be killed and started again."""

    def __init__(self, kind: str, *, env: dict[str, str], workdir: Path, name: str,
                 app: str = "config", concurrency: int = WORKER_CONCURRENCY) -> None:
        self.name = name
        self.env = env
        self.log_path = workdir / f"{name}.log"
        if kind == "worker":
            self.command = [sys.executable, "-m", "celery", "-A", app, "worker",
                            "--pool=prefork", f"--concurrency={concurrency}",
                            "-n", f"{name}-{os.getpid()}@%h", "--loglevel=WARNING",
                            "--without-mingle", "--without-gossip", "--without-heartbeat"]
        else:
            self.command = [sys.executable, "-m", "celery", "-A", app, "beat",
                            f"--schedule={workdir / (name + '-schedule')}", "--loglevel=WARNING"]
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> CeleryProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command, cwd=ROOT, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT)
        return self

    def tree(self) -> list[psutil.Process]:
        if self.process is None:
            return []
        try:
            main = psutil.Process(self.process.pid)
            return [main, *main.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill9(self) -> None:
        """SIGKILL to the whole tree at once: no warm shutdown, no acknowledgement, no cleanup."""
        for process in self.tree():
            try:
                process.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        if self.process is not None:
            self.process.wait()
        self.kills += 1

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        tree = self.tree()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        for process in tree:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class RedisServer:
    """A private `redis-server` on a free loopback port, nothing saved to disk, so the scenario
    can shut it down and bring it back without touching anyone else's Redis."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=self.port, socket_timeout=1).ping()
                return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def shutdown_nosave(self) -> None:
        try:
            redis.Redis(port=self.port, socket_timeout=2).shutdown(nosave=True)
        except redis.ConnectionError:
            pass  # the server closes the connection as it goes
        if self.process is not None:
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@dataclass
class Fleet:
    """The scenario's workers and schedulers, and the SMTP peer logging what it receives."""

    peer: SmtpPeer
    log_path: Path
    workers: list[CeleryProcess]
    schedulers: list[CeleryProcess]
    broker_url: str


@contextmanager
def fleet(*, workers: int = 1, schedulers: int = 1, batch_size: int, app: str = "config",
          broker_url: str | None = None, drop: set[str] | None = None) -> Iterator[Fleet]:
    workdir = Path(tempfile.mkdtemp(prefix="engage-chaos-"))
    env = celery_env(broker_url=broker_url, batch_size=batch_size)
    broker = env["CELERY_BROKER_URL"]
    queues_flush(broker)
    log_path = workdir / "smtp-peer.jsonl"
    peer = SmtpPeer(log_path=log_path, keep_messages=False, drop=drop).start()
    procs = ([CeleryProcess("worker", env=env, workdir=workdir, name=f"worker{i}", app=app)
              for i in range(workers)]
             + [CeleryProcess("beat", env=env, workdir=workdir, name=f"beat{i}", app=app)
                for i in range(schedulers)])
    with ExitStack() as stack:
        stack.callback(peer.stop)
        for proc in procs:
            proc.start()
            stack.callback(proc.stop)
        yield Fleet(peer=peer, log_path=log_path, workers=procs[:workers],
                    schedulers=procs[workers:], broker_url=broker)
    # The workers' logs and the peer's are kept for a look when the scenario raised.
    shutil.rmtree(workdir, ignore_errors=True)


def queues_flush(broker_url: str) -> None:
    """Tasks left in the broker database by an earlier run are not this run's work."""
    client = redis.Redis.from_url(broker_url)
    try:
        client.flushdb()
    finally:
        client.close()


def queues_left(broker_url: str) -> int:
    """Batch tasks still waiting in the broker (0 once the queue has drained)."""
    client = redis.Redis.from_url(broker_url, socket_timeout=5)
    try:
        return sum(client.llen(queue) for queue in DISPATCH_QUEUES)
    finally:
        client.close()


# --- the mailing -----------------------------------------------------------------------------

def members_ensure(count: int) -> None:
    """At least `count` members reachable by email with marketing consent (demo members are
    appended until there are; a seeded database already has them)."""
    from loyalty.demo import demo_seed

    while True:
        have = (Member.objects.filter(marketing_consent_granted(channel="email"))
                .exclude(email="").count())
        if have >= count:
            return
        progress(f"seeding members: {have} of {count} reachable")
        demo_seed(members=max(100, int((count - have) * 1.6)), orders_per_member=0,
                  seed=random.randrange(2**31))


def mailing_for(name: str, *, count: int, peer: SmtpPeer,
                gateway_settings: dict[str, Any] | None = None) -> Mailing:
    members_ensure(count)
    return mailing_create(name=f"chaos {name}",
                          rules=first_members_rules(count, consenting=True),
                          gateway_settings={**peer.gateway_settings(), "timeout": 10,
                                            **(gateway_settings or {})})


def mailing_begin(mailing: Mailing) -> None:
    """Scheduled for now: the scenario's scheduler starts it at its next tick, so no task is
    published from this process (whose broker may not be the workers')."""
    with transaction.atomic():
        mailing_schedule(mailing=mailing, at=timezone.now())


def mailing_wait(mailing: Mailing, *, timeout: float,
                 during: Callable[[], None] | None = None) -> str:
    """Poll until the mailing has ended (or `timeout`), calling `during` between polls."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = Mailing.objects.filter(pk=mailing.pk).values_list("state", flat=True).get()
        if state in ENDED:
            return state
        if during is not None:
            during()
        time.sleep(0.1)
    progress(f"mailing {mailing.pk} still {state} after {timeout:.0f} s")
    return state


def audience_size(mailing: Mailing) -> int:
    return Message.objects.filter(mailing=mailing, is_test=False).count()


def checked(name: str, size: str, mailing: Mailing, run: Fleet, *, started: float,
            state: str, **extras: Any) -> dict[str, Any]:
    # Batch tasks the scheduler sent while a worker was down find nothing left to claim; they
    # are given a moment to run out before the queue is looked at.
    _drain(run.broker_url, timeout=15)
    counts = mailing_check(mailing_id=mailing.pk, received=smtp_log_read(run.log_path))
    return result(name, size, **counts, state=state, queue_left=queues_left(run.broker_url),
                  seconds=round(time.monotonic() - started, 1), **extras)


# --- the scenarios ---------------------------------------------------------------------------

# Audience, kills, batch size.
WORKER_KILLED_SIZES = {"small": (300, 3, 20), "full": (100_000, 20, 500)}


def worker_killed(size: str) -> dict[str, Any]:
    """`kill -9` the worker (its whole process tree) at random moments of a mailing, starting
    it again each time; the scheduler runs in its own process and keeps sweeping."""
    count, kills, batch = WORKER_KILLED_SIZES[size]
    # A small mailing sends in a second or two; a rate makes the kills land mid-mailing.
    rate = {"rate_per_second": 30} if size == "small" else {}
    started = time.monotonic()
    with fleet(batch_size=batch) as run:
        mailing = mailing_for("worker_killed", count=count, peer=run.peer, gateway_settings=rate)
        mailing_begin(mailing)
        rng = random.Random()
        # Kill points as shares of the audience finished (sent, or in doubt once the sweeper
        # has swept a dead worker's claims), drawn at random: the mailing cannot complete
        # before every point is passed. A point is taken once the restarted worker has been up
        # for WORKER_UP_S, so two kills never fall on one start.
        points = sorted(rng.uniform(0.05, 0.9) for _ in range(kills))
        [worker] = run.workers
        restarted = [time.monotonic()]

        def maybe_kill() -> None:
            if not points or time.monotonic() - restarted[0] < WORKER_UP_S:
                return
            audience = audience_size(mailing)
            open_ = Message.objects.filter(mailing=mailing, is_test=False,
                                           status__in=OPEN_STATUSES).count()
            if audience and audience - open_ >= points[0] * audience:
                points.pop(0)
                time.sleep(rng.uniform(0, 0.5))
                worker.kill9()
                progress(f"worker_killed: kill -9 #{worker.kills} with {open_}/{audience} "
                         f"open, {run.peer.handler.accepted} received")
                worker.start()
                restarted[0] = time.monotonic()

        state = mailing_wait(mailing, timeout=120 if size == "small" else 3600,
                             during=maybe_kill)
        return checked("worker_killed", size, mailing, run, started=started, state=state,
                       kills=worker.kills, handover_chunk=handover_chunk(batch),
                       # Each kill leaves in doubt at most the chunk each process was handing.
                       in_doubt_bound=worker.kills * WORKER_CONCURRENCY * handover_chunk(batch))


def tasks_redelivered(size: str) -> dict[str, Any]:
    """Every batch task published three times (bench/chaos/redelivery.py), with two workers
    and two beat schedulers running at once."""
    count, batch = {"small": (300, 20), "full": (100_000, 500)}[size]
    started = time.monotonic()
    with fleet(workers=2, schedulers=2, batch_size=batch,
               app="bench.chaos.redelivery") as run:
        mailing = mailing_for("tasks_redelivered", count=count, peer=run.peer)
        mailing_begin(mailing)
        state = mailing_wait(mailing, timeout=120 if size == "small" else 3600)
        # The copies of the last batches find nothing left to claim; let them run out.
        _drain(run.broker_url, timeout=30)
        from bench.chaos.redelivery import PUBLISHED_KEY, RUN_KEY

        client = redis.Redis.from_url(run.broker_url)
        try:
            published, ran = (int(client.get(key) or 0) for key in (PUBLISHED_KEY, RUN_KEY))
        finally:
            client.close()
        return checked("tasks_redelivered", size, mailing, run, started=started, state=state,
                       batch_tasks_published=published, batch_tasks_run=ran)


def redis_restart(size: str) -> dict[str, Any]:
    """The broker (a private redis-server, also the rate limits' store) shut down without
    saving at 30% and 70% of the mailing, back after 10 s (2 s at small size)."""
    count, batch, down_s = {"small": (300, 20, 2.0), "full": (100_000, 500, 10.0)}[size]
    rate = {"rate_per_second": 60} if size == "small" else {}
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="engage-chaos-redis-"))
    server = RedisServer(workdir).start()
    try:
        with fleet(batch_size=batch, broker_url=server.url) as run:
            mailing = mailing_for("redis_restart", count=count, peer=run.peer,
                                  gateway_settings=rate)
            mailing_begin(mailing)
            points = [0.3, 0.7]
            outages = []

            def maybe_restart() -> None:
                audience = max(1, audience_size(mailing)) if points else 1
                if points and run.peer.handler.accepted >= points[0] * audience:
                    points.pop(0)
                    progress(f"redis_restart: SHUTDOWN NOSAVE at "
                             f"{run.peer.handler.accepted}/{audience}")
                    server.shutdown_nosave()
                    time.sleep(down_s)
                    server.start()
                    outages.append(run.peer.handler.accepted)

            state = mailing_wait(mailing, timeout=180 if size == "small" else 3600,
                                 during=maybe_restart)
            return checked("redis_restart", size, mailing, run, started=started, state=state,
                           restarts=len(outages))
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# The render of this body costs len(last_name)**3 loop turns: nothing for a real name (a
# 20-letter one is 8,000), over the sandbox's 100,000-operation budget for a 100-letter one.
POISON_BODY = (
    "Dear {{ member.full_name }},\n"
    "{% for a in member.last_name %}{% for b in member.last_name %}"
    "{% for c in member.last_name %}{% endfor %}{% endfor %}{% endfor %}"
    "your points are waiting.\n"
)


def poison_members(size: str) -> dict[str, Any]:
    """Some members' messages fail to render (a last name that blows the template's budget),
    and some have an address at which the SMTP peer drops the connection mid-DATA (the payload
    that kills the session): their siblings are all sent, each poison message is tried a few
    times at most, and the broker's queues drain."""
    # One dropped connection costs the rest of its batch an attempt and a 30 s backoff (60 s
    # for a message caught behind two); a single drop keeps the small run under a minute.
    count, batch, renders, drops = {"small": (200, 20, 3, 1),
                                    "full": (100_000, 500, 50, 20)}[size]
    started = time.monotonic()
    members_ensure(count)
    audience = list(Member.objects.filter(marketing_consent_granted(channel="email"))
                    .exclude(email="").order_by("created_at", "pk")
                    .values_list("pk", "last_name", "email")[:count])
    chosen = random.Random().sample(audience, renders + drops)
    render_poison, drop_poison = chosen[:renders], chosen[renders:]
    drop_addresses = {f"drop-{pk}@poison.example.com" for pk, _, _ in drop_poison}
    try:
        _members_set(render_poison, "last_name", lambda pk, value: "Q" * 100)
        _members_set(drop_poison, "email", lambda pk, value: f"drop-{pk}@poison.example.com")
        with fleet(batch_size=batch, drop=drop_addresses) as run:
            mailing = mailing_for("poison_members", count=count, peer=run.peer)
            template, _ = Template.objects.update_or_create(
                name="chaos poison", defaults={"channel": "email", "language": "en",
                                               "subject": "Points for {{ member.first_name }}",
                                               "body": POISON_BODY, "html_body": ""})
            Mailing.objects.filter(pk=mailing.pk).update(template=template)
            mailing.refresh_from_db()
            mailing_begin(mailing)
            state = mailing_wait(mailing, timeout=150 if size == "small" else 3600)
            poison_ids = [pk for pk, _, _ in chosen]
            poison = list(Message.objects.filter(mailing=mailing, member_id__in=poison_ids)
                          .values_list("status", "attempts"))
            siblings_unsent = (Message.objects.filter(mailing=mailing, is_test=False)
                               .exclude(member_id__in=poison_ids)
                               .exclude(status__in=[Message.Status.SENT,
                                                    Message.Status.SKIPPED]).count())
            return checked(
                "poison_members", size, mailing, run, started=started, state=state,
                poison=len(poison), poison_attempts_max=max((a for _, a in poison), default=0),
                poison_sent=sum(1 for s, _ in poison if s == Message.Status.SENT),
                siblings_unsent=siblings_unsent, peer_dropped=run.peer.handler.dropped)
    finally:
        _members_set(render_poison, "last_name", lambda pk, value: value, original=1)
        _members_set(drop_poison, "email", lambda pk, value: value, original=2)


def _members_set(rows: list[tuple[Any, ...]], field: str, value: Callable[[int, str], str],
                 *, original: int | None = None) -> None:
    """Poison (or, with `original`, restore) a field of a few bench members: one bulk write.
    The bench database is the suite's own; this is data setup, not a change of a member."""
    members = [Member(pk=row[0], **{field: value(row[0], row[original] if original else "")})
               for row in rows]
    Member.objects.bulk_update(members, [field])


def _drain(broker_url: str, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and queues_left(broker_url):
        time.sleep(0.2)


SCENARIOS = [
    Scenario("worker_killed", worker_killed),
    Scenario("tasks_redelivered", tasks_redelivered),
    Scenario("redis_restart", redis_restart),
    Scenario("poison_members", poison_members),
]
