from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from members.models import Member
from tests.loyalty.factories import LoyaltyAccountFactory, OrderLineFactory
from tests.members.factories import ConsentFactory, MemberFactory

OUR_APPS = {"members", "loyalty", "campaigns", "communications"}
REGISTERED = sorted(
    model._meta.label for model in admin.site._registry if model._meta.app_label in OUR_APPS
)


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
            "timezone": "Europe/Berlin",
            "consents-TOTAL_FORMS": "0", "consents-INITIAL_FORMS": "0",
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
            "timezone": "UTC", "consents-TOTAL_FORMS": "0", "consents-INITIAL_FORMS": "0",
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
