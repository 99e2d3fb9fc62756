from __future__ import annotations

import json

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from communications.models import Message
from communications.services import mailing_prepare, mailing_schedule
from members.models import AuditEntry, ConsentEvent, CustomAttribute, Member, Suppression
from members.services import consent_record, member_data_export, member_erase, suppression_add
from tests.communications.factories import MailingFactory
from tests.loyalty.factories import LoyaltyAccountFactory, OrderLineFactory, TierFactory
from tests.members.factories import (
    ConsentFactory,
    CustomAttributeFactory,
    MemberFactory,
    SubscriptionCategoryFactory,
    consenting_member,
)

OUR_APPS = {"members", "loyalty", "campaigns", "communications"}
REGISTERED = sorted(
    model._meta.label for model in admin.site._registry if model._meta.app_label in OUR_APPS
)

# The management forms of the member page's inlines, with no rows.
INLINES_EMPTY = {
    f"{prefix}-{field}": "0"
    for prefix in ("consents", "consent_events", "devices", "messenger_accounts")
    for field in ("TOTAL_FORMS", "INITIAL_FORMS")
}


def _admin_url(model_label: str, view: str, *args: object) -> str:
    app_label, model_name = model_label.lower().split(".")
    return reverse(f"admin:{app_label}_{model_name}_{view}", args=args)


@pytest.mark.django_db
@pytest.mark.parametrize("model_label", REGISTERED)
def test_changelist_pages_render(marketer_client, model_label):
    response = marketer_client.get(_admin_url(model_label, "changelist"))

    assert response.status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("model_label", REGISTERED)
def test_add_pages_render_or_are_refused_for_read_only_models(marketer_client, rf, marketer,
                                                              model_label):
    request = rf.get("/")
    request.user = marketer
    can_add = admin.site.get_model_admin(apps.get_model(model_label)).has_add_permission(request)

    response = marketer_client.get(_admin_url(model_label, "add"))

    assert response.status_code == (200 if can_add else 403)


@pytest.mark.django_db
def test_member_changelist_does_not_count_the_whole_table(marketer_client):
    MemberFactory.create_batch(3)

    response = marketer_client.get(_admin_url("members.Member", "changelist"))

    assert response.context["cl"].show_full_result_count is False


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["external_id", "email", "phone", "last_name"])
def test_member_search_finds_the_member_by_each_identifier(marketer_client, field):
    wanted = MemberFactory(last_name="Zwiebelmann", phone="+4915112345678")
    MemberFactory(last_name="Other", phone="+4915112345679")

    response = marketer_client.get(
        _admin_url("members.Member", "changelist"), {"q": getattr(wanted, field)}
    )

    assert list(response.context["cl"].result_list) == [wanted]


@pytest.mark.django_db
def test_member_page_shows_consents_without_letting_them_be_edited(marketer_client):
    member = MemberFactory()
    ConsentFactory(member=member, channel="sms")

    response = marketer_client.get(_admin_url("members.Member", "change", member.pk))

    assert response.status_code == 200
    assert "SMS" in response.content.decode()
    assert b'name="consents-0-state"' not in response.content


@pytest.mark.django_db
def test_member_profile_is_saved_from_the_change_page(marketer_client):
    member = MemberFactory()

    response = marketer_client.post(
        _admin_url("members.Member", "change", member.pk),
        {
            "external_id": member.external_id, "first_name": "Anna", "last_name": "Berg",
            "email": "anna@example.com", "phone": "+4915112345678", "language": "de",
            "timezone": "Europe/Berlin", "status": "active", **INLINES_EMPTY,
        },
    )

    assert response.status_code == 302
    member.refresh_from_db()
    assert (member.first_name, member.language) == ("Anna", "de")


@pytest.mark.django_db
def test_member_with_a_phone_not_in_e164_is_rejected_on_save(marketer_client):
    response = marketer_client.post(
        _admin_url("members.Member", "add"),
        {
            "external_id": "M-1", "phone": "0151 1234 5678", "language": "en",
            "timezone": "UTC", "status": "active", **INLINES_EMPTY,
        },
    )

    assert response.status_code == 200
    assert "phone" in response.context["adminform"].form.errors
    assert not Member.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("model_label", ["loyalty.LoyaltyAccount", "loyalty.Order"])
def test_member_foreign_keys_are_raw_id_inputs_not_a_select_of_all_members(marketer_client,
                                                                           model_label):
    MemberFactory.create_batch(3)

    response = marketer_client.get(_admin_url(model_label, "add"))

    assert b'<select name="member"' not in response.content
    assert b'class="vForeignKeyRawIdAdminField"' in response.content


@pytest.mark.django_db
def test_order_page_shows_its_lines(marketer_client):
    line = OrderLineFactory()

    response = marketer_client.get(_admin_url("loyalty.Order", "change", line.order.pk))

    assert response.status_code == 200
    assert line.product.sku in response.content.decode()


@pytest.mark.django_db
def test_loyalty_account_member_cannot_be_changed_once_created(marketer_client):
    account = LoyaltyAccountFactory()

    response = marketer_client.get(_admin_url("loyalty.LoyaltyAccount", "change",
                                              account.pk))

    assert response.status_code == 200
    assert b'name="member"' not in response.content


# --- member profile through the service ----------------------------------------------------

def _member_form(member: Member | None = None, **fields: object) -> dict[str, object]:
    data: dict[str, object] = {
        "first_name": "Anna", "last_name": "Berg", "email": "", "phone": "", "language": "en",
        "timezone": "UTC", "status": "active", "custom_attributes": "{}", **INLINES_EMPTY,
    }
    if member is None:
        data["external_id"] = "M-NEW"
    return {**data, **fields}


@pytest.mark.django_db
def test_member_saved_from_the_admin_gets_its_phone_normalized_with_its_country(
        marketer_client):
    response = marketer_client.post(
        _admin_url("members.Member", "add"),
        _member_form(phone="0151 1234 5678", country="de", email="Anna@Example.COM"))

    assert response.status_code == 302
    member = Member.objects.get(external_id="M-NEW")
    assert (member.phone, member.country, member.email) == (
        "+4915112345678", "DE", "anna@example.com")


@pytest.mark.django_db
def test_unknown_custom_attribute_is_a_form_error_naming_the_attribute(marketer_client):
    member = MemberFactory()

    response = marketer_client.post(_admin_url("members.Member", "change", member.pk),
                                    _member_form(member, custom_attributes='{"shoe_size": 42}'))

    assert response.status_code == 200
    [error] = response.context["adminform"].form.errors["custom_attributes"]
    assert error.startswith("shoe_size: unknown attribute")


@pytest.mark.django_db
def test_custom_attribute_deleted_in_the_admin_is_removed_from_the_member(marketer_client):
    CustomAttributeFactory(key="nickname")
    CustomAttributeFactory(key="favourite_shop")
    member = MemberFactory(custom_attributes={"nickname": "Anni", "favourite_shop": "Mitte"})

    response = marketer_client.post(_admin_url("members.Member", "change", member.pk),
                                    _member_form(member, custom_attributes='{"nickname": "A"}'))

    assert response.status_code == 302
    member.refresh_from_db()
    assert member.custom_attributes == {"nickname": "A"}


@pytest.mark.django_db
def test_member_list_shows_status_and_tier(marketer_client):
    LoyaltyAccountFactory(member=MemberFactory(status="blocked"), tier=TierFactory(code="gold"))

    response = marketer_client.get(_admin_url("members.Member", "changelist"))

    row = response.content.decode()
    assert "Blocked" in row
    assert "Gold" in row


@pytest.mark.django_db
def test_member_search_finds_a_phone_typed_with_spaces(marketer_client):
    wanted = MemberFactory(phone="+4915112345678")
    MemberFactory()

    response = marketer_client.get(_admin_url("members.Member", "changelist"),
                                   {"q": "+49 151 1234 5678"})

    assert list(response.context["cl"].result_list) == [wanted]


@pytest.mark.django_db
def test_member_list_can_be_filtered_by_country(marketer_client):
    german = MemberFactory(country="DE")
    MemberFactory(country="FR")

    response = marketer_client.get(_admin_url("members.Member", "changelist"),
                                   {"country": "DE"})

    assert list(response.context["cl"].result_list) == [german]


# --- consent history and the support agent's consent change ---------------------------------

@pytest.mark.django_db
def test_member_page_shows_the_consent_history_with_agent_and_reason(marketer_client,
                                                                     marketer):
    member = MemberFactory()
    consent_record(member=member, channel="sms", action="grant", source="app",
                   ip_address="203.0.113.9", consent_text="Yes, text me offers")
    consent_record(member=member, channel="sms", action="withdraw", source="support",
                   reason="Called the hotline", actor=marketer)

    response = marketer_client.get(_admin_url("members.Member", "change", member.pk))

    page = response.content.decode()
    assert "Consent history" in page
    for shown in ("203.0.113.9", "Yes, text me offers", "Called the hotline", "Support agent",
                  "marketer"):
        assert shown in page
    assert page.index("Called the hotline") < page.index("Yes, text me offers")  # newest first


@pytest.mark.django_db
def test_member_page_links_to_the_support_and_privacy_pages(marketer_client):
    member = MemberFactory()

    response = marketer_client.get(_admin_url("members.Member", "change", member.pk))

    page = response.content.decode()
    for view in ("consent", "personal_data", "erase"):
        assert _admin_url("members.Member", view, member.pk) in page


@pytest.mark.django_db
def test_support_consent_change_without_a_reason_is_a_form_error(marketer_client):
    member = consenting_member()

    response = marketer_client.post(
        _admin_url("members.Member", "consent", member.pk),
        {"channel": "email", "purpose": "marketing", "action": "withdraw", "reason": " "})

    assert response.status_code == 200
    assert "reason" in response.context["form"].errors
    assert not ConsentEvent.objects.filter(member=member).exists()


@pytest.mark.django_db
def test_support_consent_change_is_recorded_with_the_agent_reason_and_an_audit_entry(
        marketer_client, marketer):
    member = consenting_member()

    response = marketer_client.post(
        _admin_url("members.Member", "consent", member.pk),
        {"channel": "email", "purpose": "marketing", "action": "withdraw",
         "reason": "Asked by phone, ticket 4711"})

    assert response.status_code == 302
    event = ConsentEvent.objects.get(member=member)
    assert (event.action, event.source, event.actor, event.reason) == (
        "withdraw", "support", marketer, "Asked by phone, ticket 4711")
    audit = AuditEntry.objects.get(action="consent_change")
    assert (audit.member_id, audit.actor) == (member.pk, marketer)


@pytest.mark.django_db
def test_support_withdrawal_excludes_the_member_from_the_next_mailing(marketer_client):
    member = consenting_member()
    marketer_client.post(
        _admin_url("members.Member", "consent", member.pk),
        {"channel": "email", "purpose": "marketing", "action": "withdraw",
         "reason": "Member asked at the till"})
    mailing = mailing_schedule(mailing=MailingFactory())

    mailing_prepare(mailing_id=mailing.pk)

    message = Message.objects.get(mailing=mailing, member=member)
    assert (message.status, message.skip_reason) == ("skipped", "opted_out")


@pytest.mark.django_db
def test_consent_change_refused_by_the_ledger_shows_the_error_on_its_field(marketer_client):
    member = MemberFactory()
    category = SubscriptionCategoryFactory()

    response = marketer_client.post(
        _admin_url("members.Member", "consent", member.pk),
        {"channel": "email", "purpose": "service", "category": category.pk,
         "action": "grant", "reason": "Member asked"})

    assert response.status_code == 200
    assert response.context["form"].errors["category"] == [
        "subscription categories apply to marketing consent only"]


# --- privacy --------------------------------------------------------------------------------

@pytest.mark.django_db
def test_personal_data_downloads_as_a_json_attachment(marketer_client, marketer):
    member = MemberFactory(first_name="Zorbina")

    response = marketer_client.get(_admin_url("members.Member", "personal_data", member.pk))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].startswith("attachment;")
    assert json.loads(response.content)["profile"]["first_name"] == "Zorbina"
    assert AuditEntry.objects.get(action="data_export").actor == marketer


@pytest.mark.django_db
def test_erasure_without_a_reason_is_a_form_error(marketer_client):
    member = MemberFactory()

    response = marketer_client.post(_admin_url("members.Member", "erase", member.pk),
                                    {"reason": ""})

    assert response.status_code == 200
    assert "reason" in response.context["form"].errors
    member.refresh_from_db()
    assert member.status == "active"


@pytest.mark.django_db
def test_erasure_with_a_reason_anonymizes_the_member(marketer_client, marketer):
    member = MemberFactory(first_name="Zorbina")

    response = marketer_client.post(_admin_url("members.Member", "erase", member.pk),
                                    {"reason": "Erasure request, ticket 99"})

    assert response.status_code == 302
    member.refresh_from_db()
    assert (member.status, member.first_name) == ("erased", "")
    assert AuditEntry.objects.get(action="erasure").actor == marketer


@pytest.mark.django_db
def test_erased_member_page_cannot_be_saved(marketer_client):
    member = MemberFactory()
    member_erase(member=member, by=None, reason="test")

    response = marketer_client.post(_admin_url("members.Member", "change", member.pk),
                                    _member_form(member, first_name="Back"))

    assert response.status_code == 403


# --- ledger, suppressions, categories, attributes, audit ------------------------------------

@pytest.mark.django_db
def test_consent_events_can_be_found_by_the_exact_email_of_the_member(marketer_client):
    wanted = MemberFactory()
    consent_record(member=wanted, channel="email", action="grant", source="api")
    consent_record(member=MemberFactory(), channel="email", action="grant", source="api")

    response = marketer_client.get(_admin_url("members.ConsentEvent", "changelist"),
                                   {"q": wanted.email.upper()})

    assert [event.member_id for event in response.context["cl"].result_list] == [wanted.pk]


@pytest.mark.django_db
def test_suppression_added_in_the_admin_is_normalized_and_audited(marketer_client, marketer):
    response = marketer_client.post(
        _admin_url("members.Suppression", "add"),
        {"channel": "email", "address": " Bounced@Example.COM ", "reason": "manual",
         "note": "asked by letter"})

    assert response.status_code == 302
    suppression = Suppression.objects.get()
    assert (suppression.address, suppression.created_by) == ("bounced@example.com", marketer)
    assert AuditEntry.objects.get(action="suppression_add").actor == marketer


@pytest.mark.django_db
def test_suppression_with_an_invalid_address_is_a_form_error(marketer_client):
    response = marketer_client.post(
        _admin_url("members.Suppression", "add"),
        {"channel": "sms", "address": "not a phone", "reason": "manual"})

    assert response.status_code == 200
    assert "address" in response.context["adminform"].form.errors
    assert not Suppression.objects.exists()


def _lift(client, suppression: Suppression, reason: str):
    return client.post(
        _admin_url("members.Suppression", "changelist"),
        {"action": "lift_suppressions", "_selected_action": [suppression.pk], "lift": "yes",
         "reason": reason})


@pytest.mark.django_db
def test_suppressions_cannot_be_deleted_without_a_reason(marketer_client):
    suppression = suppression_add(channel="email", address="a@example.com", reason="manual")

    response = _lift(marketer_client, suppression, reason="")

    assert response.status_code == 200
    assert "reason" in response.context["form"].errors
    assert Suppression.objects.exists()


@pytest.mark.django_db
def test_lifting_a_suppression_with_a_reason_removes_it_and_audits_the_reason(
        marketer_client):
    suppression = suppression_add(channel="email", address="a@example.com", reason="manual")

    response = _lift(marketer_client, suppression, reason="Blocked by mistake")

    assert response.status_code == 302
    assert not Suppression.objects.exists()
    assert AuditEntry.objects.get(action="suppression_remove").detail["reason"] == (
        "Blocked by mistake")


@pytest.mark.django_db
def test_suppression_delete_page_is_refused(marketer_client):
    suppression = suppression_add(channel="email", address="a@example.com", reason="manual")

    response = marketer_client.post(_admin_url("members.Suppression", "delete",
                                               suppression.pk), {"post": "yes"})

    assert response.status_code == 403
    assert Suppression.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("choices", ["[]", '["gold", 3]', '{"a": 1}', '[""]'])
def test_choice_attribute_needs_a_non_empty_list_of_texts(marketer_client, choices):
    response = marketer_client.post(
        _admin_url("members.CustomAttribute", "add"),
        {"key": "level", "label": "Level", "type": "choice", "choices": choices})

    assert response.status_code == 200
    assert "choices" in response.context["adminform"].form.errors


@pytest.mark.django_db
def test_choice_attribute_with_a_list_of_texts_is_saved(marketer_client):
    response = marketer_client.post(
        _admin_url("members.CustomAttribute", "add"),
        {"key": "level", "label": "Level", "type": "choice", "choices": '["gold", "silver"]'})

    assert response.status_code == 302
    assert CustomAttribute.objects.get(key="level").choices == ["gold", "silver"]


@pytest.mark.django_db
def test_audit_log_can_be_filtered_by_action(marketer_client, marketer):
    member = MemberFactory()
    member_data_export(member=member, by=marketer)
    suppression_add(channel="email", address="a@example.com", reason="manual", by=marketer)

    response = marketer_client.get(_admin_url("members.AuditEntry", "changelist"),
                                   {"action__exact": "data_export"})

    assert [entry.action for entry in response.context["cl"].result_list] == ["data_export"]
