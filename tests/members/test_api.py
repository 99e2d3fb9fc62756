from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from django.utils import timezone

from communications.models import Message
from communications.services import mailing_prepare, mailing_schedule
from members.models import AuditEntry, ConsentEvent, Member, Suppression
from members.services import consent_record, suppression_add
from tests.communications.factories import MailingFactory
from tests.members.factories import (
    CustomAttributeFactory,
    MemberFactory,
    SubscriptionCategoryFactory,
    consenting_member,
)

pytestmark = pytest.mark.django_db


def _ids(response) -> list[int]:
    return [row["id"] for row in response.json()["results"]]


# --- members --------------------------------------------------------------------------------

def test_members_are_listed_newest_first(marketer_client):
    older, newer = MemberFactory(), MemberFactory()

    response = marketer_client.get("/api/v1/members/")

    assert response.status_code == 200
    assert _ids(response) == [newer.pk, older.pk]


@pytest.mark.parametrize("field, typed", [
    ("external_id", None), ("email", "M-WANTED@Members.Example.com"),
    ("phone", "+49 151 1234 5678"),
])
def test_members_can_be_filtered_by_an_exact_identifier(marketer_client, field, typed):
    wanted = MemberFactory(external_id="M-WANTED", phone="+4915112345678")
    MemberFactory()

    response = marketer_client.get("/api/v1/members/",
                                   {field: typed or getattr(wanted, field)})

    assert _ids(response) == [wanted.pk]


def test_members_can_be_filtered_by_status(marketer_client):
    blocked = MemberFactory(status="blocked")
    MemberFactory()

    response = marketer_client.get("/api/v1/members/", {"status": "blocked"})

    assert _ids(response) == [blocked.pk]


def test_members_can_be_filtered_by_the_time_they_changed(marketer_client):
    old = MemberFactory()
    recent = MemberFactory()
    Member.objects.filter(pk=old.pk).update(updated_at=timezone.now() - dt.timedelta(days=3))

    response = marketer_client.get(
        "/api/v1/members/",
        {"updated_since": (timezone.now() - dt.timedelta(days=1)).isoformat()})

    assert _ids(response) == [recent.pk]


def test_an_invalid_phone_filter_is_a_400_naming_phone(marketer_client):
    response = marketer_client.get("/api/v1/members/", {"phone": "not a phone"})

    assert response.status_code == 400
    assert "phone" in response.json()


def test_one_member_can_be_read_by_id(marketer_client):
    member = MemberFactory()

    response = marketer_client.get(f"/api/v1/members/{member.pk}/")

    assert response.status_code == 200
    assert response.json()["external_id"] == member.external_id


def test_upsert_of_a_new_external_id_creates_the_member(marketer_client):
    CustomAttributeFactory(key="shoe_size", type="integer")

    response = marketer_client.post(
        "/api/v1/members/upsert/",
        {"external_id": "L-1", "first_name": "Anna", "phone": "0151 1234 5678",
         "country": "DE", "custom_attributes": {"shoe_size": "38"}},
        content_type="application/json")

    assert response.status_code == 201
    body = response.json()
    assert (body["phone"], body["custom_attributes"]) == ("+4915112345678", {"shoe_size": 38})
    assert Member.objects.get(external_id="L-1").first_name == "Anna"


def test_upsert_of_a_known_external_id_updates_only_the_fields_sent(marketer_client):
    member = MemberFactory(external_id="L-1", first_name="Anna", last_name="Berg")

    response = marketer_client.post(
        "/api/v1/members/upsert/", {"external_id": "L-1", "first_name": "Anne"},
        content_type="application/json")

    assert response.status_code == 200
    member.refresh_from_db()
    assert (member.first_name, member.last_name) == ("Anne", "Berg")


def test_upsert_with_an_invalid_phone_is_a_400_naming_phone(marketer_client):
    response = marketer_client.post(
        "/api/v1/members/upsert/", {"external_id": "L-1", "phone": "12"},
        content_type="application/json")

    assert response.status_code == 400
    assert list(response.json()) == ["phone"]
    assert not Member.objects.exists()


def test_upsert_with_an_unknown_custom_attribute_is_a_400_naming_it(marketer_client):
    response = marketer_client.post(
        "/api/v1/members/upsert/",
        {"external_id": "L-1", "custom_attributes": {"shoe_size": 38}},
        content_type="application/json")

    assert response.status_code == 400
    assert "custom_attributes.shoe_size" in response.json()
    assert not Member.objects.exists()


def test_upsert_without_an_external_id_is_a_400_naming_it(marketer_client):
    response = marketer_client.post("/api/v1/members/upsert/", {"first_name": "Anna"},
                                    content_type="application/json")

    assert response.status_code == 400
    assert "external_id" in response.json()


def test_patch_changes_the_fields_sent(marketer_client):
    member = MemberFactory(first_name="Anna", city="Berlin")

    response = marketer_client.patch(f"/api/v1/members/{member.pk}/", {"city": "Hamburg"},
                                     content_type="application/json")

    assert response.status_code == 200
    member.refresh_from_db()
    assert (member.first_name, member.city) == ("Anna", "Hamburg")


def test_patch_with_an_unknown_field_is_a_400_naming_it(marketer_client):
    member = MemberFactory()

    response = marketer_client.patch(f"/api/v1/members/{member.pk}/", {"nickname": "A"},
                                     content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {"nickname": ["unknown field"]}


def test_patch_cannot_change_the_external_id(marketer_client):
    member = MemberFactory(external_id="L-1")

    response = marketer_client.patch(f"/api/v1/members/{member.pk}/", {"external_id": "L-2"},
                                     content_type="application/json")

    assert response.status_code == 400
    assert "external_id" in response.json()


def test_members_api_refuses_a_signed_in_member_who_is_not_staff(client, django_user_model):
    client.force_login(django_user_model.objects.create_user(username="member",
                                                             password="x" * 20))

    response = client.get("/api/v1/members/")

    assert response.status_code == 403


# --- consents -------------------------------------------------------------------------------

def test_current_consents_and_history_are_listed(marketer_client):
    member = MemberFactory()
    consent_record(member=member, channel="email", action="grant", source="app",
                   consent_text="Yes, email me")
    consent_record(member=member, channel="email", action="withdraw", source="api")

    current = marketer_client.get(f"/api/v1/members/{member.pk}/consents/").json()
    history = marketer_client.get(f"/api/v1/members/{member.pk}/consent-history/").json()

    assert [(c["channel"], c["state"], c["source"]) for c in current] == [
        ("email", "withdrawn", "api")]
    assert [(e["action"], e["consent_text"]) for e in history] == [
        ("withdraw", ""), ("grant", "Yes, email me")]


def test_consent_posted_through_the_api_is_recorded_with_its_evidence(marketer_client,
                                                                      marketer):
    member = MemberFactory()
    category = SubscriptionCategoryFactory(code="offers")

    response = marketer_client.post(
        f"/api/v1/members/{member.pk}/consents/",
        {"channel": "email", "category": "offers", "action": "grant", "source": "app",
         "consent_text": "Send me offers", "ip_address": "203.0.113.7",
         "user_agent": "EngageApp/2.1"},
        content_type="application/json")

    assert response.status_code == 201
    event = ConsentEvent.objects.get(pk=response.json()["id"])
    assert (event.category, event.source, event.ip_address, event.user_agent, event.actor) == (
        category, "app", "203.0.113.7", "EngageApp/2.1", marketer)


def test_withdrawal_posted_through_the_api_excludes_the_member_from_the_next_mailing(
        marketer_client):
    member = consenting_member()

    response = marketer_client.post(f"/api/v1/members/{member.pk}/consents/",
                                    {"channel": "email", "action": "withdraw"},
                                    content_type="application/json")
    mailing = mailing_schedule(mailing=MailingFactory())
    mailing_prepare(mailing_id=mailing.pk)

    assert response.status_code == 201
    message = Message.objects.get(mailing=mailing, member=member)
    assert (message.status, message.skip_reason) == ("skipped", "opted_out")


def test_consent_for_an_unknown_channel_is_a_400_naming_channel(marketer_client):
    member = MemberFactory()

    response = marketer_client.post(f"/api/v1/members/{member.pk}/consents/",
                                    {"channel": "fax", "action": "grant"},
                                    content_type="application/json")

    assert response.status_code == 400
    assert list(response.json()) == ["channel"]
    assert not ConsentEvent.objects.exists()


def test_support_consent_through_the_api_needs_a_reason(marketer_client):
    member = MemberFactory()

    response = marketer_client.post(f"/api/v1/members/{member.pk}/consents/",
                                    {"channel": "sms", "action": "grant", "source": "support"},
                                    content_type="application/json")

    assert response.status_code == 400
    assert "reason" in response.json()


def test_sources_that_have_their_own_door_cannot_be_claimed_through_the_api(marketer_client):
    member = MemberFactory()

    response = marketer_client.post(
        f"/api/v1/members/{member.pk}/consents/",
        {"channel": "sms", "action": "withdraw", "source": "sms_stop"},
        content_type="application/json")

    assert response.status_code == 400
    assert "source" in response.json()


# --- privacy --------------------------------------------------------------------------------

def test_personal_data_export_returns_the_profile_and_is_audited(marketer_client, marketer):
    member = MemberFactory(first_name="Zorbina")

    response = marketer_client.get(f"/api/v1/members/{member.pk}/export/")

    assert response.status_code == 200
    assert response.json()["profile"]["first_name"] == "Zorbina"
    assert AuditEntry.objects.get(action="data_export").actor == marketer


def test_erasure_through_the_api_anonymizes_the_member(marketer_client, marketer):
    member = MemberFactory(first_name="Zorbina")

    response = marketer_client.post(f"/api/v1/members/{member.pk}/erase/",
                                    {"reason": "Ticket 99"}, content_type="application/json")

    assert response.status_code == 200
    assert (response.json()["status"], response.json()["first_name"]) == ("erased", "")
    assert AuditEntry.objects.get(action="erasure").actor == marketer


def test_erasure_without_a_reason_is_a_400_naming_reason(marketer_client):
    member = MemberFactory()

    response = marketer_client.post(f"/api/v1/members/{member.pk}/erase/", {},
                                    content_type="application/json")

    assert response.status_code == 400
    assert "reason" in response.json()
    member.refresh_from_db()
    assert member.status == "active"


def test_erasing_an_erased_member_again_is_a_400(marketer_client):
    member = MemberFactory()
    marketer_client.post(f"/api/v1/members/{member.pk}/erase/", {"reason": "Ticket 99"},
                         content_type="application/json")

    response = marketer_client.post(f"/api/v1/members/{member.pk}/erase/",
                                    {"reason": "Ticket 99"}, content_type="application/json")

    assert response.status_code == 400
    assert "member" in response.json()


# --- suppressions ---------------------------------------------------------------------------

def test_suppression_is_created_with_its_address_normalized(marketer_client, marketer):
    response = marketer_client.post(
        "/api/v1/suppressions/",
        {"channel": "sms", "address": "+49 151 2345 6789", "reason": "manual"},
        content_type="application/json")

    assert response.status_code == 201
    assert response.json()["address"] == "+4915123456789"
    assert Suppression.objects.get().created_by == marketer


def test_suppression_of_an_invalid_address_is_a_400_naming_address(marketer_client):
    response = marketer_client.post(
        "/api/v1/suppressions/", {"channel": "email", "address": "nope", "reason": "manual"},
        content_type="application/json")

    assert response.status_code == 400
    assert list(response.json()) == ["address"]


def test_suppressions_can_be_filtered_by_channel_reason_and_address(marketer_client):
    wanted = suppression_add(channel="email", address="a@example.com", reason="complaint")
    suppression_add(channel="email", address="b@example.com", reason="complaint")
    suppression_add(channel="email", address="c@example.com", reason="manual")
    suppression_add(channel="sms", address="+4915123456789", reason="complaint")

    response = marketer_client.get("/api/v1/suppressions/", {
        "channel": "email", "reason": "complaint", "address": "A@Example.com"})

    assert _ids(response) == [wanted.pk]


@pytest.mark.parametrize("how", ["body", "query"])
def test_suppression_is_lifted_with_a_reason_in_the_body_or_the_query(marketer_client, how):
    suppression = suppression_add(channel="email", address="a@example.com", reason="manual")
    url = f"/api/v1/suppressions/{suppression.pk}/"

    if how == "body":
        response = marketer_client.delete(url, {"reason": "Blocked by mistake"},
                                          content_type="application/json")
    else:
        response = marketer_client.delete(f"{url}?reason=Blocked+by+mistake")

    assert response.status_code == 204
    assert not Suppression.objects.exists()
    assert AuditEntry.objects.get(action="suppression_remove").detail["reason"] == (
        "Blocked by mistake")


def test_suppression_is_not_lifted_without_a_reason(marketer_client):
    suppression = suppression_add(channel="email", address="a@example.com", reason="manual")

    response = marketer_client.delete(f"/api/v1/suppressions/{suppression.pk}/")

    assert response.status_code == 400
    assert "reason" in response.json()
    assert Suppression.objects.exists()


# --- schema ---------------------------------------------------------------------------------

def test_api_schema_generates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file",
                 str(tmp_path / "schema.yml"))
