from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import factory
from django.utils import timezone

from loyalty.models import (
    FavoriteProductsOffer,
    LoyaltyAccount,
    Order,
    OrderLine,
    Product,
    Store,
    Tier,
)
from tests.members.factories import MemberFactory


class TierFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tier
        django_get_or_create = ("code",)

    code = factory.Iterator(["bronze", "silver", "gold"])
    name = factory.LazyAttribute(lambda t: t.code.title())
    rank = factory.Sequence(int)


class LoyaltyAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LoyaltyAccount

    member = factory.SubFactory(MemberFactory)
    tier = factory.SubFactory(TierFactory)
    tier_since = factory.LazyFunction(timezone.now)


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    sku = factory.Sequence(lambda n: f"SKU-{n:06d}")
    name = factory.Faker("word")
    category = "coffee"
    price = Decimal("9.90")


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order

    member = factory.SubFactory(MemberFactory)
    external_id = factory.Sequence(lambda n: f"O-{n:08d}")
    placed_at = factory.LazyFunction(timezone.now)
    total = Decimal("19.80")


class OrderLineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OrderLine

    order = factory.SubFactory(OrderFactory)
    product = factory.SubFactory(ProductFactory)
    quantity = 2
    unit_price = Decimal("9.90")
    # bulk_create skips OrderLine.save, which copies these from the order.
    member = factory.LazyAttribute(lambda line: line.order.member)
    placed_at = factory.LazyAttribute(lambda line: line.order.placed_at)


class StoreFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Store
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"store-{n}")
    name = factory.LazyAttribute(lambda s: s.code.replace("-", " ").title())
    latitude = 56.9475
    longitude = 24.1069


class FavoriteProductsOfferFactory(factory.django.DjangoModelFactory):
    """Running now (started a day ago, ends in 30 days), picks open, 10 % off up to 3."""

    class Meta:
        model = FavoriteProductsOffer
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Your favorites {n}")
    starts_at = factory.LazyFunction(lambda: timezone.now() - timedelta(days=1))
    ends_at = factory.LazyAttribute(lambda o: o.starts_at + timedelta(days=31))
    pick_limit = 3
    benefit = FavoriteProductsOffer.Benefit.PERCENT_DISCOUNT
    benefit_value = Decimal("10")
    candidate_source = FavoriteProductsOffer.CandidateSource.FIXED

    @factory.post_generation
    def products(self, create, extracted, **kwargs):
        if create and extracted:
            self.products.set(extracted)

    @factory.post_generation
    def tiers(self, create, extracted, **kwargs):
        if create and extracted:
            self.tiers.set(extracted)
