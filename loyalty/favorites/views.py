"""The member's favorite-products page (/account/favorites/): each running offer with the
member's candidates as checkboxes; saving goes through the same service as the app's API, so
the limit, the deadline and the candidates are enforced on the server."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_POST

from loyalty.favorites.selectors import (
    MemberFavoriteOffer,
    member_favorite_offers,
    member_favorite_offers_visible,
)
from loyalty.favorites.services import FavoritePicksRefused, favorite_picks_replace
from loyalty.models import FavoriteProductsOffer
from members.account_views import account_context, member_required


def _refusal_text(refused: FavoritePicksRefused, offer: FavoriteProductsOffer) -> str:
    texts = {
        # No plural forms: the catalog's tooling fills and checks singular entries only.
        "too_many_picks": gettext("You picked more products than allowed (%(limit)s). Uncheck "
                                  "some and save again.") % {"limit": offer.pick_limit},
        "picks_locked": gettext("Your picks can no longer be changed."),
        "offer_inactive": gettext("This offer is not running any more."),
        "not_a_candidate": gettext("Some of the products you chose are not offered to you. "
                                   "Please choose from the list."),
    }
    return texts.get(refused.code, refused.message)


def _offer_panel(entry: MemberFavoriteOffer, checked: set[int] | None = None,
                 error: str = "") -> dict[str, Any]:
    checked = entry.picked_ids if checked is None else checked
    return {"entry": entry, "offer": entry.offer, "error": error,
            "choices": [(choice, choice.product_id in checked) for choice in entry.choices],
            "checked_count": len(checked)}


def _page(request: HttpRequest, panels: list[dict[str, Any]], status: int = 200) -> HttpResponse:
    return render(request, "account/favorites.html", account_context(request, panels=panels),
                  status=status)


@member_required
@require_GET
def favorites(request: HttpRequest) -> HttpResponse:
    return _page(request, [_offer_panel(entry)
                           for entry in member_favorite_offers(member=request.member)])


@member_required
@require_POST
def favorites_save(request: HttpRequest, offer_id: int) -> HttpResponse:
    member = request.member
    offer = member_favorite_offers_visible(member=member).filter(pk=offer_id).first()
    if offer is None:
        raise Http404("no such offer")
    raw = request.POST.getlist("product")
    wanted = {int(value) for value in raw if value.isdigit()}
    try:
        if not all(value.isdigit() for value in raw):
            # A value that is no product id is no candidate either.
            raise FavoritePicksRefused("not_a_candidate", "a product value is not an id")
        favorite_picks_replace(member=member, offer=offer, product_ids=wanted)
    except FavoritePicksRefused as refused:
        error = _refusal_text(refused, offer)
        panels = [_offer_panel(entry, wanted, error) if entry.offer.pk == offer.pk
                  else _offer_panel(entry)
                  for entry in member_favorite_offers(member=member)]
        if not any(panel["offer"].pk == offer.pk for panel in panels):
            messages.error(request, error)
        return _page(request, panels, status=400)
    messages.success(request, gettext("Your picks are saved."))
    return redirect(f"{reverse('loyalty-account:favorites')}#offer-{offer.pk}")
