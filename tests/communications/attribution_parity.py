"""Generated touches and orders, and the attribution rule computed the slow way beside the SQL:
run as a script on SQLite (the demo's database) and in-process on PostgreSQL, then compared by
the tests. Orders and mailings are named by external id and name: ids come from sequences,
which differ between the two databases, while the generated values do not."""

from __future__ import annotations

import datetime as dt
import json
import random
import sys
from typing import Any

SEED = 20261207
DAY = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
DEPTH = {"delivered_at": 1, "opened_at": 2, "clicked_at": 3}
KINDS = {"delivered": ("delivered_at", "opened_at", "clicked_at"),
         "opened": ("opened_at", "clicked_at"), "clicked": ("clicked_at",)}


def seed() -> None:
    """Three campaigns (one per touch depth, each its own window), nine mailings, 25 members
    with up to four messages each over the nine days before DAY, and 60 orders on DAY."""
    from campaigns.models import Campaign
    from communications.models import Mailing, Message
    from loyalty.models import Order
    from members.models import Member

    rng = random.Random(SEED)
    mailings = []
    for touch, window in (("delivered", 7), ("opened", 3), ("clicked", 1)):
        campaign = Campaign.objects.create(name=f"{touch} {window}d", attribution_touch=touch,
                                           attribution_window_days=window)
        mailings += [Mailing.objects.create(name=f"{campaign.name} #{n}", campaign=campaign)
                     for n in range(3)]
    members = [Member.objects.create(external_id=f"P-{n:03d}", first_name=f"P{n}")
               for n in range(25)]
    for member in members:
        for mailing in rng.sample(mailings, rng.randint(0, 4)):
            sent = DAY - dt.timedelta(minutes=rng.randint(0, 60 * 24 * 9))
            times = {"delivered_at": sent + dt.timedelta(minutes=1)}
            if rng.random() < 0.5:
                times["opened_at"] = sent + dt.timedelta(minutes=rng.randint(2, 60 * 24 * 2))
                if rng.random() < 0.5:
                    times["clicked_at"] = times["opened_at"] + dt.timedelta(minutes=1)
            Message.objects.create(mailing=mailing, member=member, channel="email",
                                   status="delivered", created_at=sent, sent_at=sent,
                                   updated_at=sent, **times)
    for n in range(60):
        Order.objects.create(member=rng.choice(members), external_id=f"PO-{n:03d}",
                             placed_at=DAY - dt.timedelta(minutes=rng.randint(0, 60 * 24)),
                             total=10)


def expected_credits() -> dict[str, str]:
    """The rule of docs/attribution.md, order by order in Python: order -> mailing."""
    from communications.models import Message
    from loyalty.models import Order

    messages = list(Message.objects.select_related("mailing__campaign"))
    expected = {}
    for order in Order.objects.all():
        best: tuple[Any, ...] | None = None
        for message in messages:
            if message.member_id != order.member_id:
                continue
            campaign = message.mailing.campaign
            for kind in KINDS[campaign.attribution_touch]:
                at = getattr(message, kind)
                if at is None or at > order.placed_at:
                    continue
                if order.placed_at - at >= dt.timedelta(days=campaign.attribution_window_days):
                    continue
                key = (at, DEPTH[kind], message.pk, message.mailing.name)
                if best is None or key[:3] > best[:3]:
                    best = key
        if best is not None:
            expected[order.external_id] = best[3]
    return expected


def evaluate() -> dict[str, dict[str, str]]:
    """What attribution credits, and what the rule says it should."""
    from communications.models import OrderCredit
    from communications.services.attribution import orders_attribute

    orders_attribute(placed_from=DAY - dt.timedelta(days=1), placed_to=DAY + dt.timedelta(days=1))
    credited = dict(OrderCredit.objects.values_list("order__external_id", "mailing__name"))
    return {"credited": dict(sorted(credited.items())),
            "expected": dict(sorted(expected_credits().items()))}


if __name__ == "__main__":
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    seed()
    json.dump(evaluate(), sys.stdout)
