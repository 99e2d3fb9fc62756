"""The member's inbox in the account pages (/account/messages/) and its home-page card."""

from __future__ import annotations

from datetime import timedelta

import pytest

from communications.models import Message
from tests.communications.test_inbox import received
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db

Status = Message.Status
PAGE = "/account/messages/"


@pytest.fixture
def ann():
    return MemberFactory(first_name="Ann", last_name="Lee", email="ann@example.com")


def test_the_page_shows_the_members_messages_newest_first(account_client, ann):
    received(ann, channel="email", ago=timedelta(days=2))
    received(ann, channel="sms", ago=timedelta(hours=1))

    page = account_client(ann).get(PAGE)

    text = page.content.decode()
    assert page.status_code == 200
    assert text.index("sms news for Ann Lee") < text.index("email news for Ann Lee")
    assert page["Cache-Control"] == "private, no-store"


def test_the_page_is_filtered_by_channel(account_client, ann):
    received(ann, channel="email")
    received(ann, channel="sms")

    text = account_client(ann).get(PAGE, {"channel": "sms"}).content.decode()

    assert "sms news" in text and "email news" not in text


def test_the_unread_filter_shows_only_app_messages_not_read(account_client, ann):
    received(ann, channel="push")
    received(ann, channel="email")

    text = account_client(ann).get(PAGE, {"unread": "true"}).content.decode()

    assert "push news" in text and "email news" not in text


def test_marking_an_app_message_read_opens_it_and_returns_to_the_list(account_client, ann):
    push = received(ann, channel="push")

    reply = account_client(ann).post(f"{PAGE}{push.pk}/read/", {"next": f"{PAGE}?unread=true"})

    push.refresh_from_db()
    assert reply.status_code == 302 and reply["Location"] == f"{PAGE}?unread=true"
    assert push.status == Status.OPENED


def test_marking_another_members_message_read_is_not_found(account_client, ann):
    bobs = received(MemberFactory(), channel="push")

    reply = account_client(ann).post(f"{PAGE}{bobs.pk}/read/")

    bobs.refresh_from_db()
    assert reply.status_code == 404 and bobs.status == Status.DELIVERED


def test_a_stranger_is_sent_to_sign_in(client):
    reply = client.get(PAGE)

    assert reply.status_code == 302 and reply["Location"].startswith("/account/sign-in/")


def test_a_changed_cursor_starts_again_from_the_newest(account_client, ann):
    reply = account_client(ann).get(PAGE, {"cursor": "not-a-cursor", "channel": "sms"})

    assert reply.status_code == 302 and reply["Location"] == f"{PAGE}?channel=sms"


def test_the_navigation_links_to_the_inbox(account_client, ann):
    text = account_client(ann).get("/account/").content.decode()

    assert f'href="{PAGE}"' in text


def test_the_home_page_tells_how_many_app_messages_are_unread(account_client, ann):
    received(ann, channel="push")
    received(ann, channel="push")

    text = account_client(ann).get("/account/").content.decode()

    assert "Unread app messages: 2" in text


def test_the_page_costs_the_same_queries_however_long_the_history(
        account_client, ann, django_assert_max_num_queries):
    for n in range(25):
        received(ann, channel=("email", "sms", "push")[n % 3], ago=timedelta(minutes=n))
    client = account_client(ann)

    # the session, its member, the page (no cascade here)
    with django_assert_max_num_queries(3):
        page = client.get(PAGE)

    assert page.content.decode().count('class="card inbox-message') == 20
