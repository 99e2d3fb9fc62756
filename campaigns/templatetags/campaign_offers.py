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

    A tag, since showing them on the page counts them (the app counts its own with a call),
    which a members.hooks.ACCOUNT_HOME handler, a read, should not do.
    """
    shown = offers_shown(member=member, placement=PromoContent.Placement.ACCOUNT)[:limit]
    promo_content_count(offer_ids=[offer.pk for offer in shown], counter="views")
    return shown
