"""`manage.py seed_demo`: realistic demo members, written in bulk, appended safely."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count, DecimalField, ExpressionWrapper, F, Sum

from loyalty.models import LoyaltyAccount, Order, OrderLine, Product, Tier
from members.models import Consent, ConsentEvent, Member, validate_e164, validate_timezone

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def seed(members: int, **options) -> str:
    out = io.StringIO()
    call_command("seed_demo", members=members, stdout=out, **options)
    return out.getvalue()


def test_seeding_writes_members_with_accounts_consents_and_orders():
    # when
    summary = seed(300, seed=7, batch_size=128)

    # then
    assert Member.objects.count() == 300
    assert LoyaltyAccount.objects.count() == 300
    assert set(Tier.objects.values_list("code", flat=True)) >= {
        "bronze", "silver", "gold", "platinum"}
    assert 150 <= Product.objects.count() <= 250
    assert Product.objects.values("category").distinct().count() == 10
    assert Order.objects.count() > 300
    assert OrderLine.objects.count() > Order.objects.count()
    assert "300 members" in summary and "rows/s" in summary
    assert len(summary.strip().splitlines()) == 1


def test_seeded_contact_data_is_valid_and_mostly_present():
    # when
    seed(300, seed=11)

    # then
    members = list(Member.objects.values("email", "phone", "language", "timezone"))
    phones = [m["phone"] for m in members if m["phone"]]
    emails = [m["email"] for m in members if m["email"]]
    for phone in phones:
        validate_e164(phone)
    for member in members:
        validate_timezone(member["timezone"])
    assert 0.65 <= len(phones) / 300 <= 0.92
    assert 0.8 <= len(emails) / 300 <= 0.98
    assert len(set(emails)) == len(emails)
    assert {m["language"] for m in members} == {"en", "de", "fr", "es"}


def test_seeded_marketing_consents_are_granted_for_most_and_withdrawn_for_some():
    # when
    seed(300, seed=3)

    # then
    counts = {
        (row["channel"], row["state"]): row["n"]
        for row in Consent.objects.values("channel", "state").annotate(n=Count("pk"))
    }
    assert 0.55 <= counts[("email", "granted")] / 300 <= 0.85
    assert 0.35 <= counts[("sms", "granted")] / 300 <= 0.65
    assert counts[("email", "withdrawn")] > 0
    assert counts[("sms", "withdrawn")] > 0
    assert not Consent.objects.filter(channel="email", member__email="").exists()
    assert not Consent.objects.filter(channel="sms", member__phone="").exists()


def test_every_seeded_consent_is_backed_by_its_ledger_events():
    # when
    seed(200, seed=4)

    # then: a grant for each, and a later withdrawal for each withdrawn one
    for consent in Consent.objects.all():
        actions = list(ConsentEvent.objects.filter(
            member=consent.member_id, channel=consent.channel).order_by("recorded_at")
            .values_list("action", flat=True))
        assert actions == (["grant"] if consent.state == "granted" else ["grant", "withdraw"])


def test_every_order_has_lines_and_its_total_is_the_sum_of_its_lines():
    # when
    seed(300, seed=5)

    # then
    line_value = ExpressionWrapper(F("lines__quantity") * F("lines__unit_price"),
                                   output_field=DecimalField(max_digits=14, decimal_places=2))
    orders = Order.objects.annotate(lines_total=Sum(line_value), line_count=Count("lines"))
    assert orders.count() > 0
    assert not orders.filter(line_count=0).exists()
    assert not orders.filter(line_count__gt=4).exists()
    assert not orders.exclude(total=F("lines_total")).exists()


def test_orders_fall_within_the_last_two_years_and_after_the_member_joined():
    # when
    seed(300, seed=9)

    # then
    assert not Order.objects.filter(placed_at__lt=F("member__created_at")).exists()
    oldest = Order.objects.order_by("placed_at").values_list("placed_at", flat=True).first()
    newest = Order.objects.order_by("-placed_at").values_list("placed_at", flat=True).first()
    assert (newest - oldest).days <= 2 * 365


def test_a_second_run_appends_without_colliding_with_the_first():
    # given
    seed(300, seed=1)
    first_max = Member.objects.order_by("-pk").values_list("pk", flat=True).first()
    orders_before = Order.objects.count()

    # when: the same seed draws the same names and numbers again
    seed(300, seed=1)

    # then
    assert Member.objects.count() == 600
    assert Member.objects.filter(pk__gt=first_max).count() == 300
    assert Member.objects.values("external_id").distinct().count() == 600
    assert Member.objects.exclude(email="").values("email").distinct().count() == \
        Member.objects.exclude(email="").count()
    assert Order.objects.count() > orders_before
    assert Product.objects.count() <= 250  # the catalog is shared, not duplicated
    assert LoyaltyAccount.objects.count() == 600


def test_no_orders_when_asked_for_none():
    # when
    seed(50, orders_per_member=0)

    # then
    assert Member.objects.count() == 50
    assert not Order.objects.exists()
    assert set(LoyaltyAccount.objects.values_list("tier__code", flat=True)) == {"bronze"}


@pytest.mark.parametrize("members", [0, -5])
def test_a_member_count_below_one_is_refused(members):
    with pytest.raises(CommandError, match="--members must be a positive number"):
        seed(members)
    assert not Member.objects.exists()


def test_on_sqlite_the_portable_path_writes_the_same_data(tmp_path):
    # given: an embedded database, as `make run` uses
    env = {**os.environ, "DEBUG": "1", "ENGAGE_VAR_DIR": str(tmp_path),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'engage.sqlite3'}"}

    def manage(*args: str) -> str:
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout

    manage("migrate", "-v0")

    # when
    manage("seed_demo", "--members", "40", "--batch-size", "16")
    summary = manage("seed_demo", "--members", "40")

    # then
    assert "40 members" in summary
    check = manage("shell", "-c", (
        "from members.models import Member; from loyalty.models import Order;"
        "print(Member.objects.count(), Member.objects.values('external_id').distinct().count(),"
        " Order.objects.filter(lines__isnull=True).count(),"
        " Member.objects.dates('created_at', 'month').count() > 3)"
    ))
    # every member once, no order without lines, joined over months (not all "now")
    assert check.split()[-4:] == ["80", "80", "0", "True"]
