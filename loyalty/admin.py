from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib import admin
from django.http import HttpRequest

# Registers the favorite-products screens, kept with the rest of that sub-domain.
from loyalty.favorites import admin as favorites_admin  # noqa: F401
from loyalty.integration import admin as integration_admin  # noqa: F401
from loyalty.models import LoyaltyAccount, Order, OrderLine, Product, Tier
from loyalty.services import order_lines_follow
from loyalty.webhooks import admin as webhooks_admin  # noqa: F401


@admin.register(Tier)
class TierAdmin(admin.ModelAdmin):
    list_display = ["name", "code", "rank"]
    search_fields = ["name", "code"]


@admin.register(LoyaltyAccount)
class LoyaltyAccountAdmin(admin.ModelAdmin):
    list_display = ["member", "tier", "tier_since", "points_balance"]
    list_filter = ["tier"]
    list_select_related = ["member", "tier"]
    search_fields = ["=member__external_id", "=member__email", "=member__phone"]
    search_help_text = "Exact external id, email or phone of the member."
    show_full_result_count = False
    # A select of every member would render a million options.
    raw_id_fields = ["member"]

    def get_readonly_fields(self, request: HttpRequest,
                            obj: LoyaltyAccount | None = None) -> Sequence[str]:
        # The member is the primary key: changing it would create another account.
        return ["member"] if obj is not None else []


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["sku", "name", "category", "price"]
    list_filter = ["category"]
    search_fields = ["=sku", "name"]
    show_full_result_count = False


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    extra = 0
    raw_id_fields = ["product"]


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["external_id", "member", "placed_at", "total", "currency"]
    list_select_related = ["member"]
    search_fields = ["=external_id", "=member__external_id"]
    search_help_text = "Exact order id or external id of the member."
    show_full_result_count = False
    raw_id_fields = ["member"]
    inlines = [OrderLineInline]
    # Refunds go through the integration API (loyalty.integration.services.order_refund),
    # which records ORDER_REFUNDED and takes the order's campaign credit down with them.
    readonly_fields = ["refunded_amount", "refunded_at", "recorded_at"]

    def save_related(self, request: Any, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # Lines the formset did not touch still hold the order's old member or time.
        order_lines_follow(order=form.instance)
