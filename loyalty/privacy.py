"""A member's orders and loyalty account, for their data export.

Registered in `members.hooks` by `LoyaltyConfig.ready()`. There is no erasure handler: orders,
their lines and the account hold nothing that names the person beyond the member link (the
member row itself is anonymized), and they must stay for revenue and tier reports.
"""

from __future__ import annotations

from typing import Any

from loyalty.models import LoyaltyAccount, Order, OrderLine
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
    }


hooks.MEMBER_EXPORT.append(member_loyalty_export)
