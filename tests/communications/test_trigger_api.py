"""Trigger mailings over the staff API (/api/v1/trigger-mailings/): created with their
trigger, activated, refused with the trigger's field named."""

from __future__ import annotations

import pytest

from communications.models import Mailing
from tests.communications.factories import GatewayFactory, TemplateFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/trigger-mailings/"


def _create(client, **trigger):
    return client.post(URL, {
        "name": "Thanks for your order", "template": TemplateFactory().pk,
        "gateway": GatewayFactory().pk, "trigger": trigger}, content_type="application/json")


def test_a_trigger_mailing_is_created_with_its_trigger_and_activated(marketer_client):
    created = _create(marketer_client, event_type="ORDER_PLACED",
                      conditions=[{"path": "total", "op": "gte", "value": 50}],
                      delay="02:00:00", cancel_on=["ORDER_REFUNDED"], cancel_match="order_id")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["kind"], body["state"]) == ("trigger", "draft")
    assert body["trigger"]["cancel_on"] == ["ORDER_REFUNDED"]

    activated = marketer_client.post(f"{URL}{body['id']}/activate/")

    assert activated.status_code == 200
    assert activated.json()["state"] == "sending"
    assert Mailing.objects.get().state == "sending"


def test_a_bad_condition_is_a_400_naming_the_trigger_field(marketer_client):
    response = _create(marketer_client, event_type="ORDER_PLACED",
                       conditions=[{"path": "total", "op": "gte"}])

    assert response.status_code == 400
    assert response.json()["trigger.conditions"] == [
        "conditions[0].value: required for gte"]
    assert not Mailing.objects.exists()


def test_an_active_trigger_mailing_can_no_longer_be_changed(marketer_client):
    mailing_id = _create(marketer_client, event_type="ORDER_PLACED").json()["id"]
    marketer_client.post(f"{URL}{mailing_id}/activate/")

    response = marketer_client.patch(f"{URL}{mailing_id}/", {"name": "Renamed"},
                                     content_type="application/json")

    assert response.status_code == 400
    assert "can no longer be changed" in response.json()["state"][0]


def test_a_trigger_mailing_is_paused_through_the_mailings_endpoint(marketer_client):
    mailing_id = _create(marketer_client, date_rule="birthday").json()["id"]
    marketer_client.post(f"{URL}{mailing_id}/activate/")

    response = marketer_client.post(f"/api/v1/mailings/{mailing_id}/pause/")

    assert response.status_code == 200
    assert response.json()["state"] == "paused"
