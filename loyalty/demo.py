"""Demo data: realistic members with consents, loyalty accounts and purchase history.

Used by `manage.py seed_demo`, `manage.py demo_setup` and the `seed_members` benchmark, so it has
to stay practical at 1M members: rows are generated in chunks of `batch_size` members and
written with PostgreSQL's COPY (executemany elsewhere), ids are reserved from the tables' own
sequences, and nothing is queried per row. Each chunk commits on its own: PostgreSQL runs the
deferred foreign-key checks of a transaction at commit, so one transaction for 1M members would
queue ~10M pending checks in the server's memory. A run that fails midway leaves whole chunks,
every member with their consents, account and orders.

Names come from a pool drawn once from Faker for a few locales: Faker costs microseconds per
call, which is most of the budget for a whole row.
"""

from __future__ import annotations

import math
import random
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import phonenumbers
from django.db import connection, models, transaction
from django.db.backends.postgresql.psycopg_any import is_psycopg3

from loyalty.models import LoyaltyAccount, Order, OrderLine, Product, Tier
from members.models import Consent, ConsentEvent, Member

MEMBER_SPAN = timedelta(days=3 * 365)  # members joined over the last three years
ORDER_SPAN = timedelta(days=2 * 365)  # and ordered over the last two
SKU_PREFIX = "DEMO-"
EMAIL_DOMAINS = ("example.com", "example.net", "example.org")  # reserved: never deliverable

# code, name, rank; a member climbs one tier per multiple of the average order count
TIERS = (("bronze", "Bronze", 1), ("silver", "Silver", 2), ("gold", "Gold", 3),
         ("platinum", "Platinum", 4))


def _nanp(*area_codes: str) -> tuple[tuple[str, int], ...]:
    # North American exchange codes cannot start with 0 or 1.
    return tuple((f"+1{area}{digit}", 6) for area in area_codes for digit in "23456789")


@dataclass(frozen=True)
class _Locale:
    faker_locale: str
    language: str
    weight: int  # percent of members
    timezones: tuple[str, ...]
    phones: tuple[tuple[str, int], ...]  # E.164 prefix of a mobile range, random digits after it
    country: str
    cities: tuple[tuple[str, float, float], ...]  # name, latitude, longitude


LOCALES = (
    _Locale("en_GB", "en", 20, ("Europe/London",), (("+44771", 7), ("+44775", 7)), "GB",
            (("London", 51.507, -0.128), ("Manchester", 53.48, -2.242),
             ("Birmingham", 52.486, -1.89))),
    _Locale("en_US", "en", 16, ("America/New_York", "America/Chicago", "America/Denver",
                                "America/Los_Angeles"), _nanp("212", "312", "415", "617"), "US",
            (("New York", 40.713, -74.006), ("Chicago", 41.878, -87.63),
             ("San Francisco", 37.775, -122.419))),
    _Locale("de_DE", "de", 18, ("Europe/Berlin",), (("+49151", 8), ("+49160", 7), ("+49176", 8)),
            "DE", (("Berlin", 52.52, 13.405), ("Hamburg", 53.551, 9.994),
                   ("Munich", 48.135, 11.582))),
    _Locale("de_AT", "de", 4, ("Europe/Vienna",), (("+43664", 7),), "AT",
            (("Vienna", 48.208, 16.374), ("Graz", 47.071, 15.44))),
    _Locale("de_CH", "de", 3, ("Europe/Zurich",), (("+4179", 7),), "CH",
            (("Zurich", 47.377, 8.542), ("Basel", 47.56, 7.589))),
    _Locale("fr_FR", "fr", 13, ("Europe/Paris",), (("+3361", 7), ("+3377", 7)), "FR",
            (("Paris", 48.857, 2.352), ("Lyon", 45.764, 4.836), ("Marseille", 43.296, 5.37))),
    _Locale("fr_CA", "fr", 5, ("America/Toronto",), _nanp("438", "514"), "CA",
            (("Montreal", 45.502, -73.567), ("Quebec City", 46.813, -71.208))),
    _Locale("es_ES", "es", 14, ("Europe/Madrid", "Atlantic/Canary"), (("+346", 8),), "ES",
            (("Madrid", 40.417, -3.704), ("Barcelona", 41.385, 2.173),
             ("Las Palmas", 28.124, -15.436))),
    _Locale("es_MX", "es", 7, ("America/Mexico_City",), (("+5255", 8),), "MX",
            (("Mexico City", 19.433, -99.133), ("Guadalajara", 20.659, -103.35))),
)
GENDERS = ("female", "female", "male", "male", "other", "")

# category -> (products, price range in cents)
CATALOG: dict[str, tuple[tuple[str, ...], tuple[int, int]]] = {
    "coffee": (("Espresso Beans", "Filter Coffee", "Decaf Blend", "Cold Brew Concentrate",
                "Coffee Capsules"), (399, 1899)),
    "tea": (("Earl Grey", "Green Tea", "Chamomile Infusion", "Chai Mix", "Rooibos"), (249, 999)),
    "bakery": (("Sourdough Loaf", "Butter Croissants", "Rye Bread", "Cinnamon Rolls",
                "Bagels"), (149, 699)),
    "dairy": (("Whole Milk", "Greek Yoghurt", "Aged Gouda", "Salted Butter", "Oat Drink"),
              (99, 899)),
    "fruit-and-veg": (("Apples", "Bananas", "Avocados", "Cherry Tomatoes", "Baby Spinach"),
                      (99, 599)),
    "snacks": (("Sea Salt Crisps", "Dark Chocolate", "Trail Mix", "Oat Bars", "Pretzels"),
               (129, 649)),
    "beverages": (("Sparkling Water", "Orange Juice", "Ginger Ale", "Kombucha", "Iced Tea"),
                  (89, 499)),
    "household": (("Dish Soap", "Laundry Liquid", "Paper Towels", "Sponges", "Trash Bags"),
                  (199, 1499)),
    "beauty": (("Shampoo", "Hand Cream", "Face Serum", "Lip Balm", "Shower Gel"), (299, 3499)),
    "pet-care": (("Dry Dog Food", "Cat Litter", "Dog Treats", "Wet Cat Food", "Chew Toy"),
                 (249, 4999)),
}
VARIANTS = ("Classic", "Organic", "Family Pack", "Premium")  # x 5 products x 10 categories = 200


def demo_seed(members: int, orders_per_member: float = 3, seed: int | None = None,
              batch_size: int = 10_000,
              progress: Callable[[dict[str, int]], None] | None = None,
              now: datetime | None = None) -> dict[str, int]:
    """Append `members` demo members with their consents, accounts and orders.

    Returns the rows written per table (products and tiers only when they were missing).
    A fixed `now` with a fixed `seed` gives the same data on every run and database.
    `progress`, if given, is called with the running counts after each chunk.
    """
    if members <= 0:
        raise ValueError("members must be a positive number")
    if orders_per_member < 0:
        raise ValueError("orders per member must not be negative")
    if batch_size <= 0:
        raise ValueError("batch size must be a positive number")

    rng = random.Random(seed)
    writer = _writer()
    counts = dict.fromkeys(("members", "consents", "consent_events", "loyalty_accounts",
                            "orders", "order_lines", "products", "tiers"), 0)
    with transaction.atomic():
        tier_ids, counts["tiers"] = _tiers_ensure()
        products, counts["products"] = _products_ensure()
    generator = _Generator(rng=rng, seed=seed, tier_ids=tier_ids, products=products,
                           orders_per_member=orders_per_member, now=now)
    remaining = members
    while remaining:
        size = min(batch_size, remaining)
        with transaction.atomic():
            for key, written in generator.chunk(writer, size).items():
                counts[key] += written
        remaining -= size
        if progress is not None:
            progress(dict(counts))
    writer.analyze()
    return counts


# --- reference data -------------------------------------------------------------------------

def _tiers_ensure() -> tuple[list[int], int]:
    """Tier ids from lowest to highest; creates the demo tiers that are missing."""
    before = Tier.objects.count()
    Tier.objects.bulk_create(
        [Tier(code=code, name=name, rank=rank) for code, name, rank in TIERS],
        ignore_conflicts=True,
    )
    ids = dict(Tier.objects.filter(code__in=[t[0] for t in TIERS]).values_list("code", "pk"))
    return [ids[code] for code, _, _ in TIERS], Tier.objects.count() - before


def _products_ensure() -> tuple[list[tuple[int, str, int]], int]:
    """(id, category, price in cents) of the demo catalog; creates what is missing."""
    catalog_rng = random.Random(0)  # the same catalog whatever the seed, so runs can share it
    wanted = []
    for category, (names, (low, high)) in CATALOG.items():
        for index, (name, variant) in enumerate((n, v) for n in names for v in VARIANTS):
            cents = catalog_rng.randrange(low, high) // 10 * 10 + 9
            wanted.append(Product(
                sku=f"{SKU_PREFIX}{category.upper()}-{index + 1:03d}",
                name=f"{name} ({variant})", category=category,
                price=Decimal(cents) / 100,
            ))
    demo = Product.objects.filter(sku__startswith=SKU_PREFIX)
    before = demo.count()
    Product.objects.bulk_create(wanted, ignore_conflicts=True)
    products = [(pk, category, int(price * 100))
                for pk, category, price in demo.order_by("pk").values_list("pk", "category",
                                                                           "price")]
    return products, len(products) - before


# --- row generation -------------------------------------------------------------------------

def _ascii(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(c for c in decomposed.lower() if c.isalnum()) or "member"


@dataclass(frozen=True)
class LocalePool:
    language: str
    first_names: list[tuple[str, str]]  # (name, its ascii form for email addresses)
    last_names: list[tuple[str, str]]
    timezones: tuple[str, ...]
    phones: tuple[tuple[str, int], ...]  # (prefix, 10 ** digits)
    country: str
    cities: tuple[tuple[str, float, float], ...]


def locale_pools(seed: int | None) -> list[LocalePool]:
    """One pool per locale, repeated by weight so a uniform pick follows the weights."""
    from faker import Faker

    pools = []
    for locale in LOCALES:
        fake = Faker(locale.faker_locale)
        fake.seed_instance(seed)
        # dict.fromkeys dedupes and keeps Faker's order, so a seed gives the same pool each time
        first = list(dict.fromkeys(fake.first_name() for _ in range(400)))
        last = list(dict.fromkeys(fake.last_name() for _ in range(400)))
        for prefix, digits in locale.phones:
            _phone_range_check(prefix, digits)
        pool = LocalePool(
            language=locale.language,
            first_names=[(n, _ascii(n)) for n in first],
            last_names=[(n, _ascii(n)) for n in last],
            timezones=locale.timezones,
            phones=tuple((prefix, 10 ** digits) for prefix, digits in locale.phones),
            country=locale.country, cities=locale.cities,
        )
        pools.extend([pool] * locale.weight)
    return pools


def _phone_range_check(prefix: str, digits: int) -> None:
    # Phones are written without per-row validation, so the ranges are checked once here.
    for suffix in ("0" * digits, "9" * digits, "5" * digits):
        number = phonenumbers.parse(prefix + suffix, None)
        if not phonenumbers.is_valid_number(number):
            raise RuntimeError(f"demo phone range {prefix}… does not give valid numbers")


@dataclass(frozen=True)
class _Basket:
    total: Decimal
    cents: int
    lines: tuple[tuple[int, int, Decimal], ...]  # (product id, quantity, unit price)


def _baskets(rng: random.Random, products: Sequence[tuple[int, str, int]],
             per_category: int = 400) -> dict[str, list[_Basket]]:
    """Baskets drawn ahead of time, mostly from one category, so members have favorites."""
    by_category: dict[str, list[tuple[int, str, int]]] = {}
    for product in products:
        by_category.setdefault(product[1], []).append(product)
    quantities = (1,) * 14 + (2,) * 4 + (3, 4)
    line_counts = (1,) * 7 + (2,) * 6 + (3,) * 4 + (4,) * 3  # 1-4 lines, 2.15 on average
    baskets: dict[str, list[_Basket]] = {}
    for category, own in by_category.items():
        baskets[category] = []
        for _ in range(per_category):
            picked: dict[int, tuple[int, int]] = {}
            for _ in range(rng.choice(line_counts)):
                pk, _, cents = rng.choice(own if rng.random() < 0.7 else products)
                picked[pk] = (cents, rng.choice(quantities))
            lines = tuple((pk, qty, Decimal(cents) / 100) for pk, (cents, qty) in picked.items())
            total = sum(cents * qty for cents, qty in picked.values())
            baskets[category].append(_Basket(Decimal(total) / 100, total, lines))
    return baskets


MEMBER_COLUMNS = ("id", "external_id", "first_name", "last_name", "email", "phone", "language",
                  "timezone", "registered_at", "created_at", "updated_at", "birth_date",
                  "gender", "city", "country", "latitude", "longitude")
CONSENT_COLUMNS = ("member", "channel", "purpose", "state", "source", "recorded_at")
# The ledger behind every current consent: a grant, and for withdrawn ones the withdrawal.
CONSENT_EVENT_COLUMNS = ("member", "channel", "purpose", "action", "source", "recorded_at",
                         "consent_text")
ACCOUNT_COLUMNS = ("member", "tier", "tier_since", "points_balance")
ORDER_COLUMNS = ("id", "member", "external_id", "placed_at", "total", "currency")
LINE_COLUMNS = ("order", "product", "quantity", "unit_price", "member", "placed_at")

GRANTED, WITHDRAWN = Consent.State.GRANTED.value, Consent.State.WITHDRAWN.value
GRANT, WITHDRAW = ConsentEvent.Action.GRANT.value, ConsentEvent.Action.WITHDRAW.value
CONSENT_TEXT = {"email": "Yes, send me offers and news by email.",
                "sms": "Yes, send me offers by SMS."}
MARKETING = Consent.Purpose.MARKETING.value
GRANT_SOURCES = ("import", "import", "import", "account_page", "app")
EMAIL_WITHDRAW_SOURCES = ("unsubscribe_link", "unsubscribe_link", "account_page")
SMS_WITHDRAW_SOURCES = ("sms_stop", "sms_stop", "account_page")


class _Generator:
    def __init__(self, *, rng: random.Random, seed: int | None, tier_ids: list[int],
                 products: list[tuple[int, str, int]], orders_per_member: float,
                 now: datetime | None = None) -> None:
        self.rng = rng
        self.pools = locale_pools(seed)
        self.tier_ids = tier_ids
        self.baskets = _baskets(rng, products)
        self.categories = list(self.baskets)
        self.all_baskets = [b for baskets in self.baskets.values() for b in baskets]
        self.orders_per_member = orders_per_member
        # Order counts are geometric (many members with none or one, a few regulars) with the
        # requested mean: P(n >= k) = q ** k, q = mean / (mean + 1).
        self.log_q = math.log(orders_per_member / (orders_per_member + 1)) \
            if orders_per_member > 0 else None
        self.now = (now or datetime.now(UTC)).replace(microsecond=0)

    def chunk(self, writer: _Writer, size: int) -> dict[str, int]:
        """Generate and write `size` members with everything that hangs off them."""
        random = self.rng.random
        pools, n_pools = self.pools, len(self.pools)
        domains = EMAIL_DOMAINS
        log_q, mean = self.log_q, self.orders_per_member
        tier_ids = self.tier_ids
        baskets, categories, all_baskets = self.baskets, self.categories, self.all_baskets
        now = self.now
        today = now.date()
        member_start = now - MEMBER_SPAN
        member_span = int(MEMBER_SPAN.total_seconds())
        order_start_s = member_span - int(ORDER_SPAN.total_seconds())
        second = timedelta(seconds=1)

        members: list[tuple[Any, ...]] = []
        consents: list[tuple[Any, ...]] = []
        events: list[tuple[Any, ...]] = []
        accounts: list[tuple[Any, ...]] = []
        order_specs: list[tuple[int, datetime, _Basket]] = []
        for member_id in writer.reserve_ids(Member, size):
            pool = pools[int(random() * n_pools)]
            first, first_ascii = pool.first_names[int(random() * len(pool.first_names))]
            last, last_ascii = pool.last_names[int(random() * len(pool.last_names))]
            email = (f"{first_ascii}.{last_ascii}.{member_id}@{domains[int(random() * 3)]}"
                     if random() < 0.9 else "")
            if random() < 0.8:
                prefix, modulus = pool.phones[int(random() * len(pool.phones))]
                phone = prefix + str(modulus + int(random() * modulus))[1:]
            else:
                phone = ""
            joined_s = int(random() * member_span)  # seconds after member_start
            joined = member_start + joined_s * second
            # Ages 18 to 80 for nine in ten members; a place near a city of the locale for
            # most, so target groups over age, birthday and distance have something to find.
            birth_date = (today - timedelta(days=int(6575 + random() * 22645))
                          if random() < 0.9 else None)
            if random() < 0.85:
                city, lat, lon = pool.cities[int(random() * len(pool.cities))]
                lat, lon = lat + (random() - 0.5) * 0.2, lon + (random() - 0.5) * 0.2
            else:
                city, lat, lon = "", None, None
            members.append((
                member_id, f"M{member_id:09d}", first, last, email, phone, pool.language,
                pool.timezones[int(random() * len(pool.timezones))], joined, joined, joined,
                birth_date, GENDERS[int(random() * len(GENDERS))], city,
                pool.country if city else "", lat, lon,
            ))

            for channel, has_address, granted_share, consented_share, withdraw_sources in (
                    ("email", email, 0.78, 0.9, EMAIL_WITHDRAW_SOURCES),
                    ("sms", phone, 0.625, 0.75, SMS_WITHDRAW_SOURCES)):
                if not has_address:
                    continue
                r = random()
                if r >= consented_share:
                    continue
                source = GRANT_SOURCES[int(random() * 5)]
                events.append((member_id, channel, MARKETING, GRANT, source, joined,
                               CONSENT_TEXT[channel]))
                if r < granted_share:
                    consents.append((member_id, channel, MARKETING, GRANTED, source, joined))
                else:
                    source = withdraw_sources[int(random() * 3)]
                    withdrawn = joined + int(random() * (member_span - joined_s)) * second
                    events.append((member_id, channel, MARKETING, WITHDRAW, source, withdrawn,
                                   ""))
                    consents.append((member_id, channel, MARKETING, WITHDRAWN, source,
                                     withdrawn))

            n_orders = int(math.log(1.0 - random()) / log_q) if log_q is not None else 0
            spent = 0
            if n_orders:
                favorites = baskets[categories[int(random() * len(categories))]]
                first_s = max(joined_s, order_start_s)
                window = member_span - first_s
                for _ in range(n_orders):
                    basket = (favorites[int(random() * len(favorites))] if random() < 0.7
                              else all_baskets[int(random() * len(all_baskets))])
                    spent += basket.cents
                    order_specs.append((member_id, member_start
                                        + (first_s + int(random() * window)) * second, basket))
            # Tiers are climbed by buying: silver at the average order count, gold at twice it.
            level = min(int(n_orders / mean), len(tier_ids) - 1) if mean else 0
            accounts.append((member_id, tier_ids[level],
                             joined + int(random() * (member_span - joined_s)) * second,
                             int(spent / 100 * (0.2 + 0.8 * random()))))

        orders: list[tuple[Any, ...]] = []
        lines: list[tuple[Any, ...]] = []
        order_ids = writer.reserve_ids(Order, len(order_specs)) if order_specs else []
        for order_id, (member_id, placed_at, basket) in zip(order_ids, order_specs, strict=True):
            orders.append((order_id, member_id, f"O{order_id:010d}", placed_at, basket.total,
                           "EUR"))
            for product_id, quantity, unit_price in basket.lines:
                lines.append((order_id, product_id, quantity, unit_price, member_id, placed_at))

        writer.write(Member, MEMBER_COLUMNS, members)
        writer.write(Consent, CONSENT_COLUMNS, consents)
        writer.write(ConsentEvent, CONSENT_EVENT_COLUMNS, events)
        writer.write(LoyaltyAccount, ACCOUNT_COLUMNS, accounts)
        writer.write(Order, ORDER_COLUMNS, orders)
        writer.write(OrderLine, LINE_COLUMNS, lines)
        return {"members": len(members), "consents": len(consents),
                "consent_events": len(events),
                "loyalty_accounts": len(accounts), "orders": len(orders),
                "order_lines": len(lines)}


# --- writing --------------------------------------------------------------------------------

def _columns(model: type[models.Model], fields: Sequence[str]) -> list[models.Field]:
    return [model._meta.get_field(name) for name in fields]  # type: ignore[misc]


class _Writer:
    """Portable bulk writes: ids from MAX(id), rows through executemany.

    Raw inserts rather than bulk_create, because bulk_create stamps `auto_now_add` fields with
    the current time and the demo members must have joined over the last three years.
    """

    def reserve_ids(self, model: type[models.Model], count: int) -> Sequence[int]:
        # Inside the chunk's transaction, which on SQLite holds the write lock from BEGIN.
        top = model.objects.aggregate(top=models.Max("pk"))["top"] or 0
        return range(top + 1, top + 1 + count)

    def write(self, model: type[models.Model], fields: Sequence[str],
              rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        columns = _columns(model, fields)
        quote = connection.ops.quote_name
        sql = (f"INSERT INTO {quote(model._meta.db_table)} "
               f"({', '.join(quote(c.column) for c in columns)}) "
               f"VALUES ({', '.join(['%s'] * len(columns))})")
        prepare = [c.get_db_prep_save for c in columns]
        with connection.cursor() as cursor:
            cursor.executemany(sql, [
                tuple(p(v, connection) for p, v in zip(prepare, row, strict=True))
                for row in rows
            ])

    def analyze(self) -> None:
        pass


class _CopyWriter(_Writer):
    """PostgreSQL: ids from the table's sequence, rows through COPY."""

    def __init__(self) -> None:
        self._sequences: dict[str, str] = {}

    def reserve_ids(self, model: type[models.Model], count: int) -> Sequence[int]:
        # nextval() per id rather than one setval() jump: a setval races with other sessions
        # taking ids between our read and our write, nextval never hands an id out twice.
        table = model._meta.db_table
        with connection.cursor() as cursor:
            if table not in self._sequences:
                cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
                self._sequences[table] = cursor.fetchone()[0]
            cursor.execute("SELECT nextval(%s::regclass) FROM generate_series(1, %s)",
                           [self._sequences[table], count])
            return [row[0] for row in cursor.fetchall()]

    def write(self, model: type[models.Model], fields: Sequence[str],
              rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        quote = connection.ops.quote_name
        columns = _columns(model, fields)
        sql = (f"COPY {quote(model._meta.db_table)} "
               f"({', '.join(quote(c.column) for c in columns)}) FROM STDIN (FORMAT BINARY)")
        with connection.connection.cursor() as cursor, cursor.copy(sql) as copy:
            # Binary saves the server parsing timestamps and numerics: a 200k-member seed took
            # 30-36 s instead of 39-43 s. It needs the column types: "varchar(64)" -> "varchar".
            copy.set_types([c.db_type(connection).split("(")[0] for c in columns])
            write_row = copy.write_row
            for row in rows:
                write_row(row)

    def analyze(self) -> None:
        # Fresh statistics, so the first segment count after a big seed gets a sane plan.
        tables = [m._meta.db_table for m in (Member, Consent, ConsentEvent, LoyaltyAccount,
                                                 Order, OrderLine)]
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {', '.join(map(connection.ops.quote_name, tables))}")


def _writer() -> _Writer:
    connection.ensure_connection()
    if connection.vendor == "postgresql" and is_psycopg3:
        return _CopyWriter()
    return _Writer()
