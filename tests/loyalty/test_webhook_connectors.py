"""Webhook connectors (Klaviyo, Mailchimp, Segment) delivering through the same machinery as
standard webhooks, to peers on loopback that judge calls as the platforms do; and their
credentials, checked per connector and never shown again."""

from __future__ import annotations

import base64
import hashlib

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from loyalty.webhooks.delivery import deliveries_send_due
from loyalty.webhooks.models import WebhookDelivery, WebhookSubscription
from loyalty.webhooks.relay import webhooks_relay_pass
from loyalty.webhooks.services import subscription_create
from tests.loyalty.webhooks_support import event_record, subscription_prove
from tests.members.factories import MemberFactory
from tests.peers.klaviyo import KlaviyoPeer
from tests.peers.mailchimp import MailchimpPeer
from tests.peers.segment import SegmentPeer

pytestmark = pytest.mark.django_db

URL = "/api/v1/webhooks/"
MAILCHIMP_KEY = "0123456789abcdef0123456789abcdef-us21"
MAILCHIMP_LIST = "a1b2c3d4e5"


def _serving(settings, peer, setting: str, endpoint: str):
    """The peer, listening, and the connector's endpoint setting pointed at it."""
    peer.start()
    setattr(settings, setting, getattr(peer, endpoint))
    yield peer
    peer.stop()


@pytest.fixture
def klaviyo(settings):
    yield from _serving(settings, KlaviyoPeer(), "ENGAGE_KLAVIYO_URL", "events_url")


@pytest.fixture
def mailchimp(settings):
    yield from _serving(settings, MailchimpPeer(), "ENGAGE_MAILCHIMP_URL", "url_template")


@pytest.fixture
def segment(settings):
    yield from _serving(settings, SegmentPeer(), "ENGAGE_SEGMENT_URL", "track_url")


@pytest.fixture
def staff_api(marketer) -> APIClient:
    client = APIClient()
    client.force_authenticate(marketer)
    return client


def klaviyo_subscribe(peer: KlaviyoPeer, key: str | None = None) -> WebhookSubscription:
    return subscription_create(connector="klaviyo",
                               credentials={"api_key": key or next(iter(peer.private_keys))})[0]


def mailchimp_subscribe(peer: MailchimpPeer, key: str | None = None) -> WebhookSubscription:
    return subscription_create(connector="mailchimp", credentials={
        "api_key": key or next(iter(peer.api_keys)), "list_id": peer.list_id})[0]


def segment_subscribe(peer: SegmentPeer) -> WebhookSubscription:
    return subscription_create(connector="segment",
                               credentials={"write_key": next(iter(peer.write_keys))})[0]


def order_placed_sent(member=None):
    member = member or MemberFactory()
    event = event_record(member, "ORDER_PLACED", order="A-7", total="59.90")
    webhooks_relay_pass()
    deliveries_send_due()
    return event, WebhookDelivery.objects.get(event=event)


def basic_credentials(header: str) -> tuple[str, str]:
    scheme, _, encoded = header.partition(" ")
    assert scheme == "Basic"
    user, _, password = base64.b64decode(encoded).decode().partition(":")
    return user, password


def test_klaviyo_receives_an_order_placed_as_a_jsonapi_event_of_the_members_profile(klaviyo):
    # given
    subscription = klaviyo_subscribe(klaviyo)
    member = MemberFactory()

    # when
    event, delivery = order_placed_sent(member)

    # then
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert delivery.last_status_code == 202
    [call] = klaviyo.calls
    key = subscription.credentials()["api_key"]
    assert call.headers["authorization"] == f"Klaviyo-API-Key {key}"
    assert call.headers["revision"]
    [sent] = klaviyo.events
    assert sent["metric"]["data"]["attributes"]["name"] == "Order Placed"
    assert sent["profile"]["data"]["attributes"] == {
        "email": member.email, "phone_number": member.phone, "external_id": member.external_id}
    assert sent["properties"]["order"] == "A-7"
    assert sent["unique_id"] == str(event.id)
    assert sent["time"] == event.occurred_at.isoformat()


def test_mailchimp_receives_an_order_placed_as_a_member_event_under_the_email_hash(mailchimp):
    # given
    mailchimp_subscribe(mailchimp)
    member = MemberFactory(email="Anna.Lang@Example.com")
    mailchimp.audience.add("anna.lang@example.com")

    # when
    event, delivery = order_placed_sent(member)

    # then
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert delivery.last_status_code == 204
    [call] = mailchimp.calls
    email_hash = hashlib.md5(b"anna.lang@example.com").hexdigest()  # noqa: S324
    assert call.path == f"/us21/3.0/lists/{mailchimp.list_id}/members/{email_hash}/events"
    assert basic_credentials(call.headers["authorization"])[1] in mailchimp.api_keys
    [sent] = mailchimp.events
    assert sent["name"] == "order_placed"
    assert sent["properties"] == {"order": "A-7", "total": "59.90"}
    assert sent["occurred_at"] == event.occurred_at.isoformat()


def test_segment_receives_an_order_placed_as_a_track_call_of_the_member(segment):
    # given
    segment_subscribe(segment)
    member = MemberFactory()

    # when
    event, delivery = order_placed_sent(member)

    # then
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    [call] = segment.calls
    assert basic_credentials(call.headers["authorization"]) == (
        next(iter(segment.write_keys)), "")
    [sent] = segment.accepted
    assert sent["userId"] == member.external_id
    assert sent["event"] == "Order Placed"
    assert sent["messageId"] == str(event.id)
    assert sent["properties"]["order"] == "A-7"
    assert sent["timestamp"] == event.occurred_at.isoformat()


def test_klaviyo_refusing_the_key_fails_the_delivery_without_retry(klaviyo):
    klaviyo_subscribe(klaviyo, key="pk_" + "0" * 34)

    _, delivery = order_placed_sent()

    assert delivery.status == WebhookDelivery.Status.FAILED
    assert delivery.last_status_code == 401
    assert "not_authenticated" in delivery.attempt_log.get().response_excerpt
    assert len(klaviyo.calls) == 1


def test_mailchimp_key_of_another_data_center_fails_the_delivery_without_retry(mailchimp):
    # given: a key of us21's account, but with another data center
    key = next(iter(mailchimp.api_keys)).replace("-us21", "-us6")
    mailchimp_subscribe(mailchimp, key=key)
    member = MemberFactory()
    mailchimp.audience.add(member.email)

    # when
    _, delivery = order_placed_sent(member)

    # then
    assert delivery.status == WebhookDelivery.Status.FAILED
    assert delivery.last_status_code == 401
    assert mailchimp.calls[0].path.startswith("/us6/3.0/")
    assert "API Key Invalid" in delivery.attempt_log.get().response_excerpt


def test_mailchimp_member_without_email_fails_without_a_call_or_retry(mailchimp):
    mailchimp_subscribe(mailchimp)

    _, delivery = order_placed_sent(MemberFactory(email=""))

    assert delivery.status == WebhookDelivery.Status.FAILED
    assert delivery.last_status_code is None
    assert "email" in delivery.last_error
    assert mailchimp.calls == []


def test_klaviyo_answering_429_is_retried(klaviyo):
    klaviyo_subscribe(klaviyo)
    klaviyo.script["answers"] = [429]

    _, delivery = order_placed_sent()

    assert delivery.status == WebhookDelivery.Status.PENDING
    assert delivery.last_status_code == 429
    assert delivery.attempts == 1


def test_segment_answering_500_is_retried(segment):
    segment_subscribe(segment)
    segment.script["answers"] = [500]

    _, delivery = order_placed_sent()

    assert delivery.status == WebhookDelivery.Status.PENDING
    assert delivery.last_status_code == 500


def queries_to_send(count: int) -> int:
    """The queries of sending `count` new events' deliveries."""
    for _ in range(count):
        event_record(MemberFactory())
    webhooks_relay_pass()
    with CaptureQueriesContext(connection) as captured:
        deliveries_send_due()
    return len(captured.captured_queries)


def test_a_batch_of_connector_deliveries_takes_as_many_queries_for_ten_events_as_for_two(
        klaviyo, segment):
    # given: subscriptions past their probe, so each batch is sent whole
    subscription_prove(klaviyo_subscribe(klaviyo))
    subscription_prove(segment_subscribe(segment))

    # when: four deliveries, then twenty, members and events read with them, not one by one
    for_two = queries_to_send(2)
    for_ten = queries_to_send(10)

    # then
    assert for_ten == for_two
    assert len(klaviyo.events) == len(segment.accepted) == 12
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"succeeded"}


def test_api_creates_a_klaviyo_subscription_and_never_answers_its_key(staff_api):
    # when
    created = staff_api.post(URL, {"connector": "klaviyo",
                                   "credentials": {"api_key": "pk_" + "a1" * 17}},
                             format="json")

    # then
    assert created.status_code == 201
    assert "credentials" not in created.data
    shown = staff_api.get(f"{URL}{created.data['id']}/")
    assert "pk_" + "a1" * 17 not in shown.content.decode()
    stored = WebhookSubscription.objects.get()
    assert stored.credentials() == {"api_key": "pk_" + "a1" * 17}
    assert "pk_" not in stored.credentials_encrypted


def test_api_refuses_a_klaviyo_public_key_under_the_credential(staff_api):
    response = staff_api.post(URL, {"connector": "klaviyo",
                                    "credentials": {"api_key": "AbC123"}}, format="json")

    assert response.status_code == 400
    assert "pk_" in str(response.data["credentials"]["api_key"])
    assert not WebhookSubscription.objects.exists()


def test_api_refuses_a_mailchimp_subscription_without_its_audience(staff_api):
    response = staff_api.post(URL, {"connector": "mailchimp",
                                    "credentials": {"api_key": MAILCHIMP_KEY}}, format="json")

    assert response.status_code == 400
    assert set(response.data["credentials"]) == {"list_id"}


def test_api_refuses_a_url_for_a_platform_connector(staff_api):
    response = staff_api.post(URL, {"connector": "segment", "url": "https://hooks.example.com/",
                                    "credentials": {"write_key": "a" * 32}}, format="json")

    assert response.status_code == 400
    assert "url" in response.data


def test_api_keeps_the_stored_key_when_an_update_gives_only_the_audience(staff_api):
    # given
    subscription = subscription_create(connector="mailchimp", credentials={
        "api_key": MAILCHIMP_KEY, "list_id": MAILCHIMP_LIST})[0]

    # when
    response = staff_api.patch(f"{URL}{subscription.pk}/",
                               {"credentials": {"list_id": "ffffeeee00"}}, format="json")

    # then
    assert response.status_code == 200
    subscription.refresh_from_db()
    assert subscription.credentials() == {"api_key": MAILCHIMP_KEY, "list_id": "ffffeeee00"}


def test_admin_refuses_a_wrong_mailchimp_key_on_its_field(marketer_client):
    response = marketer_client.post("/admin/loyalty/webhooksubscription/add/", {
        "connector": "mailchimp", "api_key": "not-a-key", "list_id": MAILCHIMP_LIST,
        "active": "on"})

    assert response.status_code == 200
    assert "api_key" in response.context["adminform"].form.errors
    assert not WebhookSubscription.objects.exists()


def test_admin_adds_a_segment_subscription_and_shows_its_key_only_masked(marketer_client):
    # given
    write_key = "SeGmEnTwRiTeKeY0123456789abcdef"
    added = marketer_client.post("/admin/loyalty/webhooksubscription/add/", {
        "connector": "segment", "write_key": write_key, "description": "Segment",
        "active": "on"})
    assert added.status_code == 302
    subscription = WebhookSubscription.objects.get()

    # when
    page = marketer_client.get(f"/admin/loyalty/webhooksubscription/{subscription.pk}/change/")

    # then
    assert write_key not in page.content.decode()
    assert "…cdef" in page.content.decode()
    assert subscription.credentials() == {"write_key": write_key}


def test_admin_change_with_the_secret_left_blank_keeps_the_stored_key(marketer_client):
    subscription = subscription_create(connector="klaviyo",
                                       credentials={"api_key": "pk_" + "b2" * 17})[0]

    response = marketer_client.post(
        f"/admin/loyalty/webhooksubscription/{subscription.pk}/change/",
        {"connector": "klaviyo", "api_key": "", "description": "Klaviyo EU", "active": "on"})

    assert response.status_code == 302
    subscription.refresh_from_db()
    assert subscription.description == "Klaviyo EU"
    assert subscription.credentials() == {"api_key": "pk_" + "b2" * 17}
