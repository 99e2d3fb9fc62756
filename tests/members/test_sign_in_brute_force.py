"""Guessing a member's sign-in code: every refusal for a limit is 429 with Retry-After, on the
member API and on the account pages alike."""

from __future__ import annotations

import re

import pytest
from rest_framework.test import APIClient

from communications.models import Message
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db

SIGN_IN = "/api/v1/me/sign-in/"
VERIFY = "/api/v1/me/sign-in/verify/"


@pytest.fixture
def ann():
    return MemberFactory(email="ann@example.com", first_name="Ann", language="en")


def _wrong_code_for(member) -> str:
    message = Message.objects.filter(member=member, content__kind="sign_in_code").latest("pk")
    code = re.search(r"\b(\d{6})\b", message.content["body"]).group(1)
    return "000000" if code != "000000" else "111111"


def test_the_api_answers_429_with_retry_after_once_a_codes_tries_are_spent(ann):
    api = APIClient()
    api.post(SIGN_IN, {"address": "ann@example.com"}, format="json")
    wrong = _wrong_code_for(ann)
    for _ in range(5):
        api.post(VERIFY, {"address": "ann@example.com", "code": wrong}, format="json")

    reply = api.post(VERIFY, {"address": "ann@example.com", "code": wrong}, format="json")

    assert reply.status_code == 429 and reply.json()["code"] == "too_many_attempts"
    # A new code may be asked for at once: the address has used one of its five.
    assert int(reply["Retry-After"]) == 1


def test_the_api_retry_after_waits_for_the_address_when_its_codes_are_used_up(ann, settings):
    settings.ENGAGE_SIGN_IN_CODES_PER_ADDRESS = 1
    api = APIClient()
    api.post(SIGN_IN, {"address": "ann@example.com"}, format="json")
    wrong = _wrong_code_for(ann)
    for _ in range(5):
        api.post(VERIFY, {"address": "ann@example.com", "code": wrong}, format="json")

    reply = api.post(VERIFY, {"address": "ann@example.com", "code": wrong}, format="json")

    assert reply.status_code == 429
    assert 3500 < int(reply["Retry-After"]) <= 3600


def test_the_account_code_page_answers_429_with_retry_after_after_too_many_wrong_codes(
        client, ann):
    client.post("/account/sign-in/", {"address": "ann@example.com"})
    wrong = _wrong_code_for(ann)
    for _ in range(5):
        assert client.post("/account/sign-in/code/", {"code": wrong}).status_code == 400

    page = client.post("/account/sign-in/code/", {"code": wrong})

    assert page.status_code == 429
    assert int(page["Retry-After"]) >= 1
    assert "Too many wrong codes" in page.content.decode()


def test_the_account_code_page_answers_429_when_one_address_guesses_across_codes(
        client, ann, settings):
    settings.ENGAGE_SIGN_IN_FAILURES_PER_IP = 3
    client.post("/account/sign-in/", {"address": "ann@example.com"})
    wrong = _wrong_code_for(ann)
    for _ in range(3):
        client.post("/account/sign-in/code/", {"code": wrong})

    page = client.post("/account/sign-in/code/", {"code": wrong})

    assert page.status_code == 429
    assert int(page["Retry-After"]) == 3600


def test_the_account_sign_in_page_answers_429_with_retry_after_for_too_many_codes(
        client, ann):
    for _ in range(5):
        client.post("/account/sign-in/", {"address": "ann@example.com"})

    page = client.post("/account/sign-in/", {"address": "ann@example.com"})

    assert page.status_code == 429
    assert 0 < int(page["Retry-After"]) <= 3600
    assert "Too many codes were asked for" in page.content.decode()
