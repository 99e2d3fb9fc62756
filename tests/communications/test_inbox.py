"""The member's inbox through the app's API: what they received on every channel, newest first,
filtered and paged, and read receipts for app messages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from communications.models import CascadeStep, Message, MessageStatusChange
from communications.services.statuses import StatusChange, message_statuses_apply
from tests.communications.factories import (
    GatewayFactory,
    MailingFactory,
    MessageFactory,
    TemplateFactory,
)
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db

Status = Message.Status
INBOX = "/api/v1/me/messages/"


def _read_url(message: Message) -> str:
    return f"{INBOX}{message.pk}/read/"


@pytest.fixture
def ann():
    return MemberFactory(first_name="Ann", last_name="Lee", email="ann@example.com")


def received(member, *, channel: str = "email", ago: timedelta = timedelta(hours=1),
             status: str = Status.DELIVERED, mailing=None, **fields) -> Message:
    """A message of a mailing that went out to the member `ago` before now."""
    at = timezone.now() - ago
    if mailing is None and "content" not in fields:
        mailing = MailingFactory(template=TemplateFactory(
            channel=channel, subject="Hello {{ member.first_name }}" if channel != "sms" else "",
            body=f"{channel} news for {{{{ member.full_name }}}}"))
    return MessageFactory(**{"member": member, "mailing": mailing, "channel": channel,
                             "status": status, "created_at": at - timedelta(minutes=5),
                             "sent_at": at, **fields})


def _ids(reply) -> list[int]:
    return [item["id"] for item in reply.json()["results"]]


# --- what is listed ------------------------------------------------------------------------------

def test_the_inbox_lists_the_members_messages_on_every_channel_newest_first(member_api_client,
                                                                            ann):
    old_email = received(ann, channel="email", ago=timedelta(days=3))
    push = received(ann, channel="push", ago=timedelta(hours=2))
    sms = received(ann, channel="sms", ago=timedelta(minutes=10))

    reply = member_api_client(ann).get(INBOX)

    assert reply.status_code == 200
    assert _ids(reply) == [sms.pk, push.pk, old_email.pk]
    assert [item["channel"] for item in reply.json()["results"]] == ["sms", "push", "email"]


def test_the_inbox_is_ordered_by_when_a_message_was_sent_not_when_it_was_queued(
        member_api_client, ann):
    held_overnight = received(ann, ago=timedelta(minutes=1))
    Message.objects.filter(pk=held_overnight.pk).update(
        created_at=timezone.now() - timedelta(days=1))
    sent_earlier = received(ann, ago=timedelta(hours=3))

    reply = member_api_client(ann).get(INBOX)

    assert _ids(reply) == [held_overnight.pk, sent_earlier.pk]


@pytest.mark.parametrize("status", [Status.QUEUED, Status.SKIPPED, Status.SENDING,
                                    Status.FAILED, Status.CANCELLED])
def test_a_message_that_never_went_out_is_not_listed(member_api_client, ann, status):
    received(ann, status=status, sent_at=None)

    reply = member_api_client(ann).get(INBOX)

    assert reply.json()["results"] == []


@pytest.mark.parametrize("status", [Status.BOUNCED, Status.UNDELIVERED, Status.REJECTED])
def test_a_message_reported_lost_after_sending_is_not_listed(member_api_client, ann, status):
    received(ann, status=status)

    assert member_api_client(ann).get(INBOX).json()["results"] == []


def test_a_test_send_to_the_member_is_not_listed(member_api_client, ann):
    received(ann, is_test=True)

    assert member_api_client(ann).get(INBOX).json()["results"] == []


def test_another_members_messages_are_not_listed(member_api_client, ann):
    received(MemberFactory())

    assert member_api_client(ann).get(INBOX).json()["results"] == []


def test_a_transactional_message_is_shown_as_it_was_sent(member_api_client, ann):
    confirmation = received(ann, content={"kind": "email_confirmation",
                                          "subject": "Please confirm your email address",
                                          "body": "Open this link to confirm."})

    item = member_api_client(ann).get(INBOX).json()["results"][0]

    assert item["id"] == confirmation.pk
    assert (item["subject"], item["body"], item["text_source"]) == (
        "Please confirm your email address", "Open this link to confirm.", "sent")


def test_sign_in_codes_are_not_listed(member_api_client, ann):
    received(ann, content={"kind": "sign_in_code", "subject": "Your sign-in code",
                           "body": "Your code is 123456."})

    assert member_api_client(ann).get(INBOX).json()["results"] == []


def test_a_mailings_message_is_rendered_from_its_template_for_the_member(member_api_client,
                                                                           ann):
    received(ann, channel="email")

    item = member_api_client(ann).get(INBOX).json()["results"][0]

    assert (item["subject"], item["body"], item["text_source"]) == (
        "Hello Ann", "email news for Ann Lee", "template")


def test_an_app_message_carries_its_templates_image_and_link(member_api_client, ann):
    mailing = MailingFactory(template=TemplateFactory(
        channel="push", subject="Double points", body="This weekend only",
        image_url="https://cdn.example.com/points.png", link_url="myapp://offers/7"))
    received(ann, channel="push", mailing=mailing)

    item = member_api_client(ann).get(INBOX).json()["results"][0]

    assert (item["image_url"], item["link_url"]) == ("https://cdn.example.com/points.png",
                                                     "myapp://offers/7")


def test_a_cascade_channels_message_is_rendered_from_that_steps_template(member_api_client,
                                                                           ann):
    mailing = MailingFactory(template=TemplateFactory(channel="push", subject="Push title"))
    CascadeStep.objects.create(
        mailing=mailing, position=1, gateway=GatewayFactory(channel="sms", provider="smpp"),
        template=TemplateFactory(channel="sms", subject="", body="SMS for {{ member.first_name }}"))
    received(ann, channel="sms", mailing=mailing)

    item = member_api_client(ann).get(INBOX).json()["results"][0]

    assert (item["channel"], item["body"]) == ("sms", "SMS for Ann")


def test_an_email_template_linking_to_unsubscribe_links_to_the_preferences_page(
        member_api_client, ann):
    mailing = MailingFactory(template=TemplateFactory(
        body="News. Leave: {{ unsubscribe_url }}"))
    received(ann, mailing=mailing)

    item = member_api_client(ann).get(INBOX).json()["results"][0]

    assert item["body"] == "News. Leave: http://testserver/account/preferences/"


# --- read state, filters and pages ---------------------------------------------------------------

def test_only_app_messages_have_a_read_state(member_api_client, ann):
    received(ann, channel="push", ago=timedelta(minutes=1))
    received(ann, channel="push", status=Status.OPENED, ago=timedelta(minutes=2),
             opened_at=timezone.now())
    received(ann, channel="email", status=Status.OPENED, ago=timedelta(minutes=3),
             opened_at=timezone.now())

    results = member_api_client(ann).get(INBOX).json()["results"]

    assert [item["read"] for item in results] == [False, True, None]


def test_the_inbox_is_filtered_by_channel(member_api_client, ann):
    sms = received(ann, channel="sms")
    received(ann, channel="email")

    reply = member_api_client(ann).get(INBOX, {"channel": "sms"})

    assert _ids(reply) == [sms.pk]


def test_the_unread_filter_lists_the_app_messages_not_read_yet(member_api_client, ann):
    unread = received(ann, channel="push", ago=timedelta(minutes=1))
    received(ann, channel="push", status=Status.CLICKED, ago=timedelta(minutes=2))
    received(ann, channel="email", ago=timedelta(minutes=3))

    reply = member_api_client(ann).get(INBOX, {"unread": "true"})

    assert _ids(reply) == [unread.pk]


def test_an_unknown_channel_filter_is_refused_naming_the_field(member_api_client, ann):
    reply = member_api_client(ann).get(INBOX, {"channel": "pigeon"})

    assert reply.status_code == 400 and "channel" in reply.json()


def test_pages_follow_the_cursor_without_repeating_or_skipping_a_message(member_api_client,
                                                                          ann):
    same_moment = timedelta(hours=1)
    messages = [received(ann, ago=same_moment) for _ in range(3)]
    messages += [received(ann, ago=timedelta(hours=2 + n)) for n in range(2)]
    client = member_api_client(ann)

    seen, url = [], f"{INBOX}?page_size=2"
    while url:
        page = client.get(url).json()
        seen += [item["id"] for item in page["results"]]
        url = page["next"]

    assert sorted(seen) == sorted(m.pk for m in messages) and len(seen) == 5


def test_the_previous_link_returns_the_newer_page_in_order(member_api_client, ann):
    messages = [received(ann, ago=timedelta(hours=n)) for n in range(1, 6)]
    client = member_api_client(ann)
    first = client.get(f"{INBOX}?page_size=2").json()
    second = client.get(first["next"]).json()

    back = client.get(second["previous"]).json()

    assert _ids_of(back) == _ids_of(first) == [messages[0].pk, messages[1].pk]
    assert back["previous"] is None and back["next"] is not None


def test_the_first_page_has_no_previous_link(member_api_client, ann):
    received(ann)

    page = member_api_client(ann).get(INBOX).json()

    assert page["previous"] is None and page["next"] is None


def test_a_cursor_changed_by_hand_is_refused(member_api_client, ann):
    received(ann)

    reply = member_api_client(ann).get(INBOX, {"cursor": "cD1ub3QtYS1wb3NpdGlvbg=="})

    assert reply.status_code == 404 and reply.json()["detail"] == "Invalid cursor"


def _ids_of(page: dict) -> list[int]:
    return [item["id"] for item in page["results"]]


# --- the unread count ----------------------------------------------------------------------------

def test_the_home_call_counts_the_app_messages_not_read_yet(member_api_client, ann):
    received(ann, channel="push", status=Status.SENT)
    received(ann, channel="push", status=Status.DELIVERED)
    received(ann, channel="push", status=Status.EXPIRED)
    received(ann, channel="push", status=Status.OPENED)
    received(ann, channel="push", status=Status.DELIVERED, is_test=True)
    received(ann, channel="email", status=Status.DELIVERED)
    received(MemberFactory(), channel="push")

    reply = member_api_client(ann).get("/api/v1/me/home/")

    assert reply.json()["unread_messages"] == 3


# --- read receipts -------------------------------------------------------------------------------

def test_reading_an_app_message_marks_it_opened(member_api_client, ann):
    push = received(ann, channel="push")

    reply = member_api_client(ann).post(_read_url(push))

    push.refresh_from_db()
    assert reply.status_code == 200
    assert reply.json() == {"id": push.pk, "read": True,
                            "read_at": push.opened_at.isoformat().replace("+00:00", "Z")}
    assert push.status == Status.OPENED


def test_reading_twice_records_the_open_once_and_keeps_the_first_time(member_api_client, ann):
    push = received(ann, channel="push")
    client = member_api_client(ann)
    client.post(_read_url(push))
    push.refresh_from_db()
    first = push.opened_at

    client.post(_read_url(push))

    push.refresh_from_db()
    assert push.opened_at == first
    assert list(MessageStatusChange.objects.filter(message=push).values_list(
        "status", "source")) == [("opened", "member")]


def test_reading_a_clicked_message_leaves_it_clicked(member_api_client, ann):
    push = received(ann, channel="push", status=Status.CLICKED)

    reply = member_api_client(ann).post(_read_url(push))

    push.refresh_from_db()
    assert reply.status_code == 200 and push.status == Status.CLICKED
    assert not MessageStatusChange.objects.filter(message=push).exists()


def test_a_delivery_receipt_after_the_read_does_not_move_the_message_back(member_api_client,
                                                                         ann):
    push = received(ann, channel="push", status=Status.SENT)
    member_api_client(ann).post(_read_url(push))

    message_statuses_apply(changes=[StatusChange(push.pk, Status.DELIVERED, timezone.now())],
                           source=MessageStatusChange.Source.RECEIPT)

    push.refresh_from_db()
    assert push.status == Status.OPENED


def test_reading_an_app_message_counts_the_unread_one_less(member_api_client, ann):
    first, _ = received(ann, channel="push"), received(ann, channel="push")
    client = member_api_client(ann)

    client.post(_read_url(first))

    assert client.get("/api/v1/me/home/").json()["unread_messages"] == 1


def test_an_email_cannot_be_marked_read_by_the_app(member_api_client, ann):
    email = received(ann, channel="email")

    reply = member_api_client(ann).post(_read_url(email))

    email.refresh_from_db()
    assert reply.status_code == 400 and reply.json()["code"] == "not_an_app_message"
    assert email.status == Status.DELIVERED


def test_reading_a_message_not_yet_sent_is_not_found(member_api_client, ann):
    queued = received(ann, channel="push", status=Status.QUEUED, sent_at=None)

    reply = member_api_client(ann).post(_read_url(queued))

    queued.refresh_from_db()
    assert reply.status_code == 404 and queued.status == Status.QUEUED


# --- access ---------------------------------------------------------------------------------------

def test_reading_another_members_message_is_not_found_and_changes_nothing(member_api_client,
                                                                         ann):
    bobs = received(MemberFactory(), channel="push")

    reply = member_api_client(ann).post(_read_url(bobs))

    bobs.refresh_from_db()
    assert reply.status_code == 404 and reply.json()["code"] == "not_found"
    assert bobs.status == Status.DELIVERED and bobs.opened_at is None


@pytest.mark.parametrize("call", ["list", "read"])
def test_an_anonymous_caller_is_refused(ann, call):
    push = received(ann, channel="push")
    client = APIClient()

    reply = client.get(INBOX) if call == "list" else client.post(_read_url(push))

    assert reply.status_code == 401


def test_a_staff_session_is_not_a_member_here(marketer_client):
    assert marketer_client.get(INBOX).status_code == 401


def test_a_member_token_opens_no_staff_endpoint_of_mailings(member_api_client, ann):
    assert member_api_client(ann).get("/api/v1/mailings/").status_code == 403


# --- cost -----------------------------------------------------------------------------------------

def test_an_inbox_page_costs_the_same_queries_however_long_the_history(
        member_api_client, ann, django_assert_max_num_queries):
    sms_gateway = GatewayFactory(channel="sms", provider="smpp")
    for n in range(15):
        mailing = MailingFactory(template=TemplateFactory(channel="push"))
        CascadeStep.objects.create(mailing=mailing, position=1, gateway=sms_gateway,
                                   template=TemplateFactory(channel="sms", subject=""))
        received(ann, channel="push", mailing=mailing, ago=timedelta(minutes=2 * n))
        received(ann, channel="sms", mailing=mailing, ago=timedelta(minutes=2 * n + 1))
    client = member_api_client(ann)
    client.get("/api/v1/me/")  # the token's last use is written at most once a minute

    # the token and its member, the page, the cascade's templates
    with django_assert_max_num_queries(3):
        reply = client.get(INBOX)

    assert len(reply.json()["results"]) == 20


def test_the_unread_count_is_one_query(ann, django_assert_num_queries):
    from communications.selectors.inbox import member_unread_count

    for _ in range(5):
        received(ann, channel="push")

    with django_assert_num_queries(1):
        assert member_unread_count(member_id=ann.pk) == 5
