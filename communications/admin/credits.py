"""Credited orders: which campaign and mailing each order was credited to, and why — read-only,
since credits are decided by attribution (communications/services/attribution.py)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from communications.models import OrderCredit
from communications.services.attribution import credit_explain


@admin.register(OrderCredit)
class OrderCreditAdmin(admin.ModelAdmin):
    list_display = ["order", "placed_at", "revenue", "campaign", "mailing", "touch", "touched_at",
                    "reversed_at"]
    list_filter = ["campaign", "touch", ("reversed_at", admin.EmptyFieldListFilter)]
    list_select_related = ["order", "campaign", "mailing"]
    search_fields = ["order__external_id", "member__external_id"]
    search_help_text = "An order's or a member's external id."
    date_hierarchy = "placed_at"
    show_full_result_count = False
    fields = ["order", "member", "placed_at", "revenue", "discount", "points", "campaign",
              "mailing", "message", "touch", "touched_at", "credited_at", "reversed_at",
              "explanation"]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[OrderCredit]:
        return super().get_queryset(request).select_related("member")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: OrderCredit | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: OrderCredit | None = None) -> bool:
        return False

    @admin.display(description="why")
    def explanation(self, credit: OrderCredit) -> str:
        return credit_explain(credit)
