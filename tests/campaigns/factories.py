from __future__ import annotations

import factory
from django.utils import timezone

from campaigns.models import Campaign, StaticList, StaticListMember, TargetGroup
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
