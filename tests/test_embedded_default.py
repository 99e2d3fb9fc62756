"""The embedded default of `make run`: SQLite + kombu's filesystem queue + a real worker.

The web server and the worker write to one SQLite file at the same time; WAL, the busy timeout
and IMMEDIATE transactions must keep both going without "database is locked".
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, wait_until

pytestmark = pytest.mark.slow

SETUP = """
from django.utils import timezone
from members.models import Consent, Member
from campaigns.models import TargetGroup
from communications.models import Gateway, Mailing, Template
from communications.services import mailing_schedule
members = Member.objects.bulk_create(
    Member(external_id=f"E{i}", first_name="Eve", email=f"e{i}@example.com") for i in range(120))
Consent.objects.bulk_create(
    Consent(member=m, channel="email", state="granted", source="import",
            recorded_at=timezone.now()) for m in members)
mailing = Mailing.objects.create(
    name="embedded",
    target_group=TargetGroup.objects.create(
        name="Eves", rules=[{"field": "first_name", "op": "eq", "value": "Eve"}]),
    template=Template.objects.create(
        name="t", channel="email", subject="Hi {{ member.first_name }}",
        body="Hello {{ member.external_id }}"),
    gateway=Gateway.objects.create(name="sink", channel="email", provider="file_sink"))
mailing_schedule(mailing=mailing)
"""

# What the web server does meanwhile: many small write transactions of its own.
WEB_WRITES = """
from django.utils import timezone
from members.models import Consent, Member
for i in range(150):
    member = Member.objects.create(external_id=f"W{i}", email=f"w{i}@example.com")
    Consent.objects.create(member=member, channel="email", state="granted", source="support",
                           recorded_at=timezone.now())
print("web writes done")
"""


def _env(var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    return {**env, "DEBUG": "1", "ENGAGE_VAR_DIR": str(var_dir),
            "ENGAGE_SCHEDULER_TICK": "0.5", "ENGAGE_BATCH_SIZE": "10"}


def _manage(var_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=_env(var_dir),
                          capture_output=True, text=True, timeout=120)


def _mailing_state(database: Path) -> str:
    with sqlite3.connect(database, timeout=30) as db:
        return db.execute("SELECT state FROM communications_mailing").fetchone()[0]


def test_worker_and_web_write_to_sqlite_together_and_the_mailing_completes(tmp_path):
    # given: a migrated SQLite database with a due mailing to 120 consenting members
    assert _manage(tmp_path, "migrate", "-v0").returncode == 0
    setup = _manage(tmp_path, "shell", "-c", SETUP)
    assert setup.returncode == 0, setup.stderr

    # when: a two-process worker with its scheduler sends while the "web" writes
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--beat",
         "--concurrency=2", "--loglevel=WARNING", f"--schedule={tmp_path / 'beat'}"],
        cwd=ROOT, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )
    web = subprocess.Popen(
        [sys.executable, "manage.py", "shell", "-c", WEB_WRITES], cwd=ROOT, env=_env(tmp_path),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_until(lambda: _mailing_state(tmp_path / "engage.sqlite3") == "completed",
                   timeout=90, what="the mailing to complete on SQLite")
        web_out, web_err = web.communicate(timeout=90)
    finally:
        worker.send_signal(signal.SIGTERM)
        log, _ = worker.communicate(timeout=30)

    # then
    assert web.returncode == 0, web_err
    assert "web writes done" in web_out
    assert "database is locked" not in log
    with sqlite3.connect(tmp_path / "engage.sqlite3") as db:
        statuses = dict(db.execute(
            "SELECT status, COUNT(*) FROM communications_message GROUP BY status").fetchall())
    assert statuses == {"sent": 120}
    assert len(list((tmp_path / "sent-mail").glob("gateway-*/*.eml"))) == 120


def test_member_import_and_export_work_on_sqlite(tmp_path):
    # given: the embedded database and a small CSV with members and their consents
    assert _manage(tmp_path, "migrate", "-v0").returncode == 0
    source = tmp_path / "members.csv"
    source.write_text(
        "external_id,first_name,email,phone,consent.email,consent.sms\n"
        "S1,Ana,Ana@Example.com,+4915123456789,granted,withdrawn\n"
        "S2,Ben,ben@example.com,,granted,\n",
        encoding="utf-8",
    )

    # when
    imported = _manage(tmp_path, "import_members", str(source))
    exported = _manage(tmp_path, "export_members")

    # then: the rows are in, normalized, with their ledger, and come back out
    assert imported.returncode == 0, imported.stderr
    with sqlite3.connect(tmp_path / "engage.sqlite3") as db:
        members = db.execute(
            "SELECT external_id, email FROM members_member ORDER BY external_id").fetchall()
        events = db.execute("SELECT COUNT(*) FROM members_consentevent").fetchone()[0]
    assert members == [("S1", "ana@example.com"), ("S2", "ben@example.com")]
    assert events == 3
    assert exported.returncode == 0, exported.stderr
    assert "S1,Ana," in exported.stdout and "ana@example.com" in exported.stdout
