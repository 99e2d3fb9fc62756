"""Refunds through the integration API: they add up, never pass the total, and take the
order's credit to a campaign down with them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from communications.models import OrderCredit
from communications.services.attribution import orders_attribute
from loyalty.models import Event, Order
from tests.communications.factories import MessageFactory
from tests.loyalty.factories import OrderFactory
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db

DAY = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def credited_order() -> Order:
    member = MemberFactory()
    MessageFactory(member=member, status="delivered", created_at=DAY - timedelta(days=1),
                   delivered_at=DAY - timedelta(days=1))
    order = OrderFactory(member=member, placed_at=DAY, total=Decimal("40.00"))
    orders_attribute(placed_from=DAY, placed_to=DAY + timedelta(days=1))
    return order


def test_a_partial_refund_lowers_the_credited_revenue(integration, credited_order):
    response = integration.post(f"orders/{credited_order.external_id}/refund/",
                                {"amount": "15.00"})

    assert response.status_code == 200
    assert response.json()["refunded_amount"] == "15.00"
    credit = OrderCredit.objects.get(order=credited_order)
    assert (credit.revenue, credit.reversed_at) == (Decimal("25.00"), None)


def test_refunding_what_is_left_reverses_the_credit(integration, credited_order):
    integration.post(f"orders/{credited_order.external_id}/refund/", {"amount": "15.00"})

    response = integration.post(f"orders/{credited_order.external_id}/refund/", {})

    assert response.status_code == 200
    credit = OrderCredit.objects.get(order=credited_order)
    assert credit.revenue == Decimal("0.00") and credit.reversed_at is not None


def test_a_refund_records_order_refunded(integration, credited_order):
    integration.post(f"orders/{credited_order.external_id}/refund/", {"amount": "10.00"})

    event = Event.objects.get(type=Event.Type.ORDER_REFUNDED)
    assert event.member_id == credited_order.member_id
    assert event.payload == {"order_id": credited_order.external_id, "amount": "10.00",
                             "refunded_total": "10.00", "currency": "EUR", "full": False}


def test_a_refund_past_what_is_left_is_refused_and_changes_nothing(integration,
                                                                    credited_order):
    response = integration.post(f"orders/{credited_order.external_id}/refund/",
                                {"amount": "40.01"})

    assert response.status_code == 400
    assert "at most 40.00" in response.json()["amount"][0]
    credited_order.refresh_from_db()
    assert credited_order.refunded_amount == 0
    assert not Event.objects.filter(type=Event.Type.ORDER_REFUNDED).exists()
    assert OrderCredit.objects.get(order=credited_order).revenue == Decimal("40.00")


def test_an_order_refunded_in_full_cannot_be_refunded_again(integration, credited_order):
    integration.post(f"orders/{credited_order.external_id}/refund/", {})

    response = integration.post(f"orders/{credited_order.external_id}/refund/", {})

    assert response.status_code == 409
    assert response.json()["code"] == "order_refunded"


def test_a_retried_refund_with_its_key_refunds_once(integration, credited_order):
    for _ in range(2):
        response = integration.post(f"orders/{credited_order.external_id}/refund/",
                                    {"amount": "5.00"}, idempotency_key="refund-1")
        assert response.status_code == 200

    credited_order.refresh_from_db()
    assert credited_order.refunded_amount == Decimal("5.00")


def test_refunding_an_unknown_order_is_not_found(integration):
    response = integration.post("orders/NOPE/refund/", {})

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_an_order_refunded_before_attribution_is_credited_reversed(integration):
    member = MemberFactory()
    MessageFactory(member=member, status="delivered", created_at=DAY - timedelta(days=1),
                   delivered_at=DAY - timedelta(days=1))
    order = OrderFactory(member=member, placed_at=DAY, total=Decimal("40.00"))
    integration.post(f"orders/{order.external_id}/refund/", {})

    orders_attribute(placed_from=DAY, placed_to=DAY + timedelta(days=1))

    credit = OrderCredit.objects.get(order=order)
    assert credit.revenue == 0 and credit.reversed_at is not None


def test_an_order_records_its_discount_and_points(integration):
    member = MemberFactory()

    response = integration.post("orders/", {
        "external_id": "O-9", "member": member.external_id,
        "placed_at": "2026-12-01T10:00:00+00:00", "total": "45.00", "discount": "5.00",
        "points_earned": 45})

    assert response.status_code == 201
    order = Order.objects.get(external_id="O-9")
    assert (order.discount, order.points_earned) == (Decimal("5.00"), 45)
