"""The demo `make run` opens on: members, a draft mailing ready to start, a marketer login.

Idempotent: objects are found by name and left as the marketer last saw them; only missing ones
are created. Members are seeded only into an empty database.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import models, transaction
from django.utils import timezone

from campaigns.models import Campaign, PromoContent, TargetGroup
from campaigns.services import promo_content_save
from communications.models import Gateway, Mailing, Template
from loyalty.demo import demo_seed
from members.models import Channel, Member

DEMO_MEMBERS = 200
DEMO_SEED = 2024  # the same demo names on every fresh start
DEMO_MAILING = "Welcome back (demo)"
MARKETER = "marketer"
PASSWORD_FILE = "marketer-password.txt"

TEMPLATE_SUBJECT = "{{ member.first_name }}, we have missed you"
TEMPLATE_BODY = """\
Hi {{ member.full_name }},

It has been a while since your last visit, so here is a small welcome back:
every purchase this week earns double points.

Show your member number {{ member.external_id }} at the till,
or open the app to see your balance.

See you soon,
Your Engage demo shop
"""

ModelT = TypeVar("ModelT", bound=models.Model)


@dataclass(frozen=True)
class DemoSetup:
    mailing: Mailing
    gateway: Gateway
    username: str
    password: str
    password_file: Path
    seeded: dict[str, int] | None  # rows written when the database had no members yet


def demo_setup(*, members: int = DEMO_MEMBERS) -> DemoSetup:
    """Make sure the demo exists; returns what the banner shows."""
    seeded = None
    if not Member.objects.exists():
        seeded = demo_seed(members=members, seed=DEMO_SEED)
    password_file = Path(settings.VAR_DIR) / PASSWORD_FILE
    password = _marketer_password(password_file)
    with transaction.atomic():
        user = _marketer_ensure(password)
        mailing = _demo_mailing_ensure(created_by=user)
        _demo_offers_ensure(campaign=mailing.campaign)
    return DemoSetup(mailing=mailing, gateway=mailing.gateway, username=MARKETER,
                     password=password, password_file=password_file, seeded=seeded)


def _marketer_password(path: Path) -> str:
    """The password generated on the first run, so the login stays the same across restarts."""
    if path.exists():
        password = path.read_text().strip()
        if password:
            return password
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(15)
    # Readable by the owner only: it is a superuser's password.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(password + "\n")
    return password


def _marketer_ensure(password: str) -> AbstractBaseUser:
    User = get_user_model()
    user = User.objects.filter(username=MARKETER).first()
    if user is None:
        return User.objects.create_superuser(username=MARKETER, email="marketer@localhost",
                                             password=password)
    user.set_password(password)
    user.is_active = user.is_staff = user.is_superuser = True
    user.save(update_fields=["password", "is_active", "is_staff", "is_superuser"])
    return user


def _first_or_create(model: type[ModelT], lookup: dict[str, Any],
                     defaults: dict[str, Any]) -> ModelT:
    # Not get_or_create: names other than a target group's are not unique, and a marketer may
    # have saved a second object with the same name.
    found = model._default_manager.filter(**lookup).order_by("pk").first()
    if found is not None:
        return found
    obj = model(**lookup, **defaults)
    obj.full_clean()  # the models' own checks: rule trees, placeholders, gateway settings
    obj.save()
    return obj


def _demo_mailing_ensure(*, created_by: AbstractBaseUser) -> Mailing:
    today = timezone.localdate()
    campaign = _first_or_create(Campaign, {"name": "Welcome back"}, {
        "starts_on": today, "ends_on": today + timedelta(days=30),
        "budget": Decimal("500.00"), "currency": "EUR",
    })
    _first_or_create(TargetGroup, {"name": "Email subscribers"}, {
        "description": "Members who granted marketing consent for email.",
        "rules": {"field": "reachable", "op": "reachable", "value": "email"},
    })
    # The demo mailing goes to everyone so its counters show members skipped for want of
    # consent or address, not only the ones sent to.
    everyone = _first_or_create(TargetGroup, {"name": "Everyone"}, {
        "description": "Every member.", "rules": [],
    })
    template = _first_or_create(Template, {"name": "Welcome back"}, {
        "channel": Channel.EMAIL, "language": "en",
        "subject": TEMPLATE_SUBJECT, "body": TEMPLATE_BODY,
    })
    gateway = _first_or_create(Gateway, {"name": "Local sink"}, {
        "channel": Channel.EMAIL, "provider": "file_sink", "settings": {},
        "sender": "Engage demo shop <hello@shop.example.com>",
    })
    # The demo's members have phones and SMS consent too: an SMS mailing a marketer builds
    # needs a gateway (its texts land as JSON lines, see gateways.file_sink).
    _first_or_create(Gateway, {"name": "Local SMS sink"}, {
        "channel": Channel.SMS, "provider": "file_sink", "settings": {}, "sender": "EngageDemo",
    })
    mailing = _first_or_create(Mailing, {"name": DEMO_MAILING}, {
        "campaign": campaign, "target_group": everyone, "template": template,
        "gateway": gateway, "created_by": created_by,
    })
    return mailing


def _demo_offers_ensure(*, campaign: Campaign | None) -> None:
    """Two offers on the account pages (/account/offers/) and in the app's home call."""
    now = timezone.now()
    offers = [("Double points this week", "Every purchase until Sunday earns double points.",
               "https://shop.example.com/double-points", "See the offer", "both"),
              ("Free delivery in the app", "Order in the app: delivery is on us this month.",
               "engage-demo://offers/free-delivery", "Order now", "app")]
    for title, text, link_url, link_label, placement in offers:
        if not PromoContent.objects.filter(title=title).exists():
            promo_content_save(offer=PromoContent(
                title=title, text=text, link_url=link_url, link_label=link_label,
                placement=placement, campaign=campaign, starts_at=now,
                ends_at=now + timedelta(days=30)))


def sink_directory(gateway: Gateway) -> Path:
    """Where the file_sink gateway writes its .eml files (see gateways.file_sink)."""
    base = gateway.settings.get("directory") or settings.ENGAGE_SINK_DIR
    return Path(base) / f"gateway-{gateway.pk}"
