"""Order lines keep a copy of their order's member and time (for purchase rules)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from loyalty.models import OrderLine
from loyalty.services import order_lines_follow
from tests.loyalty.factories import OrderFactory, ProductFactory
from tests.members.factories import MemberFactory


@pytest.mark.django_db
def test_a_saved_line_takes_its_orders_member_and_time():
    order = OrderFactory(placed_at=timezone.now() - dt.timedelta(days=3))

    line = OrderLine(order=order, product=ProductFactory(), unit_price="2.50")
    line.save()

    line.refresh_from_db()
    assert (line.member_id, line.placed_at) == (order.member_id, order.placed_at)


@pytest.mark.django_db
def test_lines_follow_an_edited_order():
    order = OrderFactory()
    OrderLine(order=order, product=ProductFactory(), unit_price="2.50").save()
    order.member = MemberFactory()
    order.placed_at = timezone.now() - dt.timedelta(days=40)
    order.save()

    changed = order_lines_follow(order=order)

    assert changed == 1
    assert list(OrderLine.objects.values_list("member_id", "placed_at")) == [
        (order.member_id, order.placed_at)]


@pytest.mark.django_db
def test_lines_already_following_their_order_are_not_rewritten():
    order = OrderFactory()
    OrderLine(order=order, product=ProductFactory(), unit_price="2.50").save()

    assert order_lines_follow(order=order) == 0


@pytest.mark.django_db
def test_editing_an_order_in_the_admin_moves_its_lines(marketer_client):
    order = OrderFactory()
    line = OrderLine(order=order, product=ProductFactory(), unit_price="2.50")
    line.save()
    placed_at = timezone.localtime(order.placed_at - dt.timedelta(days=10))
    other = MemberFactory()

    response = marketer_client.post(reverse("admin:loyalty_order_change", args=[order.pk]), {
        "member": other.pk, "external_id": order.external_id,
        "placed_at_0": placed_at.strftime("%Y-%m-%d"),
        "placed_at_1": placed_at.strftime("%H:%M:%S"),
        "total": "19.80", "currency": "EUR", "discount": "0", "points_earned": "0",
        "lines-TOTAL_FORMS": "1", "lines-INITIAL_FORMS": "1",
        "lines-0-id": line.pk, "lines-0-order": order.pk, "lines-0-product": line.product_id,
        "lines-0-quantity": "1", "lines-0-unit_price": "2.50",
    })

    assert response.status_code == 302, response.content.decode()[:2000]
    line.refresh_from_db()
    assert line.member_id == other.pk
    assert line.placed_at == placed_at.replace(microsecond=0)
