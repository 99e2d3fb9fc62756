"""The marketer's home page (selectors.dashboard, config/admin_site.py): what is sending now,
what is scheduled, last week's results and their CSV, in a fixed number of queries."""
from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from communications.models import Mailing, Message
from communications.selectors.dashboard import mailing_dashboard
from config.roles import ANALYST, SUPPORT
from tests.communications.factories import MailingFactory
from tests.members.factories import MemberFactory
from tests.roles_support import admin_as  # noqa: F401

pytestmark = pytest.mark.django_db

State = Mailing.State
Status = Message.Status
NOW = dt.datetime(2030, 3, 11, 12, 0, tzinfo=dt.UTC)
HOME = "/admin/"
CSV_URL = reverse("admin:dashboard_last_week_csv")


def _messages(mailing: Mailing, count: int = 1, **fields) -> None:
    """`count` messages of the mailing, each to a member of its own, with `fields`."""
    rows = [Message(mailing=mailing, member=member, channel="email", address=member.email,
                    created_at=NOW, updated_at=NOW, **fields)
            for member in MemberFactory.create_batch(count)]
    Message.objects.bulk_create(rows)


def _sending(**fields) -> Mailing:
    fields.setdefault("state", State.SENDING)
    fields.setdefault("started_at", NOW - dt.timedelta(minutes=30))
    return MailingFactory(**fields)


def _completed(days_ago: float, *, now: dt.datetime = NOW, **fields) -> Mailing:
    done = now - dt.timedelta(days=days_ago)
    return MailingFactory(state=State.COMPLETED, started_at=done - dt.timedelta(hours=1),
                          completed_at=done, **fields)


# --- sending now ------------------------------------------------------------------------------

def test_sending_now_shows_progress_and_the_rate_of_the_last_five_minutes():
    mailing = _sending()
    _messages(mailing, 4, status=Status.QUEUED)
    _messages(mailing, 3, status=Status.SENT, sent_at=NOW - dt.timedelta(minutes=20))
    _messages(mailing, 5, status=Status.SENT, sent_at=NOW - dt.timedelta(minutes=2))
    _messages(mailing, 2, status=Status.SKIPPED, skip_reason="opted_out")
    # a test send is no part of the mailing's progress
    Message.objects.create(mailing=mailing, member=None, is_test=True, channel="email",
                           address="tester@example.com", status=Status.SENT, sent_at=NOW,
                           created_at=NOW, updated_at=NOW)

    [row] = mailing_dashboard(now=NOW).sending

    assert (row.id, row.figures.audience, row.figures.sent, row.figures.waiting) == (
        mailing.pk, 14, 8, 4)
    assert row.progress_percent == 71  # 10 of 14 past waiting
    assert row.rate_per_minute == 1.0  # 5 sent in the last 5 minutes


def test_sending_now_holds_preparing_sending_and_paused_mailings_and_nothing_else():
    live = {_sending(state=state).pk for state in (State.PREPARING, State.SENDING,
                                                   State.PAUSED)}
    _sending(state=State.DRAFT)
    _completed(days_ago=1)

    assert {row.id for row in mailing_dashboard(now=NOW).sending} == live


def test_trigger_mailings_are_not_on_the_dashboard():
    _sending(kind=Mailing.Kind.TRIGGER)

    dashboard = mailing_dashboard(now=NOW)

    assert dashboard.sending == []


# --- scheduled --------------------------------------------------------------------------------

def test_scheduled_lists_the_mailings_due_in_the_next_seven_days_soonest_first():
    later = MailingFactory(state=State.SCHEDULED, scheduled_at=NOW + dt.timedelta(days=6))
    sooner = MailingFactory(state=State.RECURRING, scheduled_at=NOW + dt.timedelta(hours=2))
    MailingFactory(state=State.SCHEDULED, scheduled_at=NOW + dt.timedelta(days=8))
    MailingFactory(state=State.DRAFT, scheduled_at=NOW + dt.timedelta(days=1))

    scheduled = mailing_dashboard(now=NOW).scheduled

    assert [row.id for row in scheduled] == [sooner.pk, later.pk]
    assert scheduled[0].audience_source == f"Target group: {sooner.target_group.name}"


# --- last week --------------------------------------------------------------------------------

def test_last_week_shows_each_completed_mailings_results_and_the_totals():
    # given
    older = _completed(days_ago=5)
    _messages(older, 2, status=Status.DELIVERED, sent_at=NOW, delivered_at=NOW,
              cost=Decimal("0.10"))
    newer = _completed(days_ago=1)
    _messages(newer, 1, status=Status.CLICKED, sent_at=NOW, clicked_at=NOW, cost=Decimal("0.2"))
    _messages(newer, 1, status=Status.OPENED, sent_at=NOW, opened_at=NOW, cost=Decimal("0.2"))
    _messages(newer, 1, status=Status.FAILED, error_code="550")
    _messages(newer, 1, status=Status.BOUNCED, sent_at=NOW)
    _completed(days_ago=8)
    MailingFactory(state=State.CANCELLED, completed_at=NOW - dt.timedelta(days=1))

    # when
    dashboard = mailing_dashboard(now=NOW)

    # then
    assert [row.id for row in dashboard.last_week] == [newer.pk, older.pk]
    figures = dashboard.last_week[0].figures
    assert (figures.audience, figures.sent, figures.delivered, figures.opened, figures.clicked,
            figures.failed, figures.cost) == (4, 3, 2, 2, 1, 2, Decimal("0.4"))
    totals = dashboard.last_week_totals
    assert (totals.audience, totals.sent, totals.delivered, totals.failed, totals.cost) == (
        6, 5, 4, 2, Decimal("0.6"))


# --- queries ----------------------------------------------------------------------------------

def _one_of_each(index: int) -> None:
    mailing = _sending(name=f"Live {index}")
    _messages(mailing, 2, status=Status.SENT, sent_at=NOW)
    MailingFactory(state=State.SCHEDULED, scheduled_at=NOW + dt.timedelta(days=1))
    _messages(_completed(days_ago=2), 2, status=Status.DELIVERED, sent_at=NOW,
              delivered_at=NOW, cost=Decimal("0.1"))


@pytest.mark.parametrize("mailings", [1, 5])
def test_the_dashboard_reads_in_two_queries_whatever_the_number_of_mailings(
        django_assert_num_queries, mailings):
    for index in range(mailings):
        _one_of_each(index)

    with django_assert_num_queries(2):
        dashboard = mailing_dashboard(now=NOW)

    assert (len(dashboard.sending), len(dashboard.scheduled), len(dashboard.last_week)) == (
        mailings, mailings, mailings)


def test_the_home_page_makes_as_many_queries_for_five_mailings_as_for_one(
        admin_as):  # noqa: F811
    client = admin_as(ANALYST)
    _one_of_each(0)
    client.get(HOME)  # the session and permission caches settle

    with CaptureQueriesContext(connection) as one:
        client.get(HOME)
    for index in range(1, 5):
        _one_of_each(index)
    with CaptureQueriesContext(connection) as five:
        response = client.get(HOME)

    assert len(response.context["dashboard"].last_week) == 5
    assert len(five) == len(one)


# --- the page and its CSV ---------------------------------------------------------------------

def test_the_home_page_shows_the_dashboard_with_links_to_each_mailing(admin_as):  # noqa: F811
    live = _sending(name="Spring <sale>", started_at=timezone.now())
    _messages(live, 1, status=Status.QUEUED)
    due = MailingFactory(state=State.SCHEDULED,
                         scheduled_at=timezone.now() + dt.timedelta(days=2))

    page = admin_as(ANALYST).get(HOME).content.decode()

    assert reverse("admin:communications_mailing_report", args=[live.pk]) in page
    assert "Spring &lt;sale&gt;" in page
    assert reverse("admin:communications_mailing_change", args=[due.pk]) in page
    assert 'id="dashboard-last-week"' in page


def test_staff_who_may_not_view_mailings_get_the_screens_without_the_dashboard(
        admin_as):  # noqa: F811
    _sending()

    response = admin_as(SUPPORT).get(HOME)

    assert "dashboard" not in response.context
    assert 'id="dashboard-sending"' not in response.content.decode()


def test_last_weeks_results_download_as_csv_with_a_total_row(admin_as):  # noqa: F811
    mailing = _completed(days_ago=1, now=timezone.now(), name="=cmd|' /C calc'!A0")
    _messages(mailing, 2, status=Status.DELIVERED, sent_at=NOW, delivered_at=NOW,
              cost=Decimal("0.25"))

    response = admin_as(ANALYST).get(CSV_URL)

    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert rows[0][:2] == ["mailing_id", "mailing"]
    assert rows[1][:2] == [str(mailing.pk), "'=cmd|' /C calc'!A0"]
    assert rows[1][5:] == ["2", "2", "2", "0", "0", "0", "0", "0.50000"]
    assert rows[2][1] == "Total"
    assert rows[2][5] == "2"


def test_the_last_week_csv_is_refused_to_staff_who_may_not_view_mailings(
        admin_as):  # noqa: F811
    assert admin_as(SUPPORT).get(CSV_URL).status_code == 403
