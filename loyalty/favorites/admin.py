"""The marketer's screens for favorite-products offers, and support's read-only view of a
member's picks (picks change only through the member: favorites.services)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Prefetch
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from loyalty.favorites.selectors import OfferPickCounts, favorite_offer_pick_counts
from loyalty.models import FavoriteProductPick, FavoriteProductsOffer, FavoriteProductsSelection


@admin.register(FavoriteProductsOffer)
class FavoriteProductsOfferAdmin(admin.ModelAdmin):
    list_display = ["name", "starts_at", "ends_at", "picks_locked_at", "pick_limit", "benefit",
                    "benefit_value", "candidate_source"]
    list_filter = ["benefit", "candidate_source"]
    search_fields = ["name"]
    date_hierarchy = "starts_at"
    # The catalog may hold many thousands of products.
    autocomplete_fields = ["products"]
    filter_horizontal = ["tiers"]
    readonly_fields = ["members_picked", "most_picked"]
    fieldsets = [
        (None, {"fields": ["name", "starts_at", "ends_at", "picks_locked_at"]}),
        ("Picks and benefit", {"fields": ["pick_limit", "benefit", "benefit_value"]}),
        ("Candidates", {
            "fields": ["candidate_source", "products", "history_days", "history_categories",
                       "history_products"],
            "description": "Each member's list: the fixed products, the products of the "
                           "categories they bought most before the offer starts, or both."}),
        ("Audience", {"fields": ["tiers"]}),
        ("Picks so far", {"fields": ["members_picked", "most_picked"]}),
    ]

    def _counts(self, offer: FavoriteProductsOffer) -> OfferPickCounts | None:
        if offer.pk is None:
            return None
        # Both read-only fields show parts of one count; compute it once per page.
        if not hasattr(offer, "_pick_counts"):
            offer._pick_counts = favorite_offer_pick_counts(offer=offer)
        return offer._pick_counts

    @admin.display(description="Members who picked")
    def members_picked(self, offer: FavoriteProductsOffer) -> int | str:
        counts = self._counts(offer)
        return "—" if counts is None else counts.members

    @admin.display(description="Most picked products")
    def most_picked(self, offer: FavoriteProductsOffer) -> str:
        counts = self._counts(offer)
        if counts is None or not counts.products:
            return "—"
        rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                                ((product.sku, product.name, members)
                                 for product, members in counts.products))
        return format_html("<table><thead><tr><th>SKU</th><th>Product</th><th>Members</th>"
                           "</tr></thead><tbody>{}</tbody></table>", rows)


class FavoriteProductPickInline(admin.TabularInline):
    model = FavoriteProductPick
    fields = ["product", "picked_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(FavoriteProductsSelection)
class FavoriteProductsSelectionAdmin(admin.ModelAdmin):
    list_display = ["member", "offer", "picked_products", "updated_at"]
    list_filter = ["offer"]
    list_select_related = ["member", "offer"]
    search_fields = ["=member__external_id"]
    search_help_text = "Exact external id of the member."
    show_full_result_count = False
    readonly_fields = ["offer", "member", "created_at", "updated_at"]
    inlines = [FavoriteProductPickInline]

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).prefetch_related(Prefetch(
            "picks", queryset=FavoriteProductPick.objects.select_related("product")
            .order_by("product__sku")))

    @admin.display(description="Products")
    def picked_products(self, selection: FavoriteProductsSelection) -> str:
        return ", ".join(pick.product.sku for pick in selection.picks.all()) or "—"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Viewable, never edited here: the member's picks change through their own service.
        return False
