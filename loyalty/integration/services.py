"""Use cases of the integration API: orders and vouchers, each recorded with its event in one
transaction (the event log is the outbox, so an event exists exactly when its change did)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from loyalty import hooks as loyalty_hooks
from loyalty.integration.events import event_new, events_append
from loyalty.integration.models import Voucher
from loyalty.models import Event, Order, OrderLine, Product
from members import hooks
from members.models import Member
from members.services import member_upsert


@dataclass
class Refused(Exception):
    """A request the state refuses: a stable code and a sentence for the caller."""

    code: str
    message: str


@dataclass(frozen=True)
class LineDraft:
    sku: str
    quantity: int
    unit_price: Decimal


def member_by_external_id(external_id: str) -> Member:
    member = (Member.objects.filter(external_id=external_id)
              .exclude(status=Member.Status.ERASED).first())
    if member is None:
        raise Refused("unknown_member", f"no member has the external id {external_id!r}")
    return member


@transaction.atomic
def order_record(*, external_id: str, member_external_id: str, placed_at: datetime,
                 total: Decimal, currency: str, lines: Sequence[LineDraft],
                 discount: Decimal = Decimal(0), points_earned: int = 0
                 ) -> tuple[Order, bool]:
    """Record an order with its lines and its ORDER_PLACED event; returns (order, created).

    An order already recorded under `external_id` is returned as it is: a retried POST never
    records a purchase twice.
    """
    existing = Order.objects.filter(external_id=external_id).first()
    if existing is not None:
        return existing, False
    member = member_by_external_id(member_external_id)
    skus = {line.sku for line in lines}
    products = dict(Product.objects.filter(sku__in=skus).values_list("sku", "pk"))
    unknown = sorted(skus - products.keys())
    if unknown:
        raise ValidationError({"lines": f"unknown products: {', '.join(unknown)}"})
    try:
        with transaction.atomic():
            order = Order.objects.create(member=member, external_id=external_id,
                                         placed_at=placed_at, total=total, currency=currency,
                                         discount=discount, points_earned=points_earned)
    except IntegrityError:
        # The same order posted twice at once: the other request recorded it.
        return Order.objects.get(external_id=external_id), False
    # bulk_create skips OrderLine.save, so the copies of the order's member and time are set here.
    OrderLine.objects.bulk_create([
        OrderLine(order=order, product_id=products[line.sku], quantity=line.quantity,
                  unit_price=line.unit_price, member_id=member.pk, placed_at=placed_at)
        for line in lines])
    events_append([event_new(type=Event.Type.ORDER_PLACED, member_id=member.pk,
                             occurred_at=placed_at, payload=order_payload(order, lines))])
    hooks.members_changed([member.pk])
    return order, True


def order_payload(order: Order, lines: Sequence[LineDraft]) -> dict[str, Any]:
    return {"order_id": order.external_id, "total": str(order.total), "currency": order.currency,
            "discount": str(order.discount), "points_earned": order.points_earned,
            "lines": [{"sku": line.sku, "quantity": line.quantity,
                       "unit_price": str(line.unit_price)} for line in lines]}


@transaction.atomic
def order_refund(*, external_id: str, amount: Decimal | None = None,
                 refunded_at: datetime | None = None) -> Order:
    """Refund an order in part or in full (no `amount`: whatever is left of it), with its
    ORDER_REFUNDED event; the order's credit to a campaign follows in the same transaction
    (loyalty.hooks.ORDER_REFUNDED). Refunds add up and never pass the order's total."""
    order = Order.objects.select_for_update().filter(external_id=external_id).first()
    if order is None:
        raise Refused("not_found", f"no order has the external id {external_id!r}")
    left = order.total - order.refunded_amount
    if left <= 0 and order.refunded_at is not None:
        raise Refused("order_refunded",
                      f"this order was refunded in full at {order.refunded_at.isoformat()}")
    amount = left if amount is None else amount
    if amount <= 0 and left > 0:
        raise ValidationError({"amount": "must be more than 0"})
    if amount > left:
        raise ValidationError({"amount": f"at most {left}, what is left of the order's total"})
    order.refunded_amount += amount
    order.refunded_at = refunded_at or timezone.now()
    order.save(update_fields=["refunded_amount", "refunded_at"])
    events_append([event_new(type=Event.Type.ORDER_REFUNDED, member_id=order.member_id,
                             occurred_at=order.refunded_at,
                             payload={"order_id": order.external_id, "amount": str(amount),
                                      "refunded_total": str(order.refunded_amount),
                                      "currency": order.currency,
                                      "full": order.refunded_amount >= order.total})])
    for handler in loyalty_hooks.ORDER_REFUNDED:
        handler(order)
    return order


def voucher_payload(voucher: Voucher) -> dict[str, Any]:
    return {"code": voucher.code, "kind": voucher.kind, "value": str(voucher.value),
            "expires_at": voucher.expires_at.isoformat() if voucher.expires_at else None}


@transaction.atomic
def voucher_issue(*, code: str, member_external_id: str, kind: str, value: Decimal,
                  expires_at: datetime | None) -> Voucher:
    """Issue a voucher to a member, with its VOUCHER_ISSUED event."""
    member = member_by_external_id(member_external_id)
    if kind not in Voucher.Kind.values:
        raise ValidationError({"kind": f"one of {', '.join(Voucher.Kind.values)}"})
    now = timezone.now()
    if expires_at is not None and expires_at <= now:
        raise ValidationError({"expires_at": "must be in the future"})
    try:
        with transaction.atomic():
            voucher = Voucher.objects.create(code=code, member=member, kind=kind, value=value,
                                             issued_at=now, expires_at=expires_at)
    except IntegrityError as exc:
        raise Refused("voucher_exists", f"a voucher with the code {code!r} exists") from exc
    events_append([event_new(type=Event.Type.VOUCHER_ISSUED, member_id=member.pk,
                             occurred_at=now, payload=voucher_payload(voucher))])
    return voucher


@transaction.atomic
def voucher_redeem(*, code: str, order_external_id: str | None = None) -> Voucher:
    """Redeem a voucher once, with its VOUCHER_REDEEMED event."""
    voucher = Voucher.objects.select_for_update().filter(code=code).first()
    if voucher is None:
        raise Refused("not_found", f"no voucher has the code {code!r}")
    now = timezone.now()
    if voucher.redeemed_at is not None:
        raise Refused("voucher_redeemed",
                      f"this voucher was redeemed at {voucher.redeemed_at.isoformat()}")
    if voucher.expires_at is not None and voucher.expires_at <= now:
        raise Refused("voucher_expired",
                      f"this voucher expired at {voucher.expires_at.isoformat()}")
    voucher.redeemed_at = now
    voucher.save(update_fields=["redeemed_at"])
    payload: Mapping[str, Any] = {**voucher_payload(voucher), "order_id": order_external_id}
    events_append([event_new(type=Event.Type.VOUCHER_REDEEMED, member_id=voucher.member_id,
                             occurred_at=now, payload=payload)])
    return voucher


@transaction.atomic
def member_sync(*, external_id: str, data: Mapping[str, Any]) -> tuple[Member, bool]:
    """member_upsert for the loyalty engine, with its MEMBER_REGISTERED or PROFILE_UPDATED
    event in the same transaction."""
    member, created = member_upsert(external_id=external_id, data=data)
    events_append([event_new(
        type=Event.Type.MEMBER_REGISTERED if created else Event.Type.PROFILE_UPDATED,
        member_id=member.pk, payload={"external_id": member.external_id,
                                      "fields": sorted(data)})])
    return member, created
