"""`Idempotency-Key` on the integration API's writes."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from loyalty.integration.idempotency import idempotency_keys_purge
from loyalty.integration.models import IdempotencyKey
from loyalty.models import Event
from tests.loyalty.factories import ProductFactory
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db

BATCH = {"events": [{"type": "BIRTHDAY"}, {"type": "CART_ABANDONED", "payload": {"items": 1}}]}


def test_replay_returns_the_first_answer_without_recording_again(integration):
    first = integration.post("events/batch/", BATCH, idempotency_key="k-1")

    again = integration.post("events/batch/", BATCH, idempotency_key="k-1")

    assert (again.status_code, again.json()) == (first.status_code, first.json())
    assert again["Idempotent-Replayed"] == "true"
    assert Event.objects.count() == 2


def test_same_key_with_another_body_is_409_idempotency_key_reused(integration):
    integration.post("events/batch/", BATCH, idempotency_key="k-1")

    response = integration.post("events/", {"type": "BIRTHDAY"}, idempotency_key="k-1")

    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_key_reused"
    assert Event.objects.count() == 2


def test_keys_of_another_api_key_do_not_collide(integration, integration_client_with):
    other = integration_client_with("events:write")
    integration.post("events/", {"type": "BIRTHDAY"}, idempotency_key="k-1")

    response = other.post("events/", {"type": "CART_ABANDONED"}, idempotency_key="k-1")

    assert response.status_code == 201
    assert Event.objects.count() == 2


def test_refused_request_is_not_kept_so_a_corrected_retry_runs(integration):
    refused = integration.post("events/", {"type": "NOT_A_TYPE"}, idempotency_key="k-1")

    response = integration.post("events/", {"type": "BIRTHDAY"}, idempotency_key="k-1")

    assert refused.status_code == 400
    assert response.status_code == 201
    assert Event.objects.count() == 1


def test_order_replayed_with_its_key_is_answered_201_again(integration):
    member = MemberFactory()
    ProductFactory(sku="SKU-1")
    order = {"external_id": "O-1", "member": member.external_id,
             "placed_at": "2026-12-01T10:00:00+00:00", "total": "9.90",
             "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price": "9.90"}]}
    first = integration.post("orders/", order, idempotency_key="o-1")

    again = integration.post("orders/", order, idempotency_key="o-1")

    assert first.status_code == again.status_code == 201
    assert Event.objects.filter(type=Event.Type.ORDER_PLACED).count() == 1


def test_key_older_than_the_ttl_is_forgotten(integration, settings):
    settings.ENGAGE_IDEMPOTENCY_TTL = timedelta(hours=24)
    integration.post("events/", {"type": "BIRTHDAY"}, idempotency_key="k-1")
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=25))

    response = integration.post("events/", {"type": "BIRTHDAY"}, idempotency_key="k-1")

    assert "Idempotent-Replayed" not in response
    assert Event.objects.count() == 2


def test_purge_deletes_only_keys_past_the_ttl(integration, settings):
    settings.ENGAGE_IDEMPOTENCY_TTL = timedelta(hours=24)
    integration.post("events/", {"type": "BIRTHDAY"}, idempotency_key="old")
    integration.post("events/", {"type": "BIRTHDAY"}, idempotency_key="new")
    IdempotencyKey.objects.filter(key="old").update(
        created_at=timezone.now() - timedelta(hours=25))

    assert idempotency_keys_purge() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_record_once(integration_client_with):
    integration = integration_client_with("events:write")
    start = threading.Barrier(2)
    answers: list[int] = []

    def post() -> None:
        start.wait()
        try:
            answers.append(integration.post("events/batch/", BATCH,
                                            idempotency_key="k-1").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert answers == [201, 201]
    assert Event.objects.count() == 2
