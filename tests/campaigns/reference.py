"""An independent, plain-Python reading of docs/target-groups.md, to check the compiler against.

Written from the document alone: nothing here comes from `campaigns.rules`. `world_load()` reads
the program's data with simple queries into plain Python values, and `reference_members()`
evaluates a (valid) rule tree over it member by member, the slow and obvious way.
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings

from campaigns.models import StaticListMember, TargetGroup
from communications.models import Message
from loyalty.models import LoyaltyAccount, Order, OrderLine, Store
from members.models import Consent, CustomAttribute, Device, Member, MessengerAccount, Suppression

TEXT_FIELDS = ("external_id", "first_name", "last_name", "email", "phone", "language",
               "timezone", "city", "region", "country", "registration_source")
CHOICE_FIELDS = ("gender", "status")
MOMENT_FIELDS = ("registered_at", "created_at", "email_verified_at")
WINDOW_FIELDS = ("orders_count", "orders_total", "orders_average", "first_time_buyer",
                 "bought_product", "bought_category", "received", "opened", "clicked")
EARTH_RADIUS_KM = 6371.0088
SOCIAL_NETWORKS = ("vk", "telegram", "whatsapp")
RECEIVED_STATUSES = ("sent", "delivered")


@dataclass
class Purchase:
    placed_at: dt.datetime
    total: Decimal
    skus: set[str]
    categories: set[str]


@dataclass
class Delivery:
    mailing_id: int
    campaign_id: int | None
    status: str
    sent_at: dt.datetime | None
    opened_at: dt.datetime | None
    clicked_at: dt.datetime | None


@dataclass(repr=False)
class World:
    members: dict[int, dict[str, Any]]
    attributes: dict[str, str]  # key -> declared type
    accounts: dict[int, dict[str, Any]]  # member id -> {"tier": code | None, "tier_since": ...}
    orders: dict[int, list[Purchase]]
    channel_grants: set[tuple[int, str]]  # (member, channel): whole-channel marketing grant
    suppressed: set[tuple[str, str]]  # (channel, address)
    active_devices: set[int]
    active_networks: dict[int, set[str]]
    deliveries: dict[int, list[Delivery]]
    static_lists: dict[int, set[int]]
    target_groups: dict[int, Any]
    stores: dict[str, tuple[float, float]]
    zone: zoneinfo.ZoneInfo = field(default_factory=lambda: zoneinfo.ZoneInfo("UTC"))


def world_load() -> World:
    """Everything the rules can look at, read with one simple query per table."""
    members = {row["id"]: row for row in Member.objects.values()}
    accounts = {row["member_id"]: {"tier": row["tier__code"], "tier_since": row["tier_since"]}
                for row in LoyaltyAccount.objects.values("member_id", "tier__code",
                                                         "tier_since")}
    lines: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for row in OrderLine.objects.values("order_id", "product__sku", "product__category"):
        lines[row["order_id"]].append((row["product__sku"], row["product__category"]))
    orders: dict[int, list[Purchase]] = defaultdict(list)
    for row in Order.objects.values("id", "member_id", "placed_at", "total"):
        orders[row["member_id"]].append(Purchase(
            placed_at=row["placed_at"], total=row["total"],
            skus={sku for sku, _ in lines[row["id"]]},
            categories={category for _, category in lines[row["id"]]},
        ))
    networks: dict[int, set[str]] = defaultdict(set)
    for member_id, network in MessengerAccount.objects.filter(is_active=True).values_list(
            "member_id", "network"):
        networks[member_id].add(network)
    deliveries: dict[int, list[Delivery]] = defaultdict(list)
    for row in Message.objects.filter(mailing__isnull=False).values(
            "member_id", "mailing_id", "mailing__campaign_id", "status", "sent_at", "opened_at",
            "clicked_at"):
        deliveries[row["member_id"]].append(Delivery(
            mailing_id=row["mailing_id"], campaign_id=row["mailing__campaign_id"],
            status=row["status"], sent_at=row["sent_at"], opened_at=row["opened_at"],
            clicked_at=row["clicked_at"],
        ))
    static_lists: dict[int, set[int]] = defaultdict(set)
    for list_id, member_id in StaticListMember.objects.values_list("static_list_id",
                                                                   "member_id"):
        static_lists[list_id].add(member_id)
    return World(
        members=members,
        attributes=dict(CustomAttribute.objects.values_list("key", "type")),
        accounts=accounts,
        orders=orders,
        channel_grants=set(Consent.objects.filter(
            purpose="marketing", category__isnull=True, state="granted",
        ).values_list("member_id", "channel")),
        suppressed=set(Suppression.objects.values_list("channel", "address")),
        active_devices=set(Device.objects.filter(is_active=True).values_list("member_id",
                                                                             flat=True)),
        active_networks=networks,
        deliveries=deliveries,
        static_lists=static_lists,
        target_groups=dict(TargetGroup.objects.values_list("id", "rules")),
        stores={code: (lat, lon) for code, lat, lon in Store.objects.values_list(
            "code", "latitude", "longitude")},
        zone=zoneinfo.ZoneInfo(settings.TIME_ZONE),
    )


def reference_members(tree: Any, world: World, now: dt.datetime) -> set[int]:
    """The ids of the members the document says `tree` selects."""
    return {member_id for member_id in world.members
            if reference_matches(tree, member_id, world, now)}


def reference_matches(tree: Any, member_id: int, world: World, now: dt.datetime) -> bool:
    return _Evaluation(world, now).node(tree, member_id)


class _Evaluation:
    def __init__(self, world: World, now: dt.datetime) -> None:
        self.world = world
        self.now = now
        self.today = now.astimezone(world.zone).date()

    def node(self, node: Any, member_id: int) -> bool:
        if isinstance(node, list):  # the root list: AND; [] is every member
            return all(self.node(child, member_id) for child in node)
        if node == {}:
            return True
        if "and" in node:
            return all(self.node(child, member_id) for child in node["and"])
        if "or" in node:
            return any(self.node(child, member_id) for child in node["or"])
        if "not" in node:
            return not self.node(node["not"], member_id)
        return self.condition(node, member_id)

    # -- conditions -------------------------------------------------------------------------

    def condition(self, condition: dict[str, Any], member_id: int) -> bool:
        name = condition["field"]
        op = condition["op"]
        value = condition.get("value")
        days = condition.get("days")
        member = self.world.members[member_id]
        if name in TEXT_FIELDS:
            return _text(member[name], op, value)
        if name in CHOICE_FIELDS:
            return _choice(member[name] or None, op, value)
        if name == "birth_date":
            return _date(member["birth_date"], op, value)
        if name in MOMENT_FIELDS:
            return self.moment(member[name], op, value)
        if name == "birthday":
            return self.birthday(member["birth_date"], value)
        if name == "age":
            return self.age(member["birth_date"], op, value)
        if name.startswith("attribute."):
            return self.attribute(member["custom_attributes"], name.removeprefix("attribute."),
                                  op, value)
        if name == "tier":
            account = self.world.accounts.get(member_id)
            return _choice(account["tier"] if account else None, op, value)
        if name == "tier_since":
            account = self.world.accounts.get(member_id)
            return self.moment(account["tier_since"] if account else None, op, value)
        if name in ("orders_count", "orders_total", "orders_average", "first_time_buyer",
                    "bought_product", "bought_category", "last_purchase"):
            return self.purchases(member_id, name, op, value, days)
        if name == "location":
            return self.location(member, value)
        if name == "reachable":
            return self.reachable(member, value)
        if name in ("received", "opened", "clicked"):
            return self.engagement(member_id, name, op, value, days)
        if name == "target_group":
            inside = self.node(self.world.target_groups[value], member_id)
            return inside if op == "member_of" else not inside
        if name == "static_list":
            inside = member_id in self.world.static_lists.get(value, set())
            return inside if op == "member_of" else not inside
        raise ValueError(f"the reference does not know the field {name!r}")

    def attribute(self, attributes: dict[str, Any], key: str, op: str, value: Any) -> bool:
        stored = attributes.get(key)
        kind = self.world.attributes[key]
        if kind == "string":
            return _text(stored, op, value)
        if kind in ("integer", "number"):
            return _number(None if stored is None else Decimal(str(stored)), op, value)
        if kind == "boolean":
            return _boolean(stored, op, value)
        if kind == "date":
            return _date(None if stored is None else dt.date.fromisoformat(stored), op, value)
        if kind == "choice":
            return _choice(stored, op, value)
        raise ValueError(f"the reference does not know the attribute type {kind!r}")

    def moment(self, stored: dt.datetime | None, op: str, value: Any) -> bool:
        if op == "empty":
            return stored is None
        if op == "not_empty":
            return stored is not None
        if stored is None:
            return False
        if op == "in_last_days":
            return stored >= self.now - dt.timedelta(days=value)
        if op == "more_than_days_ago":
            return stored < self.now - dt.timedelta(days=value)
        if op == "range":
            low, high = value
            if low is not None and stored < self.moment_bound(low, upper=False):
                return False
            if high is not None and stored >= self.moment_bound(high, upper=True):
                return False
            return True
        raise ValueError(op)

    def moment_bound(self, text: str, *, upper: bool) -> dt.datetime:
        """Where a range stops: an upper end is exclusive after this (a whole day for a date
        or a midnight, the instant itself plus a hair otherwise)."""
        if len(text) == 10:
            start = dt.datetime.combine(dt.date.fromisoformat(text), dt.time(),
                                        tzinfo=self.world.zone)
            return _next_midnight(start, self.world.zone) if upper else start
        moment = dt.datetime.fromisoformat(text)
        zone = moment.tzinfo or self.world.zone
        moment = moment.replace(tzinfo=zone)
        if not upper:
            return moment
        if moment.time() == dt.time():
            return _next_midnight(moment, zone)
        return moment + dt.timedelta(microseconds=1)

    def birthday(self, birth_date: dt.date | None, days: int) -> bool:
        if birth_date is None:
            return False
        if days >= 365:
            return True
        first = self.today.month * 100 + self.today.day
        end = self.today + dt.timedelta(days=days)
        last = end.month * 100 + end.day
        born = birth_date.month * 100 + birth_date.day
        if first <= last:
            return first <= born <= last
        return born >= first or born <= last  # over New Year

    def age(self, birth_date: dt.date | None, op: str, value: Any) -> bool:
        if op == "empty":
            return birth_date is None
        if op == "not_empty":
            return birth_date is not None
        if birth_date is None:
            return False
        years = self.today.year - birth_date.year - (
            (self.today.month, self.today.day) < (birth_date.month, birth_date.day))
        low, high = value
        return (low is None or years >= low) and (high is None or years <= high)

    def purchases(self, member_id: int, name: str, op: str, value: Any,
                  days: int | None) -> bool:
        every = self.world.orders.get(member_id, [])
        if name == "last_purchase":
            latest = max((order.placed_at for order in every), default=None)
            return self.moment(latest, op, value)
        since = None if days is None else self.now - dt.timedelta(days=days)
        window = [order for order in every if since is None or order.placed_at >= since]
        if name == "orders_count":
            return _number(Decimal(len(window)), op, value)
        if name == "orders_total":
            return _number(sum((order.total for order in window), Decimal(0)), op, value)
        if name == "orders_average":
            if not window:
                return False
            return _number(sum(order.total for order in window) / len(window), op, value)
        if name == "first_time_buyer":
            first_timer = len(every) == 1 and len(window) == 1
            return first_timer == value
        if name in ("bought_product", "bought_category"):
            wanted = set(value)
            bought = any(wanted & (order.skus if name == "bought_product" else order.categories)
                         for order in window)
            return bought if op == "any" else not bought
        raise ValueError(name)

    def location(self, member: dict[str, Any], value: dict[str, Any]) -> bool:
        if member["latitude"] is None or member["longitude"] is None:
            return False
        if "store" in value:
            lat, lon = self.world.stores[value["store"]]
        else:
            lat, lon = value["lat"], value["lon"]
        return haversine_km(member["latitude"], member["longitude"], lat, lon) <= value["km"]

    def reachable(self, member: dict[str, Any], channel: str) -> bool:
        member_id = member["id"]
        if member["status"] != "active" or (member_id, channel) not in self.world.channel_grants:
            return False
        if channel == "email":
            if settings.ENGAGE_EMAIL_DOUBLE_OPT_IN and member["email_verified_at"] is None:
                return False
            # Addresses are stored normalized (lower-case), so they compare as they are.
            return bool(member["email"]) and ("email", member["email"]) not in self.world.suppressed
        if channel == "sms":
            return bool(member["phone"]) and ("sms", member["phone"]) not in self.world.suppressed
        if channel == "push":
            return member_id in self.world.active_devices
        if channel == "viber":
            return "viber" in self.world.active_networks.get(member_id, set())
        if channel == "social":
            return bool(set(SOCIAL_NETWORKS) & self.world.active_networks.get(member_id, set()))
        raise ValueError(channel)

    def engagement(self, member_id: int, name: str, op: str, value: int,
                   days: int | None) -> bool:
        since = None if days is None else self.now - dt.timedelta(days=days)
        for delivery in self.world.deliveries.get(member_id, []):
            of_it = delivery.mailing_id == value if op == "mailing" else (
                delivery.campaign_id == value)
            if not of_it:
                continue
            if name == "received":
                when = delivery.sent_at if delivery.status in RECEIVED_STATUSES else None
            elif name == "opened":
                when = delivery.opened_at
            else:
                when = delivery.clicked_at
            if when is not None and (since is None or when >= since):
                return True
        return False


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    half_dphi = math.radians(lat2 - lat1) / 2
    half_dlambda = math.radians(lon2 - lon1) / 2
    a = math.sin(half_dphi) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(half_dlambda) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def _next_midnight(moment: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    return dt.datetime.combine(moment.date() + dt.timedelta(days=1), dt.time(), tzinfo=zone)


def _text(stored: str | None, op: str, value: Any) -> bool:
    stored = stored or ""
    if op == "empty":
        return stored == ""
    if op == "not_empty":
        return stored != ""
    if op == "eq":
        return stored == value
    if op == "in":
        return stored in value
    if op == "contains":
        return value.lower() in stored.lower()
    if op == "starts_with":
        return stored.lower().startswith(value.lower())
    raise ValueError(op)


def _choice(stored: str | None, op: str, value: Any) -> bool:
    if op == "empty":
        return stored is None or stored == ""
    if op == "not_empty":
        return not (stored is None or stored == "")
    if op == "eq":
        return stored == value
    if op == "in":
        return stored in value
    raise ValueError(op)


def _number(stored: Decimal | None, op: str, value: Any) -> bool:
    if op == "empty":
        return stored is None
    if op == "not_empty":
        return stored is not None
    if stored is None:
        return False
    if op == "eq":
        return stored == Decimal(str(value))
    if op == "range":
        low, high = value
        return ((low is None or stored >= Decimal(str(low)))
                and (high is None or stored <= Decimal(str(high))))
    raise ValueError(op)


def _boolean(stored: bool | None, op: str, value: Any) -> bool:
    if op == "empty":
        return stored is None
    if op == "not_empty":
        return stored is not None
    if op == "eq":
        return stored is value
    raise ValueError(op)


def _date(stored: dt.date | None, op: str, value: Any) -> bool:
    if op == "empty":
        return stored is None
    if op == "not_empty":
        return stored is not None
    if stored is None:
        return False
    if op == "eq":
        return stored == dt.date.fromisoformat(value)
    if op == "range":
        low, high = value
        return ((low is None or stored >= dt.date.fromisoformat(low))
                and (high is None or stored <= dt.date.fromisoformat(high)))
    raise ValueError(op)
