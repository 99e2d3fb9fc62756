"""Staff login lockout (django-axes, config/staff_auth.py): a username and address that keep
failing are locked out with 429 and Retry-After, whatever password comes next."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.db.models import F
from django.urls import reverse

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-test-password"
ADDRESS = "198.51.100.7"


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user(username="marketer", password=PASSWORD,
                                                 is_staff=True)


def _log_in(client, password: str, address: str = ADDRESS, username: str = "marketer"):
    return client.post(reverse("admin:login"), {"username": username, "password": password,
                                                "next": reverse("admin:index")},
                       REMOTE_ADDR=address)


def _fail(client, times: int, address: str = ADDRESS) -> list[int]:
    return [_log_in(client, "wrong-password", address).status_code for _ in range(times)]


def test_the_fifth_failure_in_a_row_answers_429_with_retry_after(client, staff):
    statuses = _fail(client, 5)

    assert statuses == [200, 200, 200, 200, 429]
    reply = _log_in(client, "wrong-password")
    assert reply.status_code == 429
    assert reply["Retry-After"] == str(15 * 60)


def test_the_lockout_page_says_when_to_try_again(client, staff):
    _fail(client, 5)

    page = _log_in(client, "wrong-password")

    assert "Try again in 15 minutes" in page.content.decode()


def test_a_locked_out_user_is_refused_even_with_the_right_password(client, staff):
    _fail(client, 5)

    reply = _log_in(client, PASSWORD)

    assert reply.status_code == 429
    assert "_auth_user_id" not in client.session


def test_the_lockout_holds_one_username_from_one_address(client, staff):
    _fail(client, 5)

    reply = _log_in(client, PASSWORD, address="198.51.100.8")

    assert reply.status_code == 302 and reply["Location"] == reverse("admin:index")


def test_a_successful_login_clears_the_failures(client, staff):
    _fail(client, 4)
    assert _log_in(client, PASSWORD).status_code == 302
    client.logout()

    statuses = _fail(client, 4)

    assert statuses == [200, 200, 200, 200]


def test_the_lock_lifts_once_the_cool_off_has_passed_since_the_last_failure(client, staff):
    _fail(client, 5)
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=15,
                                                                             seconds=1))

    reply = _log_in(client, PASSWORD)

    assert reply.status_code == 302


def test_the_attempt_limit_follows_the_setting(client, staff, settings):
    settings.AXES_FAILURE_LIMIT = 2

    assert _fail(client, 2) == [200, 429]


def test_a_locked_out_staff_user_keeps_a_session_they_already_had(client, staff):
    other = type(client)()
    other.force_login(staff)
    _fail(client, 5)

    assert other.get(reverse("admin:index")).status_code == 200


def _basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"marketer:{password}".encode()).decode()


def test_the_api_basic_authentication_locks_out_as_the_login_does(client, staff):
    for _ in range(5):
        client.get("/api/v1/members/", HTTP_AUTHORIZATION=_basic("wrong"), REMOTE_ADDR=ADDRESS)

    reply = client.get("/api/v1/members/", HTTP_AUTHORIZATION=_basic(PASSWORD),
                       REMOTE_ADDR=ADDRESS)

    assert reply.status_code == 429 and reply.json()["code"] == "too_many_attempts"
    assert reply["Retry-After"] == str(15 * 60)


def test_the_api_basic_authentication_still_signs_staff_in(client, staff):
    staff.is_superuser = True
    staff.save()

    reply = client.get("/api/v1/members/", HTTP_AUTHORIZATION=_basic(PASSWORD))

    assert reply.status_code == 200
