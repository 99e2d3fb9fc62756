"""Scenario 4, db_outage: the member API under load from threaded clients against gunicorn
while every PostgreSQL backend of this database (never another database's) is terminated again
and again, then the server is restarted in immediate mode (as after a crash); every answer is
counted by status.

The restart is real at full size when the server is a local Debian cluster this process may
restart (`pg_ctlcluster … restart -m immediate`, as root); the line says which
(`restart`: "server"). Otherwise, and always at small size (where `make test`'s own connection
shares the server), every backend of this database is terminated at once instead ("backends").
A CHECKPOINT before the load keeps the crash recovery to the scenario's own writes, not to
whatever a seed wrote before it.

Promise: 503 while the database is away, never a 500, and 200 again within 10 s of the
restart being asked for.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

from django.db import connection

from bench.chaos.core import Scenario, result
from bench.chaos.edges_seed import members_create, run_tag
from bench.chaos.edges_worker import database_url
from bench.member_api import Gunicorn, bench_token, member_tokens_ensure

NAME = "db_outage"
SIZES = {"small": {"every_s": 1.0, "for_s": 5.0, "restart_server": False},
         "full": {"every_s": 5.0, "for_s": 60.0, "restart_server": True}}
CLIENTS = 6
RECOVERY_LIMIT_S = 10.0
PATHS = ("/api/v1/me/home/", "/api/v1/me/messages/")


def backends_terminate() -> int:
    """Terminate every other backend connected to this database; how many."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        return cursor.fetchone()[0]


def local_cluster() -> tuple[str, str] | None:
    """(version, cluster) of the Debian PostgreSQL cluster serving this connection, when it is
    on this machine and may be restarted from here; None otherwise."""
    host = connection.settings_dict.get("HOST") or "127.0.0.1"
    if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("/"):
        return None
    if shutil.which("pg_ctlcluster") is None or os.geteuid() != 0:
        return None
    with connection.cursor() as cursor:
        cursor.execute("SHOW data_directory")
        data_directory = cursor.fetchone()[0]
    found = re.fullmatch(r"/var/lib/postgresql/([^/]+)/([^/]+)/?", data_directory)
    return (found.group(1), found.group(2)) if found else None


def server_restart(cluster: tuple[str, str]) -> None:
    """An immediate-mode restart: the server stops without a checkpoint, as if it crashed,
    and starts with crash recovery."""
    version, name = cluster
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "restart",
                    "-m", "immediate"], check=True, capture_output=True, timeout=120)


class _Load:
    """Clients calling the member API in a loop; answers by status, with their times."""

    def __init__(self, url: str, member_ids: list[int]) -> None:
        self.url = url
        self.member_ids = member_ids
        self.answers: list[tuple[float, int]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def client(self, n: int) -> None:
        calls = 0
        while not self.stop.is_set():
            member_id = self.member_ids[(n + calls) % len(self.member_ids)]
            request = urllib.request.Request(
                self.url + PATHS[calls % len(PATHS)],
                headers={"Authorization": f"Bearer {bench_token(member_id)}"})
            calls += 1
            try:
                with urllib.request.urlopen(request, timeout=15) as reply:  # noqa: S310
                    reply.read()
                    status = reply.status
            except urllib.error.HTTPError as error:
                status = error.code
            except OSError:
                status = 0  # no answer at all (connection refused or reset)
            with self.lock:
                self.answers.append((time.monotonic(), status))

    def run(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.client, args=(n,)) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        return threads


def db_outage(size: str) -> dict[str, Any]:
    plan = SIZES[size]
    tag = run_tag("db")
    member_ids = members_create(tag=tag, count=50)
    ids = set(member_tokens_ensure(10_000_000))
    member_ids = [pk for pk in member_ids if pk in ids]
    cluster = local_cluster() if plan["restart_server"] else None
    if cluster is not None:
        with connection.cursor() as cursor:
            cursor.execute("CHECKPOINT")
    previous_url = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = database_url()
    terminated = 0
    restart_s = None
    try:
        with Gunicorn(workers=2) as server:
            load = _Load(server.url, member_ids)
            threads = load.run()
            time.sleep(1.0)
            outage_start = time.monotonic()
            while time.monotonic() - outage_start < plan["for_s"]:
                terminated += backends_terminate()
                time.sleep(plan["every_s"])
            outage_end = time.monotonic()
            if cluster is not None:
                server_restart(cluster)
                restart_s = round(time.monotonic() - outage_end, 2)
                connection.close()  # this process's own connection died with the server
            else:
                # As a restart would leave it: every connection gone at once.
                terminated += backends_terminate()
            time.sleep(RECOVERY_LIMIT_S)
            load.stop.set()
            for thread in threads:
                thread.join()
            log = server.log_tail()
    finally:
        if previous_url is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = previous_url
    statuses = Counter(status for _, status in load.answers)
    after = [(at, status) for at, status in load.answers if at >= outage_end]
    # Recovered at the first 200 after which nothing but 200s came.
    failing = [index for index, (_, status) in enumerate(after) if status != 200]
    first_good = failing[-1] + 1 if failing else 0
    recovery_s = (round(after[first_good][0] - outage_end, 2) if first_good < len(after)
                  else None)
    return result(
        NAME, size, audience=len(load.answers), sent=statuses.get(200, 0),
        failed=statuses.get(500, 0), n_500=statuses.get(500, 0), n_503=statuses.get(503, 0),
        no_answer=statuses.get(0, 0), recovery_s=recovery_s, backends_terminated=terminated,
        restart="server" if cluster is not None else "backends", restart_s=restart_s,
        answers={str(status): count for status, count in sorted(statuses.items())},
        gunicorn_tracebacks=log.count("Traceback"))


SCENARIOS = [Scenario(NAME, db_outage)]
