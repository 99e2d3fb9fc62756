"""The mailing report (selectors.reports): audience split, funnel, throughput, cost and errors,
on the admin page, its report page and the API; and test sends counted nowhere."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from communications.charts import Bar, bar_chart
from communications.models import Mailing, Message
from communications.selectors import (
    mailing_counts_from_annotations,
    mailing_status_counts,
    mailings_with_counts,
)
from communications.selectors.reports import mailing_report
from tests.communications.factories import GatewayFactory, MailingFactory
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db

State = Mailing.State
Status = Message.Status
STARTED = dt.datetime(2030, 3, 4, 9, 0, tzinfo=dt.UTC)


def _mailing(**fields) -> Mailing:
    fields.setdefault("state", State.SENDING)
    fields.setdefault("started_at", STARTED)
    return MailingFactory(**fields)


def _messages(mailing: Mailing, count: int = 1, **fields) -> list[Message]:
    """`count` messages of the mailing, each to a member of its own, with `fields`."""
    now = timezone.now()
    rows = [Message(mailing=mailing, member=member, channel="email", address=member.email,
                    created_at=now, updated_at=now, **fields)
            for member in MemberFactory.create_batch(count)]
    return Message.objects.bulk_create(rows)


def _test_send(mailing: Mailing, **fields) -> None:
    now = timezone.now()
    Message.objects.create(mailing=mailing, member=None, is_test=True, channel="email",
                           address="tester@example.com", created_at=now, updated_at=now,
                           **fields)


def _report_url(mailing: Mailing) -> str:
    return reverse("admin:communications_mailing_report", args=[mailing.pk])


def _change_url(mailing: Mailing) -> str:
    return reverse("admin:communications_mailing_change", args=[mailing.pk])


# --- the figures ------------------------------------------------------------------------------

def test_audience_split_groups_the_skip_reasons_the_marketer_acts_on():
    mailing = _mailing()
    _messages(mailing, 3, status=Status.QUEUED)
    _messages(mailing, 1, status=Status.SENT)
    for reason, count in [("no_address", 2), ("suppressed", 1), ("duplicate_address", 1),
                          ("unconfirmed", 1), ("opted_out", 4),
                          ("not_subscribed_to_category", 2), ("frequency_cap", 3),
                          ("inactive", 1)]:
        _messages(mailing, count, status=Status.SKIPPED, skip_reason=reason)

    report = mailing_report(mailing=mailing)

    assert report.audience == {"reachable": 4, "address_issue": 5, "opted_out": 4,
                               "not_subscribed": 2, "capped": 3, "inactive": 1,
                               "quiet_hours_expired": 0}
    assert report.address_issues == {"no_address": 2, "suppressed": 1,
                                     "duplicate_address": 1, "unconfirmed": 1}
    assert report.total == 19


def test_funnel_counts_a_clicked_message_also_as_sent_delivered_and_opened():
    mailing = _mailing()
    sent = timezone.now()
    _messages(mailing, 2, status=Status.QUEUED)
    _messages(mailing, 1, status=Status.SENDING)
    _messages(mailing, 3, status=Status.SENT, sent_at=sent)
    _messages(mailing, 2, status=Status.DELIVERED, sent_at=sent, delivered_at=sent)
    # a click reported without its delivery or open
    _messages(mailing, 1, status=Status.CLICKED, sent_at=sent, clicked_at=sent)
    _messages(mailing, 1, status=Status.BOUNCED, sent_at=sent)

    report = mailing_report(mailing=mailing)

    assert report.funnel == {"queued": 3, "sent": 7, "delivered": 3, "opened": 1,
                             "clicked": 1}


def test_messages_that_did_not_reach_the_member_are_counted_by_status():
    mailing = _mailing(state=State.COMPLETED)
    _messages(mailing, 2, status=Status.FAILED, error_code="550")
    _messages(mailing, 1, status=Status.EXPIRED)
    _messages(mailing, 1, status=Status.UNKNOWN)
    _messages(mailing, 1, status=Status.SKIPPED, skip_reason="opted_out")

    report = mailing_report(mailing=mailing)

    assert {status: n for status, n in report.not_delivered.items() if n} == {
        "failed": 2, "expired": 1, "unknown": 1}
    assert report.skipped_by_reason["opted_out"] == 1
    assert set(report.not_delivered) == {"failed", "rejected", "undelivered", "bounced",
                                         "complained", "expired", "cancelled", "unknown"}


def test_throughput_counts_messages_sent_per_minute_from_their_send_time():
    mailing = _mailing(started_at=STARTED, completed_at=STARTED + dt.timedelta(minutes=30),
                       state=State.COMPLETED)
    _messages(mailing, 3, status=Status.SENT, sent_at=STARTED + dt.timedelta(seconds=10))
    _messages(mailing, 2, status=Status.SENT, sent_at=STARTED + dt.timedelta(seconds=50))
    _messages(mailing, 4, status=Status.DELIVERED,
              sent_at=STARTED + dt.timedelta(minutes=2, seconds=5))
    _messages(mailing, 1, status=Status.QUEUED)

    report = mailing_report(mailing=mailing)

    assert report.bucket_minutes == 1
    assert [(bucket.start, bucket.sent) for bucket in report.throughput] == [
        (STARTED, 5), (STARTED + dt.timedelta(minutes=2), 4)]


def test_a_long_mailing_is_drawn_in_wider_buckets():
    mailing = _mailing(started_at=STARTED, completed_at=STARTED + dt.timedelta(hours=10),
                       state=State.COMPLETED)
    _messages(mailing, 2, status=Status.SENT, sent_at=STARTED + dt.timedelta(minutes=1))
    _messages(mailing, 3, status=Status.SENT, sent_at=STARTED + dt.timedelta(minutes=4))

    report = mailing_report(mailing=mailing)

    assert report.bucket_minutes == 5
    assert [(bucket.start, bucket.sent, bucket.per_minute) for bucket in report.throughput] == [
        (STARTED, 5, 1.0)]


def test_cost_so_far_is_summed_per_gateway():
    mailing = _mailing()
    first, failover = GatewayFactory(name="Relay A"), GatewayFactory(name="Relay B")
    _messages(mailing, 3, status=Status.SENT, gateway=first, cost=Decimal("0.01500"))
    _messages(mailing, 2, status=Status.DELIVERED, gateway=failover, cost=Decimal("0.02000"))
    _messages(mailing, 4, status=Status.QUEUED)

    report = mailing_report(mailing=mailing)

    assert report.cost_total == Decimal("0.08500")
    assert [(row.gateway, row.messages, row.cost) for row in report.cost_by_gateway] == [
        ("Relay A", 3, Decimal("0.04500")), ("Relay B", 2, Decimal("0.04000"))]


def test_errors_are_grouped_by_gateway_and_provider_code_with_an_example_text():
    mailing = _mailing()
    relay = GatewayFactory(name="Relay A")
    _messages(mailing, 3, status=Status.FAILED, gateway=relay, error_code="550",
              error="550 5.1.1 mailbox unavailable")
    _messages(mailing, 1, status=Status.FAILED, gateway=relay, error_code="552",
              error="552 mailbox full")
    _messages(mailing, 2, status=Status.SENT, gateway=relay)

    report = mailing_report(mailing=mailing)

    assert [(row.gateway, row.code, row.count, row.example) for row in report.errors] == [
        ("Relay A", "550", 3, "550 5.1.1 mailbox unavailable"),
        ("Relay A", "552", 1, "552 mailbox full")]


def test_test_sends_count_nowhere_in_the_report():
    mailing = _mailing()
    relay = GatewayFactory()
    _messages(mailing, 1, status=Status.SENT, sent_at=STARTED, gateway=relay,
              cost=Decimal("0.01"))
    _test_send(mailing, status=Status.FAILED, gateway=relay, error_code="550", error="no",
               sent_at=STARTED, cost=Decimal("5"))

    report = mailing_report(mailing=mailing)

    assert report.total == 1
    assert report.funnel["sent"] == 1
    assert report.statuses["failed"] == 0
    assert report.errors == []
    assert report.cost_total == Decimal("0.01")
    assert [bucket.sent for bucket in report.throughput] == [1]


def test_report_takes_three_queries_whatever_the_audience_size(django_assert_max_num_queries):
    mailing = _mailing()
    relay = GatewayFactory()
    _messages(mailing, 40, status=Status.SENT, sent_at=STARTED, gateway=relay,
              cost=Decimal("0.01"))
    _messages(mailing, 20, status=Status.FAILED, gateway=relay, error_code="550", error="x")

    with django_assert_max_num_queries(3):
        report = mailing_report(mailing=mailing)

    assert report.total == 60


# --- test sends in the existing counters --------------------------------------------------------

def test_status_counts_leave_test_sends_out():
    mailing = _mailing()
    _messages(mailing, 2, status=Status.SENT)
    _test_send(mailing, status=Status.SENT)
    _test_send(mailing, status=Status.FAILED)

    counts = mailing_status_counts(mailing=mailing)

    assert (counts["total"], counts["sent"], counts["failed"]) == (2, 2, 0)


def test_mailing_list_counters_leave_test_sends_out():
    mailing = _mailing()
    _messages(mailing, 2, status=Status.SENT)
    _test_send(mailing, status=Status.SENT)
    _test_send(mailing, status=Status.FAILED)

    counts = mailing_counts_from_annotations(mailings_with_counts().get(pk=mailing.pk))

    assert (counts["total"], counts["sent"], counts["failed"]) == (2, 2, 0)


# --- the chart ------------------------------------------------------------------------------------

def test_chart_labels_are_escaped():
    svg = bar_chart([Bar("<script>alert(1)</script>", 3)], title="A & B")

    assert "<script>" not in svg
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in svg
    assert "A &amp; B" in svg


# --- the admin ------------------------------------------------------------------------------------

def test_change_page_of_a_sending_mailing_shows_the_report_charts_beside_the_pause_button(
    marketer_client,
):
    mailing = _mailing()
    _messages(mailing, 2, status=Status.SENT, sent_at=timezone.now())

    response = marketer_client.get(_change_url(mailing))

    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="mailing-report"' in page
    assert 'data-live="1"' in page
    assert page.count('class="engage-chart"') == 3
    assert 'name="_pause"' in page


def test_change_page_of_a_draft_shows_no_report(marketer_client):
    mailing = MailingFactory()

    response = marketer_client.get(_change_url(mailing))

    assert 'id="mailing-report"' not in response.content.decode()


def test_report_page_escapes_the_names_marketers_typed(marketer_client):
    mailing = _mailing(name="<b>Spring</b> sale")
    relay = GatewayFactory(name="<img src=x onerror=alert(1)>")
    _messages(mailing, 1, status=Status.FAILED, gateway=relay, error_code="<i>5</i>",
              error="<script>alert(2)</script>", cost=Decimal("0.1"))

    response = marketer_client.get(_report_url(mailing))

    page = response.content.decode()
    assert response.status_code == 200
    assert "<b>Spring</b>" not in page
    assert "&lt;b&gt;Spring&lt;/b&gt; sale" in page
    assert "<img src=x" not in page
    assert "<script>alert(2)" not in page
    assert "&lt;i&gt;5&lt;/i&gt;" in page


def test_report_fragment_is_the_section_alone_for_the_page_to_poll(marketer_client):
    mailing = _mailing()
    _messages(mailing, 3, status=Status.QUEUED)

    response = marketer_client.get(_report_url(mailing), {"fragment": "1"})

    page = response.content.decode()
    assert page.lstrip().startswith('<div id="mailing-report"')
    assert "<html" not in page


def test_report_page_of_a_completed_mailing_does_not_refresh(marketer_client):
    mailing = _mailing(state=State.COMPLETED, completed_at=timezone.now())
    _messages(mailing, 1, status=Status.SENT, sent_at=timezone.now())

    response = marketer_client.get(_report_url(mailing))

    assert 'data-live="0"' in response.content.decode()


def test_report_page_reads_a_bounded_number_of_queries(marketer_client,
                                                       django_assert_max_num_queries):
    mailing = _mailing()
    _messages(mailing, 50, status=Status.SENT, sent_at=timezone.now(), cost=Decimal("0.01"),
              gateway=GatewayFactory())

    with django_assert_max_num_queries(8):
        response = marketer_client.get(_report_url(mailing))

    assert response.status_code == 200


# --- the API ------------------------------------------------------------------------------------

def test_report_api_answers_the_same_figures_as_json(marketer_client):
    mailing = _mailing(started_at=STARTED, completed_at=STARTED + dt.timedelta(minutes=5),
                       state=State.COMPLETED)
    relay = GatewayFactory(name="Relay A")
    _messages(mailing, 2, status=Status.DELIVERED, sent_at=STARTED, delivered_at=STARTED,
              gateway=relay, cost=Decimal("0.01"))
    _messages(mailing, 1, status=Status.FAILED, gateway=relay, error_code="550",
              error="mailbox unavailable")
    _messages(mailing, 1, status=Status.SKIPPED, skip_reason="opted_out")

    response = marketer_client.get(f"/api/v1/mailings/{mailing.pk}/report/")

    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 4
    assert body["audience"]["reachable"] == 3
    assert body["audience"]["opted_out"] == 1
    assert body["funnel"] == {"queued": 0, "sent": 2, "delivered": 2, "opened": 0,
                              "clicked": 0}
    assert body["throughput"] == [{"start": "2030-03-04T09:00:00Z", "sent": 2,
                                   "per_minute": 2.0}]
    assert Decimal(body["cost_total"]) == Decimal("0.02")
    assert body["cost_by_gateway"][0]["gateway"] == "Relay A"
    assert body["errors"] == [{"gateway_id": relay.pk, "gateway": "Relay A", "code": "550",
                               "count": 1, "example": "mailbox unavailable"}]
    assert body["live"] is False


@pytest.mark.parametrize("mailing_id", ["999999", "null,null"])
def test_report_api_answers_404_for_an_unknown_mailing(marketer_client, mailing_id):
    response = marketer_client.get(f"/api/v1/mailings/{mailing_id}/report/")

    assert response.status_code == 404


def test_report_api_refuses_anonymous_callers(client):
    mailing = _mailing()

    response = client.get(f"/api/v1/mailings/{mailing.pk}/report/")

    assert response.status_code == 403


def test_openapi_schema_describes_the_report(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()

    assert "/api/v1/mailings/{id}/report/" in schema["paths"]
    report = schema["components"]["schemas"]["MailingReport"]["properties"]
    assert {"audience", "funnel", "throughput", "cost_by_gateway", "errors"} <= set(report)
