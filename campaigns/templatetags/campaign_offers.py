from __future__ import annotations

from django import template

from campaigns.models import PromoContent
from campaigns.selectors import offers_shown
from campaigns.services import promo_content_count
from members.models import Member

register = template.Library()


@register.simple_tag
def account_home_offers(member: Member, limit: int = 3) -> list[PromoContent]:
    """The account placement's first offers for the account's home page, counted as viewed.

    A tag, since members.hooks.ACCOUNT_HOME gives the app's placement (the home call's), and
    the account's home page includes its templates with that data only.
    """
    shown = offers_shown(member=member, placement=PromoContent.Placement.ACCOUNT)[:limit]
    promo_content_count(offer_ids=[offer.pk for offer in shown], counter="views")
    return shown
