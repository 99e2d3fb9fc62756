"""A member's orders, vouchers, loyalty account and favorite-product picks, for their data
export.

Registered in `members.hooks` by `LoyaltyConfig.ready()`. There is no erasure handler: orders,
their lines and the account hold nothing that names the person beyond the member link (the
member row itself is anonymized), and they must stay for revenue and tier reports.
"""

from __future__ import annotations

from typing import Any

from django.db.models import F

from loyalty.models import FavoriteProductPick, LoyaltyAccount, Order, OrderLine, Voucher
from members import hooks
from members.models import Member


def member_loyalty_export(member: Member) -> dict[str, Any]:
    account = (LoyaltyAccount.objects.filter(member=member).select_related("tier").first())
    tier = account.tier if account is not None else None
    orders = list(
        Order.objects.filter(member=member).order_by("placed_at", "id")
        .values("id", "external_id", "placed_at", "total", "currency")
    )
    lines_by_order: dict[int, list[dict[str, Any]]] = {order["id"]: [] for order in orders}
    lines = (
        OrderLine.objects.filter(order__member=member).order_by("order_id", "id")
        .values("order_id", "product__sku", "product__name", "quantity", "unit_price")
    )
    for line in lines:
        lines_by_order[line["order_id"]].append({
            "product_sku": line["product__sku"], "product_name": line["product__name"],
            "quantity": line["quantity"], "unit_price": line["unit_price"],
        })
    picks = list(
        FavoriteProductPick.objects.filter(selection__member=member)
        .order_by("selection__offer_id", "picked_at", "id")
        .values("picked_at", offer=F("selection__offer__name"),
                product_sku=F("product__sku"), product_name=F("product__name"))
    )
    return {
        "profile": {"tier": tier.code if tier else None},
        "loyalty_account": None if account is None else {
            "tier": tier.code if tier else None, "tier_name": tier.name if tier else None,
            "tier_since": account.tier_since, "points_balance": account.points_balance,
        },
        "orders": [
            {"external_id": order["external_id"], "placed_at": order["placed_at"],
             "total": order["total"], "currency": order["currency"],
             "lines": lines_by_order[order["id"]]}
            for order in orders
        ],
        "favorite_products": picks,
        "vouchers": list(Voucher.objects.filter(member=member).order_by("issued_at", "id").values(
            "code", "kind", "value", "issued_at", "expires_at", "redeemed_at")),
    }


hooks.MEMBER_EXPORT.append(member_loyalty_export)
