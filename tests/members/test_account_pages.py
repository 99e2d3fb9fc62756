"""The member's account pages: sign-in with a one-time code, the session, the language."""

from __future__ import annotations

import re

import pytest

from communications.models import Message
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def ann():
    return MemberFactory(email="ann@example.com", first_name="Ann", language="en")


def _code_sent_to(member) -> str:
    message = Message.objects.filter(member=member, content__kind="sign_in_code").latest("pk")
    return re.search(r"\b(\d{6})\b", message.content["body"]).group(1)


def _sign_in(client, member, address: str = "ann@example.com", next_url: str = ""):
    client.post("/account/sign-in/", {"address": address, "next": next_url})
    return client.post("/account/sign-in/code/", {"code": _code_sent_to(member)})


def test_an_account_page_sends_a_stranger_to_sign_in_and_back(client, ann):
    page = client.get("/account/")

    assert page.status_code == 302
    assert page["Location"] == "/account/sign-in/?next=%2Faccount%2F"


def test_signing_in_with_the_emailed_code_opens_the_account(client, ann):
    reply = _sign_in(client, ann, next_url="/account/")

    assert reply.status_code == 302 and reply["Location"] == "/account/"
    home = client.get("/account/")
    assert home.status_code == 200
    assert "Hello, Ann" in home.content.decode()
    assert home["Cache-Control"] == "private, no-store"


def test_a_wrong_code_shows_an_error_on_the_code_field(client, ann):
    client.post("/account/sign-in/", {"address": "ann@example.com"})
    wrong = "000000" if _code_sent_to(ann) != "000000" else "111111"

    page = client.post("/account/sign-in/code/", {"code": wrong})

    assert page.status_code == 400
    assert "This code is not valid." in page.content.decode()
    assert 'aria-invalid="true"' in page.content.decode()
    assert client.get("/account/").status_code == 302


def test_a_malformed_address_is_shown_as_an_error(client):
    page = client.post("/account/sign-in/", {"address": "not an address"})

    assert page.status_code == 400
    assert "Enter the email address or phone number" in page.content.decode()


def test_sign_in_never_redirects_to_another_site(client, ann):
    reply = _sign_in(client, ann, next_url="https://evil.example.com/")

    assert reply["Location"] == "/account/"


def test_signing_in_gives_a_new_session_key(client, ann):
    client.post("/account/sign-in/", {"address": "ann@example.com"})
    before = client.session.session_key

    client.post("/account/sign-in/code/", {"code": _code_sent_to(ann)})

    assert client.session.session_key != before


def test_signing_out_ends_the_session(client, ann):
    _sign_in(client, ann)

    client.post("/account/sign-out/")

    assert client.get("/account/").status_code == 302


def test_the_account_speaks_the_members_language(client):
    ivan = MemberFactory(email="ivan@example.com", first_name="Иван", language="ru")
    _sign_in(client, ivan, "ivan@example.com")

    page = client.get("/account/").content.decode()

    assert '<html lang="ru">' in page
    assert "Здравствуйте, Иван" in page


def test_the_sign_in_page_follows_the_browsers_language(client):
    page = client.get("/account/sign-in/", HTTP_ACCEPT_LANGUAGE="ru").content.decode()

    assert "Войти" in page


def test_the_sign_in_code_is_written_in_the_members_language(client):
    ivan = MemberFactory(email="ivan@example.com", language="ru")

    client.post("/account/sign-in/", {"address": "ivan@example.com"})

    message = Message.objects.get(member=ivan, content__kind="sign_in_code")
    assert "Ваш код для входа" in message.content["body"]
