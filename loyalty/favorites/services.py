"""The one door through which a member's favorite-product picks change."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from loyalty.favorites.selectors import favorite_candidates
from loyalty.models import FavoriteProductPick, FavoriteProductsOffer, FavoriteProductsSelection
from members.models import Member


class FavoritePicksRefused(Exception):
    """Picks refused, with a stable code: offer_inactive, picks_locked, too_many_picks,
    not_a_candidate. Nothing was changed."""

    def __init__(self, code: str, message: str, *, product_ids: Iterable[int] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.product_ids = sorted(product_ids)


def favorite_picks_replace(*, member: Member, offer: FavoriteProductsOffer,
                           product_ids: Iterable[int],
                           now: datetime | None = None) -> FavoriteProductsSelection:
    """Make the member's picks of the offer exactly `product_ids`.

    Products kept from the previous picks keep their `picked_at`. A product may be picked when
    it is among the member's candidates, or already picked (the marketer may have taken it off
    the fixed list since: the member keeps it until they drop it). The caller has checked that
    the offer's audience holds the member.
    """
    now = now or timezone.now()
    wanted = set(product_ids)
    if not offer.starts_at <= now < offer.ends_at:
        raise FavoritePicksRefused("offer_inactive", "this offer is not running now")
    if offer.picks_locked_at is not None and now >= offer.picks_locked_at:
        raise FavoritePicksRefused(
            "picks_locked", f"picks could be changed until {offer.picks_locked_at.isoformat()}")
    if len(wanted) > offer.pick_limit:
        raise FavoritePicksRefused(
            "too_many_picks", f"at most {offer.pick_limit} products may be picked")
    with transaction.atomic():
        # The row lock makes two saves of the same member (two devices) one after the other.
        selection, created = (FavoriteProductsSelection.objects.select_for_update()
                              .get_or_create(offer=offer, member=member,
                                             defaults={"updated_at": now}))
        current = set(FavoriteProductPick.objects.filter(selection=selection)
                      .values_list("product_id", flat=True))
        allowed = current | {candidate.product_id for candidate in
                             favorite_candidates(member_id=member.pk, offers=[offer])[offer.pk]}
        strangers = wanted - allowed
        if strangers:
            # Raised inside the block: a selection row it created is rolled back with it.
            raise FavoritePicksRefused(
                "not_a_candidate",
                f"not among this member's candidates: {', '.join(map(str, sorted(strangers)))}",
                product_ids=strangers)
        if wanted == current and not created:
            return selection
        FavoriteProductPick.objects.filter(selection=selection).exclude(
            product_id__in=wanted).delete()
        FavoriteProductPick.objects.bulk_create([
            FavoriteProductPick(selection=selection, product_id=product_id, picked_at=now)
            for product_id in sorted(wanted - current)])
        selection.updated_at = now
        selection.save(update_fields=["updated_at"])
    return selection
