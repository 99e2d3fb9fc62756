from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from communications.models import Message
from communications.services import mailing_prepare, mailing_schedule
from tests.communications.factories import MailingFactory
from tests.members.factories import MemberFactory, consenting_member

pytestmark = pytest.mark.django_db


def test_mailings_are_listed_with_their_status_counters(marketer_client):
    consenting_member()
    consenting_member(email="")
    MemberFactory()
    mailing = mailing_schedule(mailing=MailingFactory(name="Spring offers"))
    mailing_prepare(mailing_id=mailing.pk)

    response = marketer_client.get("/api/v1/mailings/")

    assert response.status_code == 200
    [row] = response.json()["results"]
    assert row["name"] == "Spring offers"
    assert row["state"] == "sending"
    assert row["channel"] == "email"
    counts = row["status_counts"]
    assert (counts["total"], counts["queued"], counts["skipped"]) == (3, 1, 2)
    assert {reason: n for reason, n in counts["skipped_by_reason"].items() if n} == {
        "no_address": 1, "opted_out": 1}
    assert set(counts["skipped_by_reason"]) == set(Message.SkipReason.values)


def test_one_mailing_can_be_read_by_id(marketer_client):
    mailing = MailingFactory()

    response = marketer_client.get(f"/api/v1/mailings/{mailing.pk}/")

    assert response.status_code == 200
    assert response.json()["id"] == mailing.pk


def test_mailings_can_be_filtered_by_state(marketer_client):
    MailingFactory()
    scheduled = mailing_schedule(mailing=MailingFactory())

    response = marketer_client.get("/api/v1/mailings/", {"state": "scheduled"})

    assert [row["id"] for row in response.json()["results"]] == [scheduled.pk]


def test_mailings_cannot_be_deleted_through_the_api(marketer_client):
    mailing = MailingFactory()

    response = marketer_client.delete(f"/api/v1/mailings/{mailing.pk}/")

    assert response.status_code == 405


def test_mailings_api_refuses_anonymous_callers(client):
    response = client.get("/api/v1/mailings/")

    assert response.status_code in (401, 403)


def test_mailings_api_refuses_non_staff_users(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("member", password="x" * 20))

    response = client.get("/api/v1/mailings/")

    assert response.status_code == 403


def test_openapi_schema_describes_the_mailings_endpoint(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    schema = response.json()
    assert "/api/v1/mailings/" in schema["paths"]
    assert "status_counts" in schema["components"]["schemas"]["Mailing"]["properties"]


def test_api_docs_page_is_served_without_a_cdn(client):
    response = client.get("/api/schema/docs/")

    assert response.status_code == 200
    assert b"swagger-ui" in response.content
    assert b"cdn.jsdelivr" not in response.content


def test_a_complete_mailing_can_be_scheduled_through_the_api(marketer_client):
    mailing = MailingFactory()

    response = marketer_client.post(
        f"/api/v1/mailings/{mailing.pk}/schedule/",
        {"scheduled_at": "2030-01-02T09:00:00Z"}, content_type="application/json",
    )

    assert response.status_code == 200
    assert response.json()["state"] == "scheduled"
    assert response.json()["scheduled_at"].startswith("2030-01-02T09:00:00")


def test_scheduling_without_a_gateway_answers_400_naming_the_field(marketer_client):
    mailing = MailingFactory(gateway=None)

    response = marketer_client.post(f"/api/v1/mailings/{mailing.pk}/schedule/",
                                    content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {"gateway": ["a mailing needs a gateway"]}


def test_a_malformed_schedule_time_answers_400_naming_the_field(marketer_client):
    mailing = MailingFactory()

    response = marketer_client.post(f"/api/v1/mailings/{mailing.pk}/schedule/",
                                    {"scheduled_at": "next tuesday"},
                                    content_type="application/json")

    assert response.status_code == 400
    assert "scheduled_at" in response.json()


def test_a_scheduled_mailing_can_be_cancelled_through_the_api(marketer_client):
    mailing = mailing_schedule(mailing=MailingFactory())

    response = marketer_client.post(f"/api/v1/mailings/{mailing.pk}/cancel/")

    assert response.status_code == 200
    assert response.json()["state"] == "cancelled"


def test_cancelling_twice_answers_400_naming_the_state(marketer_client):
    mailing = mailing_schedule(mailing=MailingFactory())
    marketer_client.post(f"/api/v1/mailings/{mailing.pk}/cancel/")

    response = marketer_client.post(f"/api/v1/mailings/{mailing.pk}/cancel/")

    assert response.status_code == 400
    assert "state" in response.json()


def test_listing_mailings_costs_the_same_queries_for_one_or_many(marketer_client):
    def queries_for_list() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert marketer_client.get("/api/v1/mailings/").status_code == 200
        return len(queries)

    MailingFactory()
    one = queries_for_list()
    for _ in range(4):
        MailingFactory()

    assert queries_for_list() == one


def test_a_sending_mailing_can_be_paused_and_resumed_through_the_api(marketer_client):
    consenting_member()
    mailing = mailing_schedule(mailing=MailingFactory())
    mailing_prepare(mailing_id=mailing.pk)

    paused = marketer_client.post(f"/api/v1/mailings/{mailing.pk}/pause/")
    resumed = marketer_client.post(f"/api/v1/mailings/{mailing.pk}/resume/")

    assert (paused.status_code, paused.json()["state"]) == (200, "paused")
    assert (resumed.status_code, resumed.json()["state"]) == (200, "sending")


def test_resuming_a_mailing_that_is_not_paused_answers_400_with_the_reason(marketer_client):
    mailing = MailingFactory()

    response = marketer_client.post(f"/api/v1/mailings/{mailing.pk}/resume/")

    assert response.status_code == 400
    assert response.json() == {"state": ["only a paused mailing can be resumed, this one is "
                                         "draft"]}
