"""A mailing's audience: a target group, a static list, a single member, or an uploaded list
of addresses (whose members become a static list), through the services, admin and API."""
from __future__ import annotations

import io

import pytest
from django.core.exceptions import ValidationError

from campaigns.models import StaticList
from communications.address_lists import address_list_read
from communications.models import Mailing, Message
from communications.services import mailing_prepare, mailing_schedule
from communications.services.audiences import mailing_address_list_attach
from communications.services.mailings import mailing_create, mailing_update
from tests.campaigns.factories import StaticListFactory, StaticListMemberFactory
from tests.communications.factories import (
    ADMIN_NO_CASCADE_STEPS,
    GatewayFactory,
    MailingFactory,
    TemplateFactory,
)
from tests.members.factories import MemberFactory, consenting_member

pytestmark = pytest.mark.django_db


def _recipients(mailing: Mailing) -> set[int]:
    return set(Message.objects.filter(mailing=mailing).values_list("member_id", flat=True))


def _sms_mailing(**fields) -> Mailing:
    return MailingFactory(
        target_group=None,
        template=TemplateFactory(channel="sms", subject="", body="Hi {{ member.first_name }}"),
        gateway=GatewayFactory(channel="sms", provider="file_sink"), **fields)


def _upload(text: str) -> io.BytesIO:
    return io.BytesIO(text.encode())


def test_mailing_to_a_static_list_goes_to_its_members_only():
    listed = consenting_member()
    consenting_member()  # not on the list
    entry = StaticListMemberFactory(member=listed)
    mailing = MailingFactory(target_group=None, static_list=entry.static_list)

    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)

    assert _recipients(mailing) == {listed.pk}


def test_mailing_to_a_single_member_goes_to_that_member_only():
    member = consenting_member()
    consenting_member()
    mailing = MailingFactory(target_group=None, member=member)

    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)

    assert _recipients(mailing) == {member.pk}


def test_single_member_mailing_still_honours_consent():
    member = MemberFactory()  # no consent
    mailing = MailingFactory(target_group=None, member=member)

    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)

    assert Message.objects.get(mailing=mailing).skip_reason == Message.SkipReason.OPTED_OUT


def test_mailing_with_two_audiences_is_refused_naming_the_second():
    mailing = MailingFactory(member=MemberFactory())  # and the factory's target group

    with pytest.raises(ValidationError) as error:
        mailing_schedule(mailing=mailing)

    assert "one audience" in error.value.message_dict["member"][0]


def test_mailing_without_an_audience_is_refused():
    mailing = MailingFactory(target_group=None)

    with pytest.raises(ValidationError) as error:
        mailing_schedule(mailing=mailing)

    assert "needs an audience" in error.value.message_dict["target_group"][0]


def test_address_list_makes_the_members_with_those_phones_the_audience():
    known = consenting_member(channel="sms", phone="+4915123456789")
    consenting_member(channel="sms", phone="+4915199999999")  # not listed
    mailing = _sms_mailing()
    report = address_list_read(file=_upload("+4915123456789\n+4915100000000\nnot a phone\n"),
                               channel="sms")

    static_list = mailing_address_list_attach(mailing=mailing, report=report)
    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)

    assert static_list.source == StaticList.Source.ADDRESS_LIST
    assert static_list.size == 1
    assert (static_list.address_report["total"], static_list.address_report["valid"],
            static_list.address_report["unknown"], static_list.address_report["invalid"]) \
        == (3, 2, 1, 1)
    assert _recipients(mailing) == {known.pk}


def test_address_list_of_another_channel_is_refused():
    mailing = _sms_mailing()
    report = address_list_read(file=_upload("ann@example.com\n"), channel="email")

    with pytest.raises(ValidationError) as error:
        mailing_address_list_attach(mailing=mailing, report=report)

    assert "email addresses" in error.value.message_dict["address_list"][0]
    assert not StaticList.objects.exists()


def test_address_list_cannot_replace_the_audience_of_a_sending_mailing():
    consenting_member()
    mailing = MailingFactory()
    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)
    report = address_list_read(file=_upload("ann@example.com\n"), channel="email")

    with pytest.raises(ValidationError):
        mailing_address_list_attach(mailing=mailing, report=report)

    assert not StaticList.objects.exists()


def test_a_sending_mailing_cannot_be_updated():
    consenting_member()
    mailing = MailingFactory()
    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)

    with pytest.raises(ValidationError) as error:
        mailing_update(mailing=mailing, target_group=None, member=MemberFactory())

    assert "state" in error.value.message_dict


def test_created_mailing_with_an_unreadable_recurrence_is_refused():
    template = TemplateFactory()

    with pytest.raises(ValidationError) as error:
        mailing_create(name="Weekly", template=template, recurrence="FREQ=SOMETIMES")

    assert "recurrence" in error.value.message_dict
    assert not Mailing.objects.exists()


# --- API --------------------------------------------------------------------------------------

def test_api_creates_a_draft_mailing_for_a_single_member(marketer_client):
    member = MemberFactory()
    template, gateway = TemplateFactory(), GatewayFactory()

    response = marketer_client.post("/api/v1/mailings/", {
        "name": "Just Ann", "member": member.pk, "template": template.pk,
        "gateway": gateway.pk}, content_type="application/json")

    assert response.status_code == 201, response.json()
    assert response.json()["state"] == "draft"
    assert Mailing.objects.get(pk=response.json()["id"]).member_id == member.pk


def test_api_refuses_to_change_a_cancelled_mailing_with_a_field_error(marketer_client):
    mailing = MailingFactory(state=Mailing.State.CANCELLED)

    response = marketer_client.patch(f"/api/v1/mailings/{mailing.pk}/", {"name": "Renamed"},
                                     content_type="application/json")

    assert response.status_code == 400
    assert "state" in response.json()
    mailing.refresh_from_db()
    assert mailing.name != "Renamed"


def test_api_address_list_upload_answers_with_the_counts(marketer_client):
    consenting_member(channel="sms", phone="+4915123456789")
    mailing = _sms_mailing()
    upload = io.BytesIO(b"phone\n015123456789\n+4915100000000\n12\n015123456789\n")
    upload.name = "phones.csv"

    response = marketer_client.post(f"/api/v1/mailings/{mailing.pk}/address-list/",
                                    {"file": upload, "region": "de"})

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["total"], body["valid"], body["unknown"], body["invalid"],
            body["duplicates"], body["members"]) == (4, 2, 1, 1, 1, 1)
    mailing.refresh_from_db()
    assert mailing.static_list_id == body["static_list"]
    assert mailing.target_group_id is None


def test_api_address_list_that_is_not_text_is_a_field_error(marketer_client):
    mailing = _sms_mailing()
    upload = io.BytesIO(b"\xff\xfe\x00garbage")
    upload.name = "phones.xlsx"

    response = marketer_client.post(f"/api/v1/mailings/{mailing.pk}/address-list/",
                                    {"file": upload})

    assert response.status_code == 400
    assert "UTF-8" in response.json()["file"][0]
    assert not StaticList.objects.exists()


# --- admin ------------------------------------------------------------------------------------

def test_admin_upload_of_an_address_list_shows_its_counts(marketer_client):
    consenting_member(email="ann@example.com")
    mailing = MailingFactory(target_group=None, gateway=GatewayFactory(provider="file_sink"))
    upload = io.BytesIO(b"ann@example.com\nbob@example.com\nnot-an-email\n")
    upload.name = "emails.txt"

    response = marketer_client.post(
        f"/admin/communications/mailing/{mailing.pk}/change/",
        {"name": mailing.name, "template": mailing.template_id, "gateway": mailing.gateway_id,
         "priority": 0, "address_list": upload, "_continue": "1", **ADMIN_NO_CASCADE_STEPS},
        follow=True)

    assert response.status_code == 200
    page = response.content.decode()
    assert "3 lines, 2 valid (1 of them no member has), 1 invalid" in page
    mailing.refresh_from_db()
    assert mailing.static_list.size == 1


def test_admin_refuses_an_address_list_before_a_template_is_chosen(marketer_client):
    mailing = MailingFactory(target_group=None, template=None)
    upload = io.BytesIO(b"ann@example.com\n")
    upload.name = "emails.txt"

    response = marketer_client.post(
        f"/admin/communications/mailing/{mailing.pk}/change/",
        {"name": mailing.name, "gateway": mailing.gateway_id, "priority": 0,
         "address_list": upload, **ADMIN_NO_CASCADE_STEPS})

    assert response.status_code == 200  # the form again, with the error
    assert "Choose the template first" in response.content.decode()
    assert not StaticList.objects.exists()


def test_static_list_is_a_choice_of_audience_in_the_admin(marketer_client):
    static_list = StaticListFactory(name="VIP guests")
    mailing = MailingFactory(target_group=None)

    response = marketer_client.post(
        f"/admin/communications/mailing/{mailing.pk}/change/",
        {"name": mailing.name, "static_list": static_list.pk, "template": mailing.template_id,
         "gateway": mailing.gateway_id, "priority": 0, "_continue": "1",
         **ADMIN_NO_CASCADE_STEPS})

    assert response.status_code == 302
    mailing.refresh_from_db()
    assert mailing.static_list_id == static_list.pk
