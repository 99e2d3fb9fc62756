from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from loyalty.webhooks.delivery import deliveries_send_due
from loyalty.webhooks.models import WebhookDelivery, WebhookSubscription
from loyalty.webhooks.relay import webhooks_relay_pass
from tests.loyalty.webhooks_support import event_record, receiver, subscribe  # noqa: F401
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/webhooks/"


@pytest.fixture
def staff_api(marketer) -> APIClient:
    client = APIClient()
    client.force_authenticate(marketer)
    return client


def test_created_subscription_shows_its_secret_once(staff_api, receiver):  # noqa: F811
    # when
    created = staff_api.post(URL, {"url": receiver.hook_url, "event_types": ["ORDER_PLACED"],
                                   "ordered": True}, format="json")

    # then
    assert created.status_code == 201
    assert created.data["secret"].startswith("whsec_")
    assert created.data["event_types"] == ["ORDER_PLACED"]
    shown = staff_api.get(f"{URL}{created.data['id']}/")
    assert shown.status_code == 200
    assert "secret" not in shown.data


def test_url_resolving_to_a_private_address_is_a_field_error(staff_api, settings):
    settings.ENGAGE_WEBHOOK_ALLOW_PRIVATE = False

    response = staff_api.post(URL, {"url": "http://169.254.169.254/latest/"}, format="json")

    assert response.status_code == 400
    assert "url" in response.data
    assert WebhookSubscription.objects.count() == 0


def test_unknown_event_type_is_a_field_error(staff_api, receiver):  # noqa: F811
    response = staff_api.post(URL, {"url": receiver.hook_url, "event_types": ["NOPE"]},
                              format="json")

    assert response.status_code == 400
    assert "event_types" in response.data


def test_rotating_the_secret_answers_the_new_one(staff_api, receiver):  # noqa: F811
    subscription = subscribe(receiver)

    response = staff_api.post(f"{URL}{subscription.pk}/rotate-secret/")

    assert response.status_code == 200
    assert response.data["secret"].startswith("whsec_")
    assert response.data["secret"] != receiver.secrets[0]


def test_switching_a_disabled_subscription_back_on_clears_why_it_was_off(staff_api,
                                                                        receiver):  # noqa: F811
    subscription = subscribe(receiver)
    WebhookSubscription.objects.update(active=False, disabled_at="2026-01-01T00:00Z",
                                       disabled_reason="the receiver answered 410 Gone")

    response = staff_api.patch(f"{URL}{subscription.pk}/", {"active": True}, format="json")

    assert response.status_code == 200
    subscription.refresh_from_db()
    assert subscription.active and subscription.disabled_at is None
    assert subscription.disabled_reason == ""


def test_delivery_is_replayed_through_the_api(staff_api, receiver):  # noqa: F811
    # given
    subscription = subscribe(receiver)
    event_record(MemberFactory())
    webhooks_relay_pass()
    deliveries_send_due()
    delivery = WebhookDelivery.objects.get()

    # when
    listed = staff_api.get(f"{URL}{subscription.pk}/deliveries/")
    replayed = staff_api.post(f"/api/v1/webhook-deliveries/{delivery.pk}/replay/")
    deliveries_send_due()

    # then
    assert listed.data["results"][0]["attempt_log"][0]["status_code"] == 200
    assert replayed.status_code == 202
    assert replayed.data["status"] == "pending"
    assert len(receiver.verified_calls()) == 2


def test_member_token_cannot_reach_the_webhooks_api(member_api_client):
    response = member_api_client(MemberFactory()).get(URL)

    assert response.status_code == 403


def test_anonymous_caller_cannot_reach_the_webhooks_api():
    response = APIClient().get(URL)

    assert response.status_code in (401, 403)


def test_replay_from_the_admin_makes_the_delivery_pending(marketer_client, receiver):  # noqa: F811
    subscribe(receiver)
    event_record(MemberFactory())
    webhooks_relay_pass()
    deliveries_send_due()
    delivery = WebhookDelivery.objects.get()

    response = marketer_client.post("/admin/loyalty/webhookdelivery/", {
        "action": "replay", "_selected_action": [delivery.pk]})

    assert response.status_code == 302
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.PENDING


def test_subscription_added_in_the_admin_shows_its_secret_once(marketer_client,
                                                              receiver):  # noqa: F811
    response = marketer_client.post("/admin/loyalty/webhooksubscription/add/", {
        "url": receiver.hook_url, "description": "CRM", "owner_email": "ops@shop.example.com",
        "active": "on"}, follow=True)

    assert response.status_code == 200
    subscription = WebhookSubscription.objects.get()
    [message] = [str(m) for m in response.context["messages"] if "secret" in str(m)]
    secret = message.rsplit(" ", 1)[-1]
    assert secret.startswith("whsec_")
    assert subscription.signing_secrets(now=subscription.created_at) == [secret]


def test_admin_shows_a_delivery_with_its_attempts(marketer_client, receiver):  # noqa: F811
    subscription = subscribe(receiver)
    event_record(MemberFactory())
    webhooks_relay_pass()
    deliveries_send_due()
    delivery = WebhookDelivery.objects.get()

    pages = [marketer_client.get(url) for url in (
        "/admin/loyalty/webhooksubscription/",
        f"/admin/loyalty/webhooksubscription/{subscription.pk}/change/",
        "/admin/loyalty/webhookdelivery/",
        f"/admin/loyalty/webhookdelivery/{delivery.pk}/change/")]

    assert [page.status_code for page in pages] == [200, 200, 200, 200]
    assert '{&quot;status&quot;: 200}' in pages[3].content.decode()
