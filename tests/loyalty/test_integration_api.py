"""The integration API's writes: members, orders and vouchers, each with its event."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from loyalty.integration.models import Voucher
from loyalty.integration.services import LineDraft, order_record
from loyalty.models import Event, Order, OrderLine
from members.models import Member
from members.services import member_data_export
from tests.loyalty.factories import ProductFactory
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db


def _order(member: Member, external_id: str = "O-1", sku: str = "SKU-1") -> dict:
    return {"external_id": external_id, "member": member.external_id,
            "placed_at": "2026-12-01T10:00:00+00:00", "total": "19.80",
            "lines": [{"sku": sku, "quantity": 2, "unit_price": "9.90"}]}


def test_member_upsert_creates_the_member_with_member_registered(integration):
    response = integration.post("members/", {"external_id": "E1", "first_name": "Ana",
                                             "email": "ana@example.com"})

    assert response.status_code == 201
    member = Member.objects.get(external_id="E1")
    assert member.first_name == "Ana"
    event = Event.objects.get(member=member)
    assert event.type == Event.Type.MEMBER_REGISTERED


def test_member_upsert_updates_the_member_with_profile_updated(integration):
    member = MemberFactory(external_id="E1", first_name="Ana")

    response = integration.post("members/", {"external_id": "E1", "first_name": "Anna"})

    assert response.status_code == 200
    member.refresh_from_db()
    assert member.first_name == "Anna"
    assert Event.objects.get(member=member).payload["fields"] == ["first_name"]


def test_member_upsert_with_a_bad_field_records_nothing(integration):
    response = integration.post("members/", {"external_id": "E1", "email": "not an address"})

    assert response.status_code == 400
    assert "email" in response.json()
    assert not Member.objects.exists() and not Event.objects.exists()


def test_order_is_recorded_with_its_lines_and_order_placed(integration):
    member = MemberFactory()
    ProductFactory(sku="SKU-1")

    response = integration.post("orders/", _order(member))

    assert response.status_code == 201
    order = Order.objects.get(external_id="O-1")
    line = OrderLine.objects.get(order=order)
    assert (line.member_id, line.placed_at, line.quantity) == (member.pk, order.placed_at, 2)
    event = Event.objects.get(type=Event.Type.ORDER_PLACED)
    assert event.member_id == member.pk
    assert event.payload["order_id"] == "O-1"
    assert event.payload["lines"] == [{"sku": "SKU-1", "quantity": 2, "unit_price": "9.90"}]


def test_order_posted_again_is_not_recorded_twice(integration):
    member = MemberFactory()
    ProductFactory(sku="SKU-1")
    integration.post("orders/", _order(member))

    response = integration.post("orders/", _order(member))

    assert response.status_code == 200
    assert Order.objects.count() == 1
    assert Event.objects.filter(type=Event.Type.ORDER_PLACED).count() == 1


def test_order_of_an_unknown_member_is_400_unknown_member(integration):
    ProductFactory(sku="SKU-1")

    response = integration.post("orders/", _order(Member(external_id="nobody")))

    assert response.status_code == 400
    assert response.json()["code"] == "unknown_member"
    assert not Order.objects.exists()


def test_order_with_an_unknown_product_records_nothing(integration):
    member = MemberFactory()

    response = integration.post("orders/", _order(member, sku="NOPE"))

    assert response.status_code == 400
    assert "NOPE" in str(response.json()["lines"])
    assert not Order.objects.exists() and not Event.objects.exists()


def test_order_rolled_back_leaves_no_event():
    member = MemberFactory()
    ProductFactory(sku="SKU-1")

    with pytest.raises(RuntimeError), transaction.atomic():
        order_record(external_id="O-1", member_external_id=member.external_id,
                     placed_at=timezone.now(), total=Decimal("9.90"), currency="EUR",
                     lines=[LineDraft("SKU-1", 1, Decimal("9.90"))])
        raise RuntimeError("the order's transaction fails after the order was written")

    assert not Order.objects.exists()
    assert not Event.objects.exists()


def test_voucher_is_issued_with_voucher_issued(integration):
    member = MemberFactory()

    response = integration.post("vouchers/", {"code": "V-1", "member": member.external_id,
                                              "kind": "amount", "value": "5.00"})

    assert response.status_code == 201
    assert Voucher.objects.get(code="V-1").member_id == member.pk
    assert Event.objects.get(type=Event.Type.VOUCHER_ISSUED).payload["code"] == "V-1"


def test_voucher_code_issued_twice_is_409_voucher_exists(integration):
    member = MemberFactory()
    integration.post("vouchers/", {"code": "V-1", "member": member.external_id})

    response = integration.post("vouchers/", {"code": "V-1", "member": member.external_id})

    assert response.status_code == 409
    assert response.json()["code"] == "voucher_exists"
    assert Event.objects.filter(type=Event.Type.VOUCHER_ISSUED).count() == 1


def test_voucher_is_redeemed_with_voucher_redeemed(integration):
    member = MemberFactory()
    integration.post("vouchers/", {"code": "V-1", "member": member.external_id})

    response = integration.post("vouchers/V-1/redeem/", {"order": "O-9"})

    assert response.status_code == 200
    assert Voucher.objects.get(code="V-1").redeemed_at is not None
    event = Event.objects.get(type=Event.Type.VOUCHER_REDEEMED)
    assert (event.member_id, event.payload["order_id"]) == (member.pk, "O-9")


def test_voucher_redeemed_twice_is_409_voucher_redeemed(integration):
    member = MemberFactory()
    integration.post("vouchers/", {"code": "V-1", "member": member.external_id})
    integration.post("vouchers/V-1/redeem/", {})

    response = integration.post("vouchers/V-1/redeem/", {})

    assert response.status_code == 409
    assert response.json()["code"] == "voucher_redeemed"
    assert Event.objects.filter(type=Event.Type.VOUCHER_REDEEMED).count() == 1


def test_expired_voucher_is_409_voucher_expired(integration):
    member = MemberFactory()
    Voucher.objects.create(code="V-1", member=member, issued_at=timezone.now(),
                           expires_at=timezone.now() - timedelta(minutes=1))

    response = integration.post("vouchers/V-1/redeem/", {})

    assert response.json()["code"] == "voucher_expired"
    assert Voucher.objects.get(code="V-1").redeemed_at is None


def test_unknown_voucher_is_404(integration):
    assert integration.post("vouchers/NOPE/redeem/", {}).status_code == 404


def test_members_vouchers_are_in_their_data_export(integration):
    member = MemberFactory()
    integration.post("vouchers/", {"code": "V-1", "member": member.external_id,
                                   "kind": "percent", "value": "10"})

    export = member_data_export(member=member, by=None)

    [voucher] = export["vouchers"]
    assert (voucher["code"], voucher["kind"], voucher["value"], voucher["redeemed_at"]) == (
        "V-1", "percent", "10.00", None)
