"""The mailing report as CSV (`report.csv` on the mailing admin): its sections, cells a
spreadsheet cannot run as formulas, and who may download it."""
from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from communications.models import Mailing, Message
from config.csv_export import csv_cell, csv_lines
from config.roles import ANALYST, SUPPORT
from tests.communications.factories import GatewayFactory, MailingFactory
from tests.members.factories import MemberFactory
from tests.roles_support import admin_as  # noqa: F401

pytestmark = pytest.mark.django_db

Status = Message.Status
STARTED = dt.datetime(2030, 3, 4, 9, 0, tzinfo=dt.UTC)


def _messages(mailing: Mailing, count: int = 1, **fields) -> None:
    now = timezone.now()
    Message.objects.bulk_create([
        Message(mailing=mailing, member=member, channel="email", address=member.email,
                created_at=now, updated_at=now, **fields)
        for member in MemberFactory.create_batch(count)])


def _completed(**fields) -> Mailing:
    return MailingFactory(state=Mailing.State.COMPLETED, started_at=STARTED,
                          completed_at=STARTED + dt.timedelta(minutes=30), **fields)


def _url(mailing: Mailing) -> str:
    return reverse("admin:communications_mailing_report_csv", args=[mailing.pk])


def _download(client, mailing: Mailing) -> list[dict[str, str]]:
    response = client.get(_url(mailing))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert f'filename="mailing-{mailing.pk}-report.csv"' in response["Content-Disposition"]
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def _section(rows: list[dict[str, str]], name: str) -> list[dict[str, str]]:
    return [row for row in rows if row["section"] == name]


def test_report_csv_holds_the_funnel_throughput_costs_and_errors(admin_as):  # noqa: F811
    # given
    gateway = GatewayFactory(name="Main SMTP")
    mailing = _completed(gateway=gateway)
    _messages(mailing, 3, status=Status.DELIVERED, gateway=gateway, cost=Decimal("0.1"),
              sent_at=STARTED + dt.timedelta(seconds=20), delivered_at=STARTED)
    _messages(mailing, 1, status=Status.CLICKED, gateway=gateway, cost=Decimal("0.1"),
              sent_at=STARTED + dt.timedelta(minutes=2), clicked_at=STARTED)
    _messages(mailing, 2, status=Status.FAILED, gateway=gateway, error_code="550",
              error="mailbox unavailable")

    # when
    rows = _download(admin_as(ANALYST), mailing)

    # then
    funnel = {row["code"]: int(row["messages"]) for row in _section(rows, "funnel")}
    assert funnel == {"queued": 0, "sent": 4, "delivered": 4, "opened": 1, "clicked": 1}
    throughput = [(row["name"], row["messages"], row["amount"])
                  for row in _section(rows, "throughput")]
    assert throughput == [("2030-03-04T09:00:00+00:00", "3", "3.0"),
                          ("2030-03-04T09:02:00+00:00", "1", "1.0")]
    assert [(row["name"], row["messages"], row["amount"]) for row in _section(rows, "cost")] == [
        ("Main SMTP", "4", "0.40000"), ("Total", "4", "0.40000")]
    assert [(row["name"], row["code"], row["messages"], row["detail"])
            for row in _section(rows, "error")] == [
        ("Main SMTP", "550", "2", "mailbox unavailable")]
    assert _section(rows, "mailing")[0]["messages"] == "6"


def test_report_csv_counts_every_status_and_skip_reason(admin_as):  # noqa: F811
    mailing = _completed()
    _messages(mailing, 2, status=Status.SKIPPED, skip_reason="opted_out")

    rows = _download(admin_as(ANALYST), mailing)

    statuses = {row["code"]: row["messages"] for row in _section(rows, "status")}
    assert set(statuses) == set(Status.values)
    assert statuses["skipped"] == "2"
    skipped = {row["code"]: row["messages"] for row in _section(rows, "skipped")}
    assert skipped["opted_out"] == "2"


def test_names_and_provider_texts_that_start_a_formula_get_a_leading_apostrophe(
        admin_as):  # noqa: F811
    gateway = GatewayFactory(name="+SUM(1,1)")
    mailing = _completed(name="=HYPERLINK(\"http://evil.example\",\"x\")", gateway=gateway)
    _messages(mailing, 1, status=Status.FAILED, gateway=gateway, error_code="-1",
              error="@cmd /c calc")

    rows = _download(admin_as(ANALYST), mailing)

    assert _section(rows, "mailing")[0]["name"] == "'=HYPERLINK(\"http://evil.example\",\"x\")"
    [error] = _section(rows, "error")
    assert (error["name"], error["code"], error["detail"]) == (
        "'+SUM(1,1)", "'-1", "'@cmd /c calc")


def test_numbers_are_written_as_numbers_even_when_negative():
    assert csv_cell(-3) == -3
    assert csv_cell(Decimal("-0.5")) == Decimal("-0.5")
    assert csv_cell("-3") == "'-3"


def test_every_formula_start_is_guarded_in_csv_lines():
    lines = list(csv_lines(["a"], [[start + "x"] for start in ("=", "+", "-", "@", "\t")]))

    assert lines[1:] == ["'=x\r\n", "'+x\r\n", "'-x\r\n", "'@x\r\n", "'\tx\r\n"]


def test_a_user_without_view_permission_on_mailings_gets_403(admin_as):  # noqa: F811
    mailing = _completed()

    assert admin_as(SUPPORT).get(_url(mailing)).status_code == 403


def test_the_report_page_links_its_csv(admin_as):  # noqa: F811
    mailing = _completed()

    page = admin_as(ANALYST).get(
        reverse("admin:communications_mailing_report", args=[mailing.pk])).content.decode()

    assert _url(mailing) in page
