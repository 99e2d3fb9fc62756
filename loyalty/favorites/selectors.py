"""Reads of the favorite-products offers: which offers a member sees, their candidate lists,
their picks, and the counts the marketer sees in the admin.

Candidates are computed on demand for one member, in one statement for all the offers they
see, instead of precomputed for every member: at 1M members an `INSERT … SELECT` of 12–20
candidates each would write 12–20M rows per offer, mostly for members who never open the page,
and a fixed list edited afterwards would leave them stale. One member's query reads only their
own order lines in the window (orderline_member_placed_idx holds the product, so the scan is
index-only), the products by primary key, and the few top categories through the category
index, so its cost follows the member's purchases and the size of those categories, never the
number of members.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import (
    BooleanField,
    Count,
    Exists,
    F,
    IntegerField,
    OuterRef,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from loyalty.models import (
    FavoriteProductPick,
    FavoriteProductsOffer,
    LoyaltyAccount,
    OrderLine,
    Product,
)
from members.models import Member

OfferProducts = FavoriteProductsOffer.products.through
OfferTiers = FavoriteProductsOffer.tiers.through


@dataclass(frozen=True)
class Candidate:
    product_id: int
    sku: str
    name: str
    category: str
    price: Decimal
    # Units the member bought in the offer's history window: the history's ranking.
    bought: int
    fixed: bool


@dataclass(frozen=True)
class MemberFavoriteOffer:
    """One offer as the member sees it: their candidates and current picks."""

    offer: FavoriteProductsOffer
    candidates: list[Candidate]
    picks: list[FavoriteProductPick]
    now: datetime

    @property
    def picked_ids(self) -> set[int]:
        return {pick.product_id for pick in self.picks}

    @property
    def can_change(self) -> bool:
        locked_at = self.offer.picks_locked_at
        return locked_at is None or self.now < locked_at

    @property
    def choices(self) -> list[Candidate]:
        """The candidates, then picks that are no longer candidates (the fixed list was
        edited), so a member can see and keep or drop them."""
        listed = {candidate.product_id for candidate in self.candidates}
        return self.candidates + [
            Candidate(product_id=pick.product_id, sku=pick.product.sku, name=pick.product.name,
                      category=pick.product.category, price=pick.product.price, bought=0,
                      fixed=False)
            for pick in self.picks if pick.product_id not in listed]


def member_favorite_offers_visible(*, member: Member) -> QuerySet[FavoriteProductsOffer]:
    """Offers whose audience holds the member, in any period: no tiers, or the member's."""
    member_tier = LoyaltyAccount.objects.filter(member=member).values("tier_id")
    return FavoriteProductsOffer.objects.filter(
        ~Exists(OfferTiers.objects.filter(favoriteproductsoffer_id=OuterRef("pk")))
        | Exists(OfferTiers.objects.filter(favoriteproductsoffer_id=OuterRef("pk"),
                                           tier_id__in=member_tier)))


def member_favorite_offers_active(*, member: Member,
                                  now: datetime | None = None) -> QuerySet[FavoriteProductsOffer]:
    now = now or timezone.now()
    return (member_favorite_offers_visible(member=member)
            .filter(starts_at__lte=now, ends_at__gt=now).order_by("ends_at", "id"))


def _history_window(offer: FavoriteProductsOffer) -> tuple[datetime, datetime]:
    return offer.starts_at - timedelta(days=offer.history_days), offer.starts_at


def _offer_candidates(offer: FavoriteProductsOffer, member_id: int) -> list[QuerySet]:
    """One offer's candidate rows for the member, as disjoint parts for one UNION ALL: the
    fixed list; from the history, up to `history_products` products the member bought in
    their top categories and as many others of those categories, for the caller to rank and
    cut. One IN per part lets PostgreSQL probe products by key; an OR of three IN lists made
    it read the whole catalog."""
    since, until = _history_window(offer)
    lines = OrderLine.objects.filter(member_id=member_id, placed_at__gte=since,
                                     placed_at__lt=until)
    fixed_ids = OfferProducts.objects.filter(favoriteproductsoffer_id=offer.pk).values(
        "product_id")
    units = (lines.filter(product_id=OuterRef("pk")).values("product_id")
             .annotate(units=Sum("quantity")).values("units"))

    def part(ids: QuerySet, *, fixed: bool, bought: Any) -> QuerySet:
        return (Product.objects.filter(id__in=ids)
                .annotate(offer_id=Value(offer.pk, output_field=IntegerField()),
                          bought=bought, fixed=Value(fixed, output_field=BooleanField()))
                .values("offer_id", "id", "sku", "name", "category", "price", "bought",
                        "fixed")
                .order_by())

    parts = []
    if offer.uses_fixed_list:
        parts.append(part(fixed_ids, fixed=True, bought=Coalesce(Subquery(units), 0)))
    if offer.uses_history:
        top_categories = (lines.values("product__category").annotate(units=Sum("quantity"))
                          .order_by("-units", "product__category")
                          .values("product__category")[:offer.history_categories])
        in_top = lines.filter(product__category__in=top_categories)
        others = (Product.objects.filter(category__in=top_categories)
                  .exclude(id__in=lines.values("product_id")))
        if offer.uses_fixed_list:
            # History candidates come beside the fixed list, not in place of its products.
            in_top = in_top.exclude(product_id__in=fixed_ids)
            others = others.exclude(id__in=fixed_ids)
        bought_most = (in_top.values("product_id").annotate(units=Sum("quantity"))
                       .order_by("-units", "product_id")
                       .values("product_id")[:offer.history_products])
        others = others.order_by("name", "id").values("id")[:offer.history_products]
        parts.append(part(bought_most, fixed=False, bought=Coalesce(Subquery(units), 0)))
        parts.append(part(others, fixed=False, bought=Value(0, output_field=IntegerField())))
    return parts


def favorite_candidates(*, member_id: int, offers: Sequence[FavoriteProductsOffer]
                        ) -> dict[int, list[Candidate]]:
    """Each offer's candidates for the member, in one query whatever the number of offers:
    the fixed list and up to `history_products` from the history, the products the member
    bought most first, then by name."""
    found: dict[int, list[Candidate]] = {offer.pk: [] for offer in offers}
    if not offers:
        return found
    parts = [part for offer in offers for part in _offer_candidates(offer, member_id)]
    rows = parts[0].union(*parts[1:], all=True) if len(parts) > 1 else parts[0]
    for row in rows:
        found[row["offer_id"]].append(Candidate(
            product_id=row["id"], sku=row["sku"], name=row["name"], category=row["category"],
            price=row["price"], bought=row["bought"], fixed=row["fixed"]))
    limits = {offer.pk: offer.history_products for offer in offers}
    for offer_id, candidates in found.items():
        candidates.sort(key=lambda c: (-c.bought, c.name, c.product_id))
        history = [candidate for candidate in candidates if not candidate.fixed]
        kept = {c.product_id for c in history[:limits[offer_id]]}
        found[offer_id] = [c for c in candidates if c.fixed or c.product_id in kept]
    return found


def member_favorite_offers(*, member: Member,
                           now: datetime | None = None) -> list[MemberFavoriteOffer]:
    """The member's active offers with their candidates and picks: three queries, whatever
    the number of offers, orders or picks."""
    now = now or timezone.now()
    offers = list(member_favorite_offers_active(member=member, now=now))
    if not offers:
        return []
    candidates = favorite_candidates(member_id=member.pk, offers=offers)
    picks: dict[int, list[FavoriteProductPick]] = {offer.pk: [] for offer in offers}
    for pick in (FavoriteProductPick.objects
                 .filter(selection__member=member, selection__offer_id__in=list(picks))
                 .select_related("product").annotate(offer_id=F("selection__offer_id"))
                 .order_by("picked_at", "id")):
        picks[pick.offer_id].append(pick)
    return [MemberFavoriteOffer(offer=offer, candidates=candidates[offer.pk],
                                picks=picks[offer.pk], now=now) for offer in offers]


@dataclass(frozen=True)
class OfferPickCounts:
    members: int
    products: list[tuple[Product, int]]


def favorite_offer_pick_counts(*, offer: FavoriteProductsOffer,
                               top: int = 10) -> OfferPickCounts:
    """How many members picked something in the offer, and its most picked products."""
    picks = FavoriteProductPick.objects.filter(selection__offer=offer)
    members = picks.values("selection_id").distinct().count()
    most = list(picks.values("product_id").annotate(members=Count("id"))
                .order_by("-members", "product_id")[:top])
    products = Product.objects.in_bulk([row["product_id"] for row in most])
    return OfferPickCounts(members=members,
                           products=[(products[row["product_id"]], row["members"])
                                     for row in most])
