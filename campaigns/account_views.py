"""The member's offers in the account pages (/account/offers/) and the call to action's
redirect, which counts the click on the way to the offer's web page.

The pages count the offers they render as viewed (the app counts its own through the API).
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render

from campaigns.models import PromoContent
from campaigns.selectors import offer_shown, offers_shown
from campaigns.services import promo_content_count
from members.account_views import account_context, member_required


@member_required
def offers(request: HttpRequest) -> HttpResponse:
    shown = offers_shown(member=request.member, placement=PromoContent.Placement.ACCOUNT)
    promo_content_count(offer_ids=[offer.pk for offer in shown], counter="views")
    return render(request, "account/offers.html", account_context(request, offers=shown))


@member_required
def offer_open(request: HttpRequest, offer_id: int) -> HttpResponse:
    offer = offer_shown(member=request.member, offer_id=offer_id,
                        placement=PromoContent.Placement.ACCOUNT)
    # A deep link opens the app, not a page: the account shows no button for one.
    if offer is None or not offer.link_opens_web():
        raise Http404("no such offer is shown to you")
    promo_content_count(offer_ids=[offer.pk], counter="clicks")
    return HttpResponseRedirect(offer.link_url)
