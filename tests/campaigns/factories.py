from __future__ import annotations

import datetime as dt

import factory
from django.utils import timezone

from campaigns.models import Campaign, PromoContent, StaticList, StaticListMember, TargetGroup
from campaigns.services import promo_content_save
from tests.members.factories import MemberFactory


class CampaignFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Campaign

    name = factory.Sequence(lambda n: f"Campaign {n}")


class TargetGroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TargetGroup

    name = factory.Sequence(lambda n: f"Target group {n}")
    rules = factory.LazyFunction(list)


class StaticListFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StaticList

    name = factory.Sequence(lambda n: f"Static list {n}")
    taken_at = factory.LazyFunction(timezone.now)


class StaticListMemberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StaticListMember

    static_list = factory.SubFactory(StaticListFactory)
    member = factory.SubFactory(MemberFactory)


class PromoContentFactory(factory.django.DjangoModelFactory):
    """A live offer for every member on both placements; saved through its service."""

    class Meta:
        model = PromoContent

    title = factory.Sequence(lambda n: f"Offer {n}")
    text = "Double points on every purchase."
    link_url = "https://shop.example.com/offer"
    link_label = "See the offer"
    starts_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(days=1))
    ends_at = factory.LazyFunction(lambda: timezone.now() + dt.timedelta(days=7))

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return promo_content_save(offer=model_class(*args, **kwargs))
