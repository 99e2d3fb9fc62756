from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from members.exports import members_export_csv
from members.imports import members_import
from members.models import AuditEntry, ConsentEvent, Member
from tests.members.factories import (
    ConsentFactory,
    CustomAttributeFactory,
    MemberFactory,
    SubscriptionCategoryFactory,
)

pytestmark = pytest.mark.django_db

EXPORT_URL = "/api/v1/members/export.csv"
ADMIN_CHANGELIST = "/admin/members/member/"


def _rows(lines) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO("".join(lines))))


def _profile(member: Member) -> dict:
    member.refresh_from_db()
    fields = {f.attname: getattr(member, f.attname) for f in Member._meta.concrete_fields}
    fields.pop("updated_at")
    return fields


@pytest.fixture
def members():
    CustomAttributeFactory(key="shoe_size", type="integer")
    CustomAttributeFactory(key="vip", type="boolean")
    ana = MemberFactory(
        external_id="A1", first_name="Ana, María", last_name="O'Neil", email="ana@example.com",
        phone="+4915112345678", birth_date=dt.date(1990, 2, 3), gender="female",
        city="Köln", country="DE", latitude=50.94, longitude=6.96,
        registered_at=dt.datetime(2023, 4, 5, 6, 7, 8, tzinfo=dt.UTC),
        registration_source="shop", custom_attributes={"shoe_size": 38, "vip": True})
    ConsentFactory(member=ana, channel="email", state="granted")
    ConsentFactory(member=ana, channel="sms", state="withdrawn")
    ben = MemberFactory(external_id="B2", first_name="Ben", email="", phone="")
    return ana, ben


def test_export_has_the_import_columns_and_each_members_current_consents(members):
    rows = _rows(members_export_csv())

    assert list(rows[0]) == [
        "external_id", "first_name", "last_name", "email", "phone", "birth_date", "gender",
        "language", "timezone", "city", "region", "country", "latitude", "longitude",
        "registered_at", "registration_source", "attr.shoe_size", "attr.vip", "consent.sms",
        "consent.email", "consent.push", "consent.viber", "consent.social"]
    expected = {"external_id": "A1", "first_name": "Ana, María", "last_name": "O'Neil",
                "birth_date": "1990-02-03", "latitude": "50.94", "attr.shoe_size": "38",
                "attr.vip": "true", "consent.email": "granted", "consent.sms": "withdrawn",
                "consent.push": ""}
    assert {column: rows[0][column] for column in expected} == expected
    assert (rows[1]["external_id"], rows[1]["consent.email"], rows[1]["attr.vip"]) == (
        "B2", "", "")


def test_category_and_service_consents_are_not_the_channels_marketing_consent(members):
    _, ben = members
    ConsentFactory(member=ben, channel="email", state="withdrawn",
                   category=SubscriptionCategoryFactory())
    ConsentFactory(member=ben, channel="push", state="granted", purpose="service")

    rows = _rows(members_export_csv())

    assert (rows[1]["consent.email"], rows[1]["consent.push"]) == ("", "")


def test_exported_file_imported_again_restores_the_members_and_records_nothing(members):
    ana, ben = members
    before = [_profile(ana), _profile(ben)]
    exported = "".join(members_export_csv())
    Member.objects.filter(pk=ana.pk).update(first_name="Changed", custom_attributes={})

    report = members_import(source=io.BytesIO(exported.encode()))

    assert not report.bad_rows
    assert (report.created, report.updated, report.consent_events) == (0, 2, 0)
    assert [_profile(ana), _profile(ben)] == before
    assert not ConsentEvent.objects.exists()


def test_exported_file_creates_the_same_members_and_consents_elsewhere(members):
    exported = "".join(members_export_csv())
    renamed = exported.replace("\r\nA1,", "\r\nC3,").replace("\r\nB2,", "\r\nD4,")

    report = members_import(source=io.BytesIO(renamed.encode()))

    assert (report.created, report.consent_events) == (2, 2)
    copy = Member.objects.get(external_id="C3")
    assert (copy.first_name, copy.phone, copy.custom_attributes) == (
        "Ana, María", "+4915112345678", {"shoe_size": 38, "vip": True})
    assert dict(copy.consents.values_list("channel", "state")) == {
        "email": "granted", "sms": "withdrawn"}


def test_erased_members_are_left_out(members):
    MemberFactory(external_id="E9", status=Member.Status.ERASED)

    rows = _rows(members_export_csv())

    assert [row["external_id"] for row in rows] == ["A1", "B2"]


def test_export_reads_consents_in_the_same_query_as_the_members(
        members, django_assert_max_num_queries):
    MemberFactory.create_batch(30)

    with django_assert_max_num_queries(4):
        lines = list(members_export_csv())

    assert len(lines) == 33


def test_export_is_recorded_in_the_audit_log(members, django_user_model):
    staff = django_user_model.objects.create_user(username="agent", is_staff=True)

    members_export_csv(by=staff)

    entry = AuditEntry.objects.get(action=AuditEntry.Action.MEMBER_EXPORT)
    assert (entry.actor, entry.detail["scope"]) == (staff, "all")


# --- the command ----------------------------------------------------------------------------

def test_command_writes_the_export_to_standard_output(members):
    out = io.StringIO()

    call_command("export_members", stdout=out)

    assert [row["external_id"] for row in _rows(out.getvalue())] == ["A1", "B2"]


def test_command_writes_the_export_to_a_file(members, tmp_path):
    path = tmp_path / "members.csv"

    call_command("export_members", "--output", str(path))

    assert [row["external_id"] for row in _rows(path.read_text(encoding="utf-8"))] == [
        "A1", "B2"]


# --- the API and the admin ------------------------------------------------------------------

def test_api_streams_the_export_as_a_csv_download(members, marketer_client):
    response = marketer_client.get(EXPORT_URL)

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="members-')
    body = b"".join(response.streaming_content).decode()
    assert [row["external_id"] for row in _rows(body)] == ["A1", "B2"]


def test_api_export_is_for_staff_only(client, django_user_model):
    client.force_login(django_user_model.objects.create_user(username="member"))

    assert client.get(EXPORT_URL).status_code == 403


def test_admin_export_takes_the_changelists_search(members, marketer_client):
    response = marketer_client.get(f"{ADMIN_CHANGELIST}export/", {"q": "B2"})

    body = b"".join(response.streaming_content).decode()
    assert [row["external_id"] for row in _rows(body)] == ["B2"]
    assert AuditEntry.objects.get(action="member_export").detail["scope"] == "selection"


def test_admin_action_exports_the_selected_members(members, marketer_client):
    ana, _ = members

    response = marketer_client.post(ADMIN_CHANGELIST, {
        "action": "export_selected_csv", "_selected_action": [ana.pk]})

    body = b"".join(response.streaming_content).decode()
    assert [row["external_id"] for row in _rows(body)] == ["A1"]


def test_admin_export_needs_the_view_member_permission(client, django_user_model):
    client.force_login(django_user_model.objects.create_user(username="staff", is_staff=True))

    assert client.get(f"{ADMIN_CHANGELIST}export/").status_code == 403


def test_export_time_format_reads_back_as_the_same_moment(members):
    ana, _ = members

    rows = _rows(members_export_csv())

    assert dt.datetime.fromisoformat(rows[0]["registered_at"]) == ana.registered_at
    assert timezone.is_aware(dt.datetime.fromisoformat(rows[0]["registered_at"]))
