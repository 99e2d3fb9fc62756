"""A program's worth of varied members to check target-group rules on, built once per module.

The module-scoped fixture `segment` (import `segment_fixture` into a test module) builds the
data inside one transaction that stays open while the module's tests run and is rolled back
after them, so hypothesis examples all read the same rows and nothing is left behind.
`assert_like_reference` compares the compiled queryset with the plain-Python reading of the
document.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from django.db import DatabaseError, transaction

from campaigns.rules import rules_members
from communications.models import Message
from loyalty.models import LoyaltyAccount, Order, OrderLine
from members.models import Consent, Device, Member, MessengerAccount, Suppression
from tests.campaigns.factories import (
    CampaignFactory,
    StaticListFactory,
    StaticListMemberFactory,
    TargetGroupFactory,
)
from tests.campaigns.reference import World, reference_members, world_load
from tests.communications.factories import MailingFactory, MessageFactory
from tests.loyalty.factories import (
    LoyaltyAccountFactory,
    OrderFactory,
    OrderLineFactory,
    ProductFactory,
    StoreFactory,
    TierFactory,
)
from tests.members.factories import (
    ConsentFactory,
    CustomAttributeFactory,
    DeviceFactory,
    MemberFactory,
    MessengerAccountFactory,
    SubscriptionCategoryFactory,
    SuppressionFactory,
)

UTC = dt.UTC
NOW = dt.datetime(2025, 12, 20, 15, 0, tzinfo=UTC)
# Moments whose "today" tests birthdays and ages: New Year, 28/29 February and 1 March in leap
# and other years, and the last second of a year.
BIRTHDAY_NOWS = (
    NOW,
    dt.datetime(2025, 2, 28, 12, 0, tzinfo=UTC),
    dt.datetime(2024, 2, 28, 12, 0, tzinfo=UTC),
    dt.datetime(2024, 2, 29, 12, 0, tzinfo=UTC),
    dt.datetime(2025, 3, 1, 0, 0, tzinfo=UTC),
    dt.datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC),
    dt.datetime(2026, 1, 1, 0, 0, tzinfo=UTC),
    dt.datetime(2025, 6, 30, 8, 0, tzinfo=UTC),
)
MEMBERS = 160
# Windows and "days" that sit on the data's edges (see _moment()).
EDGE_DAYS = (1, 7, 30, 90, 365)
ATTRIBUTES = {
    "nickname": "string",
    "visits": "integer",
    "score": "number",
    "vip": "boolean",
    "anniversary": "date",
    "flavour": "choice",
    "spare": "string",  # declared, held by nobody
}
FLAVOURS = ["espresso", "latte", "tea"]
TIERS = ["bronze", "silver", "gold", "platinum"]  # nobody is platinum
CHANNELS = ["email", "sms", "push", "viber", "social"]
STORES = {"old-town": (56.9475, 24.1069), "mall-east": (56.96, 24.2),
          "tallinn": (59.437, 24.7536)}
PRODUCTS = {"ESP-1": "coffee", "LAT-2": "coffee", "CAP-3": "coffee", "GRN-4": "tea",
            "BLK-5": "tea", "CRO-6": "pastry", "MUF-7": "pastry", "MUG-8": "merch",
            "BAG-9": "merch", "NEW-0": "seasonal"}  # NEW-0 and "seasonal": never bought

TEXTS = {
    "first_name": ["Anna", "anna", "ANNA", "Annika", "Ēriks", "Zoë", "O'Brien", "50%off",
                   "under_score", "Jānis", ""],
    "last_name": ["Bērziņa", "Ozols", "ozols", "Smith", "Smith-Jones", "Kalniņš", "", "x_y"],
    "language": ["en", "lv", "ru", "de", "en", "lv", ""],
    "timezone": ["Europe/Riga", "UTC", "Europe/Berlin", "Europe/Tallinn"],
    "city": ["Riga", "Riga", "Rīga", "riga", "RIGA", "Riga ", "Jūrmala", "Daugavpils",
             "Tallinn", "", "", "Rigas rajons"],
    "region": ["Vidzeme", "Kurzeme", "Latgale", "Harju", "", ""],
    "country": ["LV", "LV", "EE", "LT", "DE", ""],
    "registration_source": ["shop", "app", "pos", "import", "Shop", "", "app-ios"],
}
NICKNAMES = ["", "Gold fan", "gold", "GOLDIE", "x%y", "a_b", "Ūdens", "latte lover"]
SCORES = [0, 0.1, 0.5, 2.25, -1.5, 10, 1000, 99.99]
VISITS = [-3, 0, 1, 2, 5, 10, 100]
ANNIVERSARIES = ["2025-01-01", "1999-12-31", "2024-02-29", "2025-12-20", "2010-06-15"]
TOTALS = [Decimal(v) for v in ("0.00", "5.00", "10.00", "10.01", "19.99", "20.00", "49.50",
                               "100.00", "250.75", "0.10", "33.33")]


@dataclass(repr=False)
class Segment:
    """The generated data: `world` for the reference, ids and values for the strategies."""

    world: World
    now: dt.datetime = NOW
    mailings: list[int] = field(default_factory=list)
    campaigns: list[int] = field(default_factory=list)
    static_lists: list[int] = field(default_factory=list)
    target_groups: list[int] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"<Segment of {len(self.world.members)} members>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis' reports
        printer.text(repr(self))

    def reload(self) -> None:
        self.world = world_load()


def ids(tree: Any, *, now: dt.datetime = NOW) -> set[int]:
    # No savepoint per query (three round trips instead of one): a query the database refuses
    # fails the test, and hypothesis' replays then report it as flaky, the refusal first.
    try:
        return set(rules_members(tree, now=now).values_list("pk", flat=True))
    except DatabaseError as error:
        raise AssertionError(f"the database refused tree {tree!r}: {error}") from error


def assert_like_reference(tree: Any, segment: Segment, *, now: dt.datetime = NOW) -> set[int]:
    """The compiled tree selects exactly the members the document says; returns them."""
    compiled = ids(tree, now=now)
    expected = reference_members(tree, segment.world, now)
    if compiled != expected:
        rows = {member_id: segment.world.members[member_id]
                for member_id in sorted(compiled ^ expected)[:5]}
        raise AssertionError(
            f"tree {tree!r} at {now.isoformat()}:\n"
            f"  only compiled: {sorted(compiled - expected)}\n"
            f"  only reference: {sorted(expected - compiled)}\n"
            f"  some of them: {rows}")
    return compiled


@pytest.fixture(scope="module", name="segment")
def segment_fixture(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock(), transaction.atomic():
        built = segment_build()
        yield built
        transaction.set_rollback(True)


def _moment(rng: random.Random) -> dt.datetime:
    """A past moment, often on the edge of a window of EDGE_DAYS or of a calendar day."""
    roll = rng.random()
    if roll < 0.3:
        edge = NOW - dt.timedelta(days=rng.choice(EDGE_DAYS))
        return edge + rng.choice([dt.timedelta(0), dt.timedelta(seconds=-1),
                                  dt.timedelta(seconds=1)])
    if roll < 0.45:
        midnight = dt.datetime.combine((NOW - dt.timedelta(days=rng.randint(1, 400))).date(),
                                       dt.time(), tzinfo=UTC)
        return midnight + rng.choice([dt.timedelta(0), dt.timedelta(microseconds=-1),
                                      dt.timedelta(hours=12)])
    return NOW - dt.timedelta(seconds=rng.randint(60, 1500 * 86400))


def _later(rng: random.Random, after: dt.datetime) -> dt.datetime:
    """A moment after `after` (often on a window's edge), when a message was opened or clicked."""
    moment = _moment(rng)
    return moment if moment >= after else min(after + dt.timedelta(minutes=rng.randint(0, 9000)),
                                              NOW)


def _birth_date(rng: random.Random) -> dt.date | None:
    roll = rng.random()
    if roll < 0.15:
        return None
    if roll < 0.3:
        year = rng.choice([1996, 2000, 2004, 2007, 2008])
        return dt.date(year, 2, 29) if year % 4 == 0 and rng.random() < 0.6 else dt.date(
            year, rng.choice([2, 3]), 28 if rng.random() < 0.5 else 1)
    if roll < 0.75:
        # Around one of the tested todays, at an age boundary (18, 30, 65, 0...).
        today = rng.choice(BIRTHDAY_NOWS).date()
        years = rng.choice([0, 1, 17, 18, 30, 64, 65, 100])
        shifted = today + dt.timedelta(days=rng.choice([-3, -1, 0, 0, 1, 2, 12, 30]))
        try:
            return shifted.replace(year=shifted.year - years)
        except ValueError:  # 29 February in a year without one
            return dt.date(shifted.year - years, 3, 1)
    if roll < 0.85:
        return dt.date(rng.randint(1950, 2012), rng.choice([12, 1]),
                       rng.choice([1, 2, 30, 31]) if rng.random() < 0.5 else 15)
    return dt.date(1940, 1, 1) + dt.timedelta(days=rng.randint(0, 27000))


def _location(rng: random.Random) -> tuple[float | None, float | None]:
    roll = rng.random()
    if roll < 0.25:
        return None, None
    if roll < 0.7:
        return 56.95 + rng.uniform(-0.2, 0.2), 24.1 + rng.uniform(-0.4, 0.4)
    if roll < 0.85:
        return rng.choice([(59.437, 24.7536), (54.6872, 25.2797), (52.52, 13.405)])
    return rng.choice([(0.0, 179.95), (0.0, -179.95), (89.99, 10.0), (-89.99, 45.0),
                       (-33.87, 151.21), (56.9475, 24.1069)])


def _attributes(rng: random.Random) -> dict[str, Any]:
    values = {
        "nickname": rng.choice(NICKNAMES),
        "visits": rng.choice(VISITS),
        "score": rng.choice(SCORES),
        "vip": rng.choice([True, False]),
        "anniversary": rng.choice(ANNIVERSARIES),
        "flavour": rng.choice(FLAVOURS),
    }
    attributes: dict[str, Any] = {}
    for key, value in values.items():
        roll = rng.random()
        if roll < 0.25:
            continue  # the key is missing
        attributes[key] = None if roll < 0.35 else value
    return attributes


def _members(rng: random.Random) -> list[Member]:
    members = []
    for n in range(MEMBERS):
        email_roll = rng.random()
        # Stored as the profile service normalizes them: lower-case.
        email = "" if email_roll < 0.12 else (
            f"first.last{n}@members.example.com" if email_roll < 0.2
            else f"m{n}@members.example.com")
        lat, lon = _location(rng)
        members.append(MemberFactory.build(
            external_id=f"SEG-{n:04d}" if n % 7 else f"seg-{n:04d}",
            first_name=rng.choice(TEXTS["first_name"]),
            last_name=rng.choice(TEXTS["last_name"]),
            email=email,
            email_verified_at=_moment(rng) if email and rng.random() < 0.6 else None,
            phone="" if rng.random() < 0.15 else f"+3712{n:07d}",
            language=rng.choice(TEXTS["language"]),
            timezone=rng.choice(TEXTS["timezone"]),
            city=rng.choice(TEXTS["city"]),
            region=rng.choice(TEXTS["region"]),
            country=rng.choice(TEXTS["country"]),
            registration_source=rng.choice(TEXTS["registration_source"]),
            gender=rng.choice(["female", "male", "other", "", "female"]),
            status=rng.choice(["active"] * 8 + ["blocked", "erased"]),
            birth_date=_birth_date(rng),
            registered_at=None if rng.random() < 0.15 else _moment(rng),
            latitude=lat,
            longitude=lon,
            custom_attributes=_attributes(rng),
        ))
    Member.objects.bulk_create(members)
    for member in members:  # created_at is set on insert; move it into the past
        member.created_at = _moment(rng)
    Member.objects.bulk_update(members, ["created_at"])
    return members


def _loyalty(rng: random.Random, members: list[Member]) -> None:
    tiers = [TierFactory(code=code, rank=rank) for rank, code in enumerate(TIERS)]
    accounts = [
        LoyaltyAccountFactory.build(
            member=member,
            tier=None if rng.random() < 0.15 else rng.choice(tiers[:3]),
            tier_since=None if rng.random() < 0.2 else _moment(rng),
        )
        for member in members if rng.random() < 0.75
    ]
    LoyaltyAccount.objects.bulk_create(accounts)
    products = {sku: ProductFactory(sku=sku, category=category)
                for sku, category in PRODUCTS.items()}
    bought = [product for sku, product in products.items() if sku != "NEW-0"]
    orders, lines = [], []
    for member in members:
        for _ in range(rng.choice([0, 0, 1, 1, 2, 3, 5])):
            order = OrderFactory.build(member=member, placed_at=_moment(rng),
                                       total=rng.choice(TOTALS))
            orders.append(order)
            for product in rng.sample(bought, rng.choice([0, 1, 1, 2, 3])):
                lines.append(OrderLineFactory.build(order=order, product=product))
    Order.objects.bulk_create(orders)
    OrderLine.objects.bulk_create(lines)
    for code, (lat, lon) in STORES.items():
        StoreFactory(code=code, latitude=lat, longitude=lon)


def _reach(rng: random.Random, members: list[Member]) -> None:
    offers = SubscriptionCategoryFactory(code="offers")
    consents = []
    for member in members:
        for channel in CHANNELS:
            roll = rng.random()
            if roll < 0.45:
                consents.append(ConsentFactory.build(member=member, channel=channel))
            elif roll < 0.55:
                consents.append(ConsentFactory.build(member=member, channel=channel,
                                                     state="withdrawn"))
            elif roll < 0.65:  # a category-only grant
                consents.append(ConsentFactory.build(member=member, channel=channel,
                                                     category=offers))
            elif roll < 0.75:
                consents.append(ConsentFactory.build(member=member, channel=channel))
                consents.append(ConsentFactory.build(member=member, channel=channel,
                                                     category=offers, state="withdrawn"))
            elif roll < 0.8:
                consents.append(ConsentFactory.build(member=member, channel=channel,
                                                     purpose="service"))
    Consent.objects.bulk_create(consents)

    suppressions = [SuppressionFactory.build(channel="email", address="nobody@example.com")]
    with_email = [member for member in members if member.email]
    for member in rng.sample(with_email, 20):
        suppressions.append(SuppressionFactory.build(channel="email",
                                                     address=member.email))
    with_phone = [member for member in members if member.phone]
    for member in rng.sample(with_phone, 15):
        suppressions.append(SuppressionFactory.build(channel="sms", address=member.phone))
    # An address suppressed on another channel only.
    suppressions.append(SuppressionFactory.build(channel="sms", address=with_email[0].email))
    Suppression.objects.bulk_create(suppressions, ignore_conflicts=True)

    devices, accounts = [], []
    for member in members:
        if rng.random() < 0.35:
            devices.append(DeviceFactory.build(member=member, is_active=rng.random() < 0.75))
        for network in ("viber", "vk", "telegram", "whatsapp"):
            roll = rng.random()
            if roll < (0.3 if network == "viber" else 0.12):
                accounts.append(MessengerAccountFactory.build(
                    member=member, network=network, is_active=rng.random() < 0.75))
    Device.objects.bulk_create(devices)
    MessengerAccount.objects.bulk_create(accounts)


def _engagement(rng: random.Random, members: list[Member], segment: Segment) -> None:
    everyone = TargetGroupFactory(name="Everyone (segment data)", rules={})
    spring, summer, autumn, idle = (CampaignFactory(name=name)
                                    for name in ("Spring", "Summer", "Autumn", "Idle"))
    mailings = [
        MailingFactory(campaign=spring, target_group=everyone),
        MailingFactory(campaign=spring, target_group=everyone),
        MailingFactory(campaign=summer, target_group=everyone),
        MailingFactory(campaign=None, target_group=everyone),
        MailingFactory(campaign=autumn, target_group=everyone),  # sent to nobody yet
    ]
    statuses = ["sent", "delivered", "delivered", "delivered", "failed", "skipped", "queued",
                "unknown", "cancelled"]
    messages = []
    for mailing in mailings[:4]:
        for member in members:
            if rng.random() < 0.4:
                continue
            status = rng.choice(statuses)
            moment = _moment(rng)  # when it was sent, or would have been
            sent = moment if status in ("sent", "delivered") else None
            opened = _later(rng, sent) if sent and rng.random() < 0.5 else None
            clicked = _later(rng, opened) if opened and rng.random() < 0.5 else None
            messages.append(MessageFactory.build(
                mailing=mailing, member=member, status=status, sent_at=sent, opened_at=opened,
                clicked_at=clicked, created_at=moment - dt.timedelta(minutes=rng.randint(1, 4000)),
                updated_at=moment))
    Message.objects.bulk_create(messages)
    segment.mailings = [mailing.pk for mailing in mailings]
    segment.campaigns = [campaign.pk for campaign in (spring, summer, autumn, idle)]


def _membership(rng: random.Random, members: list[Member], segment: Segment) -> None:
    picked = StaticListFactory(name="Picked by hand")
    empty = StaticListFactory(name="Nobody")
    frozen = StaticListFactory(name="Frozen", source="frozen")
    entries = [StaticListMemberFactory.build(static_list=picked, member=member)
               for member in rng.sample(members, 30)]
    entries += [StaticListMemberFactory.build(static_list=frozen, member=member)
                for member in rng.sample(members, 12)]
    type(entries[0])._default_manager.bulk_create(entries)
    segment.static_lists = [picked.pk, empty.pk, frozen.pk]

    riga = TargetGroupFactory(rules={"field": "city", "op": "eq", "value": "Riga"})
    gold_or_riga = TargetGroupFactory(rules={"or": [
        {"field": "target_group", "op": "member_of", "value": riga.pk},
        {"field": "tier", "op": "eq", "value": "gold"}]})
    unreached = TargetGroupFactory(rules=[
        {"not": {"field": "target_group", "op": "member_of", "value": gold_or_riga.pk}},
        {"field": "reachable", "op": "reachable", "value": "email"}])
    regulars = TargetGroupFactory(rules={"and": [
        {"field": "orders_count", "op": "range", "value": [2, None], "days": 365},
        {"field": "static_list", "op": "not_member_of", "value": picked.pk}]})
    listed = TargetGroupFactory(rules=[])
    segment.target_groups = [riga.pk, gold_or_riga.pk, unreached.pk, regulars.pk, listed.pk]


def segment_build(seed: int = 20251220) -> Segment:
    rng = random.Random(seed)
    for key, kind in ATTRIBUTES.items():
        CustomAttributeFactory(key=key, type=kind,
                               choices=FLAVOURS if kind == "choice" else [])
    members = _members(rng)
    _loyalty(rng, members)
    _reach(rng, members)
    segment = Segment(world=World({}, {}, {}, {}, set(), set(), set(), {}, {}, {}, {}, {}))
    _engagement(rng, members, segment)
    _membership(rng, members, segment)
    segment.reload()
    return segment
