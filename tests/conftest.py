from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection

from communications.ratelimit import REDIS_KEY_PREFIX, ratelimit_redis
from config.celery import app as celery_app
from tests.peers.smtp import SmtpPeer

# A staff user per role, signed in to the admin or the API (admin_as, api_as), for any test.
pytest_plugins = ["tests.roles_support"]

ROOT = Path(__file__).resolve().parent.parent
# aiosmtpd logs every SMTP command at INFO; keep failure output readable.
logging.getLogger("mail.log").setLevel(logging.WARNING)


@pytest.fixture(autouse=True)
def gateway_circuits_closed() -> None:
    """Circuits live in Redis, keyed by gateway id; ids repeat from one test database to the
    next, so a circuit an earlier run opened must not leave a gateway of this test open."""
    client = ratelimit_redis()
    if client is not None:
        stale = list(client.scan_iter(f"{REDIS_KEY_PREFIX}circuit:*", count=1000))
        if stale:
            client.delete(*stale)


@pytest.fixture
def marketer(django_user_model):
    return django_user_model.objects.create_user(
        username="marketer", password="a-long-test-password", is_staff=True, is_superuser=True
    )


@pytest.fixture
def marketer_client(client, marketer):
    client.force_login(marketer)
    return client


@pytest.fixture
def smtp_peer() -> Iterator[SmtpPeer]:
    peer = SmtpPeer().start()
    yield peer
    peer.stop()


def wait_until(predicate: Callable[[], bool], *, timeout: float = 30, interval: float = 0.2,
               what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def celery_worker_process(transactional_db, tmp_path, settings) -> Iterator[subprocess.Popen]:
    """A real `celery worker --beat` process on Redis, reading and writing the test database."""
    celery_app.control.purge()
    db = connection.settings_dict
    # Small batches, and every mailing's audience frozen in several parts, as a large one is.
    # The test's own process (the live server, the API client) takes the same sizes, as a web
    # process and its workers do: it counts the batch tasks it enqueues by ENGAGE_BATCH_SIZE.
    shared = {"ENGAGE_BATCH_SIZE": 2, "ENGAGE_AUDIENCE_PART_SIZE": 2}
    for name, value in shared.items():
        setattr(settings, name, value)
    env = {
        **os.environ,
        "DEBUG": "1",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CONN_MAX_AGE": "0",
        "ENGAGE_SCHEDULER_TICK": "0.5",
        "ENGAGE_VAR_DIR": str(tmp_path),
        **{name: str(value) for name, value in shared.items()},
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--beat", "--pool=solo",
         "--loglevel=INFO", f"--schedule={tmp_path / 'beat-schedule'}", "--without-mingle",
         "--without-gossip"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    yield process
    process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    # Kept with the test's tmp_path (pytest keeps the last three runs' under its basetemp), so
    # the worker's side of a failed pipeline test can be read after the run.
    (tmp_path / "celery-worker.log").write_text(output)
    if "Traceback" in output:
        print(output)  # shown by pytest when the test fails


@pytest.fixture
def browser_page(monkeypatch):
    """A page in Debian's Chromium driven by Playwright, for tests marked `browser`.

    Skips only when /usr/bin/chromium is missing (`make test` installs it when run as root).
    """
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip(f"{chromium} is missing: apt-get install chromium "
                    "(make test installs it when run as root)")
    from django.db import connections
    from playwright.sync_api import sync_playwright

    # Playwright's sync API leaves its event loop marked as running in this thread, so Django
    # would refuse the test's own ORM calls (they never run while the loop does), and keeps
    # the connections they open in that loop's context: they are closed before it ends, or
    # they would outlive the test and keep the test database from being dropped.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium))
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()
            connections.close_all()


# --- the member side ---------------------------------------------------------------------------

@pytest.fixture
def member_api_client():
    """`member_api_client(member)`: an APIClient acting for the member with an app token, as
    the mobile app does after sign-in."""
    from rest_framework.test import APIClient

    from members.services.sign_in import member_token_issue

    def make(member) -> APIClient:
        _, raw = member_token_issue(member=member, name="test device")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        return client

    return make


@pytest.fixture
def account_client():
    """`account_client(member)`: a Django test client signed in to the member's account pages."""
    from django.test import Client

    from members.authentication import SESSION_KEY

    def make(member) -> Client:
        client = Client()
        session = client.session
        session[SESSION_KEY] = member.pk
        session.save()
        return client

    return make


SCREENSHOTS = Path(__file__).resolve().parent.parent / "var" / "test-artifacts" / "screenshots"


def screenshot(page, name: str) -> Path:
    """Keep a full-page screenshot of a browser test as an artifact (var/test-artifacts/)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def account_sign_in(page, live_server_url: str, member) -> None:
    """Sign the browser in to the member's account pages, as the member would: ask for a code,
    read it from the message Engage recorded, type it."""
    import re

    from communications.models import Message

    page.goto(f"{live_server_url}/account/sign-in/")
    page.get_by_label("Email or phone number").fill(member.email)
    page.get_by_role("button", name="Send me a code").click()
    page.wait_for_url("**/account/sign-in/code/")
    message = Message.objects.filter(member=member, content__kind="sign_in_code").latest("pk")
    code = re.search(r"\b(\d{6})\b", message.content["body"]).group(1)
    page.get_by_label("Code", exact=True).fill(code)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server_url}/account/")
