from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from communications.models import Message
from communications.services import mailing_prepare, mailing_schedule
from members.imports import BadRow, members_import
from members.models import AuditEntry, Consent, ConsentEvent, Member
from tests.communications.factories import MailingFactory
from tests.members.factories import (
    ConsentFactory,
    CustomAttributeFactory,
    MemberFactory,
    consenting_member,
)

pytestmark = pytest.mark.django_db

IMPORT_URL = "/api/v1/members/import/"
ADMIN_IMPORT_URL = "/admin/members/member/import/"


def _csv(*lines: str) -> io.BytesIO:
    return io.BytesIO(("\n".join(lines) + "\n").encode())


def _import(*lines: str, **options) -> object:
    return members_import(source=_csv(*lines), **options)


BROKEN = (
    "external_id,first_name,email,phone,country",
    "A1,Ana,ana@example.com,+4915112345678,DE",
    "A2,Ben,not-an-email,+4915112345679,DE",
    "A3,Cem,cem@example.com,12,DE",
    ",Dan,dan@example.com,,",
    "A5,Eva,eva@example.com,+4915112345670,Germany",
    "A1,Ann,ann@example.com,,DE",
)
BROKEN_ROWS = [
    BadRow(3, "email", "'not-an-email' is not a valid email address"),
    BadRow(4, "phone", "'12' is not a valid phone number"),
    BadRow(5, "external_id", "is required"),
    BadRow(6, "country", "must be a two-letter ISO country code such as DE"),
    BadRow(7, "external_id", "the same external id as line 2"),
]


def test_broken_csv_imports_nothing_and_names_every_bad_row():
    report = _import(*BROKEN)

    assert report.bad_rows == BROKEN_ROWS
    assert not report.imported
    assert not Member.objects.exists()


def test_skip_bad_rows_imports_the_good_rows_and_lists_the_others():
    report = _import(*BROKEN, skip_bad_rows=True)

    assert report.imported
    assert report.bad_rows == BROKEN_ROWS
    assert (report.created, report.skipped) == (1, 5)
    # the first row of a repeated external id is the one that counts
    assert list(Member.objects.values_list("external_id", "first_name")) == [("A1", "Ana")]


def test_dry_run_counts_what_would_change_and_writes_nothing():
    MemberFactory(external_id="A1", first_name="Old")

    report = _import("external_id,first_name,consent.email", "A1,New,granted", "A2,Neu,yes",
                     dry_run=True)

    assert (report.created, report.updated, report.consent_events) == (1, 1, 2)
    assert not report.imported and not report.bad_rows
    assert Member.objects.get().first_name == "Old"
    assert not Consent.objects.exists() and not ConsentEvent.objects.exists()
    assert not AuditEntry.objects.exists()


def test_known_external_id_updates_only_the_columns_in_the_file():
    member = MemberFactory(external_id="A1", first_name="Old", last_name="Kept",
                           language="de", phone="+4915112345678")

    report = _import("external_id,first_name,phone", "A1,New,+49 151 1234 5679")

    member.refresh_from_db()
    assert (report.created, report.updated) == (0, 1)
    assert (member.first_name, member.last_name, member.language) == ("New", "Kept", "de")
    assert member.phone == "+4915112345679"


def test_new_member_is_created_with_a_normalized_profile_and_joins_now():
    before = timezone.now()

    _import("external_id,first_name,email,phone,country,birth_date,timezone",
            " A1 , Ana ,Ana@Example.COM,030 1234567,de,1990-02-03,Europe/Berlin")

    member = Member.objects.get()
    assert (member.external_id, member.first_name, member.email, member.phone, member.country) \
        == ("A1", "Ana", "ana@example.com", "+49301234567", "DE")
    assert member.birth_date == dt.date(1990, 2, 3)
    assert member.registered_at >= before


def test_empty_registration_date_keeps_the_members_and_a_new_member_joins_now():
    joined = dt.datetime(2021, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    MemberFactory(external_id="A1", registered_at=joined)
    MemberFactory(external_id="A2", registered_at=None)
    before = timezone.now()

    _import("external_id,registered_at", "A1,", "A2,", "A3,", "A4,2022-02-03")

    dates = dict(Member.objects.values_list("external_id", "registered_at"))
    assert (dates["A1"], dates["A2"], dates["A4"]) == (
        joined, None, dt.datetime(2022, 2, 3, tzinfo=dt.UTC))
    assert dates["A3"] >= before


def test_phones_already_in_e164_are_checked_and_normalized_like_any_other():
    # The import's volume takes a shortcut past phonenumbers.parse for E.164 input; these are
    # the cases where parse would change or refuse the number.
    report = _import("external_id,phone", "A1,+49015112345678", "A2,+390612345678",
                     "A3,+78001234567", "A4,+19995551234", "A5,+4915", skip_bad_rows=True)

    assert dict(Member.objects.values_list("external_id", "phone")) == {
        "A1": "+4915112345678", "A2": "+390612345678", "A3": "+78001234567"}
    assert [(row.line, row.column) for row in report.bad_rows] == [(5, "phone"), (6, "phone")]


def test_unknown_column_stops_the_import_at_the_header_even_when_skipping():
    report = _import("external_id,first_name,favourite_colour", "A1,Ana,blue",
                     skip_bad_rows=True)

    assert [(row.line, row.column) for row in report.bad_rows] == [(1, "favourite_colour")]
    assert "unknown column" in report.bad_rows[0].reason
    assert not Member.objects.exists()


def test_consent_column_for_a_channel_that_does_not_exist_is_named():
    report = _import("external_id,consent.fax", "A1,granted")

    assert [(row.line, row.column) for row in report.bad_rows] == [(1, "consent.fax")]
    assert "unknown channel" in report.bad_rows[0].reason


def test_column_of_an_undeclared_custom_attribute_is_named():
    CustomAttributeFactory(key="shoe_size", type="integer")

    report = _import("external_id,attr.hat_size", "A1,7")

    assert report.bad_rows == [
        BadRow(1, "attr.hat_size", "unknown custom attribute; declared: shoe_size")]


def test_custom_attribute_of_the_wrong_type_is_a_bad_row_naming_its_column():
    CustomAttributeFactory(key="shoe_size", type="integer")

    report = _import("external_id,attr.shoe_size", "A1,42", "A2,big")

    assert report.bad_rows == [BadRow(3, "attr.shoe_size", "must be a whole number")]
    assert not Member.objects.exists()


def test_custom_attributes_merge_and_an_empty_cell_removes_one():
    CustomAttributeFactory(key="shoe_size", type="integer")
    CustomAttributeFactory(key="store", type="string")
    CustomAttributeFactory(key="vip", type="boolean")
    MemberFactory(external_id="A1", custom_attributes={"store": "Berlin", "vip": True})

    _import("external_id,attr.shoe_size,attr.vip", "A1,42,")

    assert Member.objects.get().custom_attributes == {"store": "Berlin", "shoe_size": 42}


def test_a_row_with_several_bad_cells_names_each_in_column_order():
    report = _import("external_id,phone,email,consent.sms", "A1,+1,x@,maybe")

    assert [(row.line, row.column) for row in report.bad_rows] == [
        (2, "phone"), (2, "email"), (2, "consent.sms")]


def test_row_with_missing_fields_is_a_bad_row():
    report = _import("external_id,first_name,email", "A1,Ana")

    assert report.bad_rows == [BadRow(2, "email", "the row has 2 fields, the header 3")]


def test_line_numbers_count_the_lines_of_a_quoted_field_that_spans_them():
    report = _import("external_id,first_name,email", 'A1,"Ana', 'Maria",ana@example.com',
                     "", "A2,Ben,wrong")

    assert report.bad_rows == [BadRow(5, "email", "'wrong' is not a valid email address")]


def test_values_with_tabs_backslashes_and_line_breaks_are_stored_as_written():
    _import("external_id,first_name,last_name,city", 'A1,"Ana\tMaría",O\\Neil,"Bad', 'Ems"')

    member = Member.objects.get()
    assert (member.first_name, member.last_name, member.city) == (
        "Ana\tMaría", "O\\Neil", "Bad\nEms")


def test_empty_file_is_named_as_such():
    report = members_import(source=io.BytesIO(b""))

    assert report.bad_rows == [
        BadRow(1, "", "the file is empty; the first line must be the header")]


def test_file_that_is_not_utf8_names_the_line():
    source = io.BytesIO("external_id,first_name\nA1,Ana\nA2,Jos\xe9\n".encode("latin-1"))

    report = members_import(source=source)

    assert report.bad_rows == [BadRow(3, "", "the file is not UTF-8 text")]
    assert not Member.objects.exists()


def test_erased_member_is_a_bad_row_and_left_alone():
    MemberFactory(external_id="A1", status=Member.Status.ERASED, first_name="")

    report = _import("external_id,first_name", "A1,Ana", "A2,Ben", skip_bad_rows=True)

    assert report.bad_rows == [
        BadRow(2, "external_id", "this member was erased and cannot be changed")]
    assert Member.objects.get(external_id="A1").first_name == ""
    assert Member.objects.filter(external_id="A2").exists()


def test_changed_email_loses_its_confirmation_and_an_unchanged_one_keeps_it():
    confirmed = timezone.now()
    MemberFactory(external_id="A1", email="a1@example.com", email_verified_at=confirmed)
    MemberFactory(external_id="A2", email="a2@example.com", email_verified_at=confirmed)

    _import("external_id,email", "A1,new@example.com", "A2,A2@example.com")

    verified = dict(Member.objects.values_list("external_id", "email_verified_at"))
    assert verified == {"A1": None, "A2": confirmed}


def test_consent_columns_write_ledger_events_with_source_import_and_evidence():
    _import("external_id,consent.email,consent.sms,consent_text,consented_at",
            'A1,granted,no,"Yes, send me offers",2024-05-06T07:08:09Z')

    member = Member.objects.get()
    events = ConsentEvent.objects.filter(member=member).order_by("channel")
    assert [(e.channel, e.action, e.source, e.consent_text) for e in events] == [
        ("email", "grant", "import", "Yes, send me offers"),
        ("sms", "withdraw", "import", "Yes, send me offers")]
    moment = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    assert {e.recorded_at for e in events} == {moment}
    assert dict(Consent.objects.filter(member=member).values_list("channel", "state")) == {
        "email": "granted", "sms": "withdrawn"}


def test_importing_the_same_consents_again_records_no_new_events():
    lines = ("external_id,consent.email,consent.sms", "A1,granted,withdrawn", "A2,,granted")
    first = _import(*lines)

    again = _import(*lines)

    assert (first.consent_events, again.consent_events) == (3, 0)
    assert ConsentEvent.objects.count() == 3


def test_consent_cell_that_agrees_with_the_current_state_records_nothing():
    member = consenting_member(channel="email", external_id="A1")

    report = _import("external_id,consent.email", "A1,yes")

    assert report.consent_events == 0
    assert not ConsentEvent.objects.filter(member=member).exists()


def test_an_older_decision_is_kept_in_the_ledger_once_but_does_not_overturn_a_newer_one():
    member = MemberFactory(external_id="A1")
    ConsentFactory(member=member, channel="email", state="granted",
                   recorded_at=timezone.now() - dt.timedelta(days=1))
    lines = ("external_id,consent.email,consented_at", "A1,withdrawn,2020-01-01")

    _import(*lines)
    _import(*lines)

    assert Consent.objects.get(member=member).state == "granted"
    assert list(ConsentEvent.objects.filter(member=member).values_list("action", flat=True)) \
        == ["withdraw"]


def test_consent_given_in_the_future_is_a_bad_row():
    tomorrow = (timezone.now() + dt.timedelta(days=1)).date().isoformat()

    report = _import("external_id,consent.email,consented_at", f"A1,granted,{tomorrow}")

    assert report.bad_rows == [BadRow(2, "consented_at", "is in the future")]


def test_withdrawn_consent_in_the_file_leaves_the_member_out_of_the_next_mailing():
    member = consenting_member(channel="email", external_id="A1")
    _import("external_id,consent.email", "A1,withdrawn")
    mailing = MailingFactory()

    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)

    message = Message.objects.get(mailing=mailing, member=member)
    assert (message.status, message.skip_reason) == ("skipped", "opted_out")


def test_import_is_recorded_in_the_audit_log_with_counts_and_no_personal_data(
        django_user_model):
    staff = django_user_model.objects.create_user(username="agent", is_staff=True)

    _import("external_id,email,consent.email", "A1,ana@example.com,granted", by=staff)

    entry = AuditEntry.objects.get(action=AuditEntry.Action.MEMBER_IMPORT)
    assert entry.actor == staff
    assert entry.detail == {"rows": 1, "created": 1, "updated": 0, "skipped": 0,
                            "consent_events": 1,
                            "columns": ["external_id", "email", "consent.email"]}
    assert ConsentEvent.objects.get().actor == staff


@pytest.mark.slow
def test_file_of_several_blocks_is_imported_whole_with_true_line_numbers():
    # ~2.5 MB: more than two reading blocks, so worker processes clean it where they can.
    rows = [f"B{n:06d},{'x' * 90},{'y' * 60},b{n}@example.com,+4915{n:09d}"
            for n in range(14_000)]
    rows[13_000] = "B013000,Bad,Row,not-an-email,"

    report = _import("external_id,first_name,last_name,email,phone", *rows,
                     skip_bad_rows=True)

    assert report.bad_rows == [BadRow(13_002, "email",
                                      "'not-an-email' is not a valid email address")]
    assert report.created == Member.objects.count() == 13_999


# --- the command ----------------------------------------------------------------------------

@pytest.fixture
def broken_file(tmp_path):
    path = tmp_path / "members.csv"
    path.write_text("\n".join(BROKEN) + "\n", encoding="utf-8")
    return path


def test_command_lists_every_bad_row_on_stderr_and_exits_non_zero(broken_file, capsys):
    with pytest.raises(CommandError, match="5 bad rows; nothing imported"):
        call_command("import_members", str(broken_file))

    assert capsys.readouterr().err.splitlines() == [
        f"line {row.line}, column {row.column}: {row.reason}" for row in BROKEN_ROWS]
    assert not Member.objects.exists()


def test_command_prints_a_one_line_summary(tmp_path, capsys):
    path = tmp_path / "members.csv"
    path.write_text("external_id,first_name\nA1,Ana\nA2,Ben\n", encoding="utf-8")

    call_command("import_members", str(path))

    out = capsys.readouterr().out
    assert out.startswith("Imported: 2 rows, created 2, updated 0, 0 bad rows")
    assert len(out.splitlines()) == 1


def test_command_skipping_bad_rows_imports_the_rest_and_succeeds(broken_file, capsys):
    call_command("import_members", str(broken_file), "--skip-bad-rows")

    assert len(capsys.readouterr().err.splitlines()) == 5
    assert Member.objects.count() == 1


def test_command_dry_run_writes_nothing(tmp_path):
    path = tmp_path / "members.csv"
    path.write_text("external_id,first_name\nA1,Ana\n", encoding="utf-8")

    call_command("import_members", str(path), "--dry-run")

    assert not Member.objects.exists()


def test_command_names_a_file_it_cannot_read(tmp_path):
    with pytest.raises(CommandError, match="cannot read .*missing.csv"):
        call_command("import_members", str(tmp_path / "missing.csv"))


# --- the API --------------------------------------------------------------------------------

def _upload(*lines: str) -> SimpleUploadedFile:
    return SimpleUploadedFile("members.csv", ("\n".join(lines) + "\n").encode(), "text/csv")


def test_api_answers_400_with_every_bad_row_and_imports_nothing(marketer_client):
    response = marketer_client.post(IMPORT_URL, {"file": _upload(*BROKEN)})

    assert response.status_code == 400
    assert response.json() == {"bad_rows": [row._asdict() for row in BROKEN_ROWS]}
    assert not Member.objects.exists()


def test_api_returns_the_report_of_an_import(marketer_client):
    response = marketer_client.post(IMPORT_URL, {
        "file": _upload(*BROKEN), "skip_bad_rows": "true"})

    assert response.status_code == 200
    body = response.json()
    assert (body["imported"], body["created"], body["skipped"]) == (True, 1, 5)
    assert len(body["bad_rows"]) == 5


def test_api_dry_run_reports_without_writing(marketer_client):
    response = marketer_client.post(IMPORT_URL, {
        "file": _upload("external_id,first_name", "A1,Ana"), "dry_run": "true"})

    assert response.status_code == 200
    assert (response.json()["dry_run"], response.json()["created"]) == (True, 1)
    assert not Member.objects.exists()


def test_api_without_a_file_names_the_field(marketer_client):
    response = marketer_client.post(IMPORT_URL, {"dry_run": "true"})

    assert response.status_code == 400
    assert "file" in response.json()


def test_api_import_is_for_staff_only(client, django_user_model):
    client.force_login(django_user_model.objects.create_user(username="member"))

    response = client.post(IMPORT_URL, {"file": _upload("external_id", "A1")})

    assert response.status_code == 403
    assert not Member.objects.exists()


# --- the admin ------------------------------------------------------------------------------

def test_admin_import_page_shows_the_upload_form(marketer_client):
    response = marketer_client.get(ADMIN_IMPORT_URL)

    assert response.status_code == 200
    assert b'name="file"' in response.content and b'name="skip_bad_rows"' in response.content


def test_admin_import_of_a_broken_file_shows_every_bad_row_and_imports_nothing(
        marketer_client):
    response = marketer_client.post(ADMIN_IMPORT_URL, {"file": _upload(*BROKEN)})

    assert response.status_code == 200
    assert list(response.context["bad_rows"]) == BROKEN_ROWS
    assert "Nothing was imported" in response.content.decode()
    assert not Member.objects.exists()


def test_admin_import_writes_the_members_and_shows_the_counts(marketer_client):
    response = marketer_client.post(ADMIN_IMPORT_URL, {
        "file": _upload("external_id,first_name,consent.email", "A1,Ana,granted")})

    assert response.context["report"].created == 1
    assert Member.objects.get().first_name == "Ana"
    assert ConsentEvent.objects.get().source == "import"


def test_admin_import_needs_the_change_member_permission(client, django_user_model):
    viewer = django_user_model.objects.create_user(username="viewer", is_staff=True)
    client.force_login(viewer)

    response = client.post(ADMIN_IMPORT_URL, {"file": _upload("external_id", "A1")})

    assert response.status_code == 403
    assert not Member.objects.exists()


def test_member_changelist_has_the_import_and_export_buttons(marketer_client):
    response = marketer_client.get("/admin/members/member/?q=Ana")

    content = response.content.decode()
    assert f'href="{ADMIN_IMPORT_URL}"' in content
    assert 'href="/admin/members/member/export/?q=Ana"' in content
