from __future__ import annotations

import factory
from django.utils import timezone

from members.models import Consent, Member, SubscriptionCategory


class MemberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Member

    external_id = factory.Sequence(lambda n: f"M{n:08d}")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    email = factory.LazyAttribute(lambda m: f"{m.external_id.lower()}@members.example.com")
    phone = factory.Sequence(lambda n: f"+49151{n:08d}")
    language = "en"
    timezone = "Europe/Berlin"


class ConsentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Consent

    member = factory.SubFactory(MemberFactory)
    channel = "email"
    purpose = Consent.Purpose.MARKETING
    state = Consent.State.GRANTED
    source = Consent.Source.IMPORT
    recorded_at = factory.LazyFunction(timezone.now)


def consenting_member(*, channel: str = "email", **fields) -> Member:
    member = MemberFactory(**fields)
    ConsentFactory(member=member, channel=channel)
    return member


class SubscriptionCategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SubscriptionCategory
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"category-{n}")
    name = factory.LazyAttribute(lambda c: c.code.replace("-", " ").title())


class CustomAttributeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "members.CustomAttribute"
        django_get_or_create = ("key",)

    key = factory.Sequence(lambda n: f"attribute_{n}")
    label = factory.LazyAttribute(lambda a: a.key.replace("_", " ").capitalize())
    type = "string"


class DeviceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "members.Device"

    member = factory.SubFactory(MemberFactory)
    platform = "fcm"
    token = factory.Sequence(lambda n: f"push-token-{n:08d}")
    is_active = True


class MessengerAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "members.MessengerAccount"

    member = factory.SubFactory(MemberFactory)
    network = "viber"
    account_id = factory.Sequence(lambda n: f"account-{n:08d}")
    is_active = True


class SuppressionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "members.Suppression"

    channel = "email"
    address = factory.Sequence(lambda n: f"suppressed-{n}@members.example.com")
    reason = "hard_bounce"
