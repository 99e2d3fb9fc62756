"""The batched receipts webhook: signed, acknowledged at once, all or nothing."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from communications.models import Message, ProviderReceipt
from communications.services.statuses import receipts_apply
from communications.webhooks import webhook_signature
from tests.communications.factories import GatewayFactory, MessageFactory

pytestmark = pytest.mark.django_db
SECRET = "s3cret-of-the-provider"


@pytest.fixture
def gateway():
    return GatewayFactory(settings={"host": "127.0.0.1", "port": 25,
                                    "inbound_secret": SECRET})


def _post(client, gateway, payload, *, secret: str = SECRET):
    body = json.dumps(payload).encode()
    return client.post(reverse("gateway-receipts", args=[gateway.pk]), body,
                       content_type="application/json",
                       headers={"X-Engage-Signature": webhook_signature(secret=secret,
                                                                        body=body)})


def _receipt(provider_id: str, status: str = "delivered") -> dict:
    return {"provider_id": provider_id, "status": status, "occurred_at": "2026-12-01T10:00:00Z"}


def test_a_signed_batch_is_stored_and_acknowledged_with_202(client, gateway):
    response = _post(client, gateway, {"receipts": [_receipt("p-1"), _receipt("p-2")]})

    assert (response.status_code, response.json()) == (202, {"accepted": 2})
    assert set(ProviderReceipt.objects.values_list("provider_id", flat=True)) == {"p-1", "p-2"}


def test_stored_receipts_move_their_messages_when_applied(client, gateway):
    message = MessageFactory(gateway=gateway, provider_id="p-1", status="sent")
    _post(client, gateway, {"receipts": [_receipt("p-1", "opened")]})

    receipts_apply()

    message.refresh_from_db()
    assert message.status == Message.Status.OPENED


def test_a_batch_signed_with_another_secret_is_refused_with_403(client, gateway):
    response = _post(client, gateway, {"receipts": [_receipt("p-1")]}, secret="guess")

    assert response.status_code == 403
    assert response.json()["code"] == "bad_signature"
    assert not ProviderReceipt.objects.exists()


def test_a_batch_with_one_bad_receipt_is_refused_whole_naming_it(client, gateway):
    response = _post(client, gateway, {"receipts": [
        _receipt("p-1"), {"provider_id": "p-2", "status": "sent",
                          "occurred_at": "yesterday"}]})

    assert response.status_code == 400
    errors = response.json()["receipts"]
    assert set(errors) == {"1"}
    assert set(errors["1"]) == {"status", "occurred_at"}
    assert not ProviderReceipt.objects.exists()


def test_a_time_without_utc_offset_is_refused(client, gateway):
    response = _post(client, gateway, {"receipts": [
        {**_receipt("p-1"), "occurred_at": "2026-12-01T10:00:00"}]})

    assert response.status_code == 400
    assert "UTC offset" in response.json()["receipts"]["0"]["occurred_at"]


def test_an_empty_batch_is_refused(client, gateway):
    response = _post(client, gateway, {"receipts": []})

    assert response.status_code == 400


def test_an_unknown_gateway_answers_404(client, gateway):
    response = client.post(reverse("gateway-receipts", args=[gateway.pk + 1000]), b"{}",
                           content_type="application/json")

    assert response.status_code == 404
