"""The channel cascade: push, then SMS. Each member gets the first channel they can be reached
on; with `cascade_after`, also the next one when the first did not reach them."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from communications.models import CascadeStep, Mailing, Message, QuietHours
from communications.services import (
    mailing_complete_if_done,
    mailing_prepare,
    mailing_schedule,
    message_batch_dispatch,
)
from communications.services.cascade import cascade_fallbacks_create, mailing_cascade_set
from communications.services.schedules import mailing_runs_start
from tests.communications.factories import (
    ADMIN_NO_CASCADE_STEPS,
    GatewayFactory,
    MailingFactory,
    TemplateFactory,
)
from tests.members.factories import ConsentFactory, DeviceFactory, MemberFactory

pytestmark = pytest.mark.django_db

Status = Message.Status
State = Mailing.State


@pytest.fixture(autouse=True)
def no_quiet_hours():
    # Push and SMS have night-time quiet hours seeded; these tests are about the cascade.
    QuietHours.objects.update(is_active=False)


@pytest.fixture
def sink(settings, tmp_path):
    settings.DEBUG = True  # sinks are development-only
    settings.ENGAGE_SINK_DIR = str(tmp_path)
    return tmp_path


def _cascade_mailing(*, cascade_after: timedelta | None = None, **fields) -> Mailing:
    """Push first, then SMS, both through the development sink."""
    mailing = MailingFactory(
        template=TemplateFactory(channel="push", subject="Hi", body="Push {{ member.first_name }}"),
        gateway=GatewayFactory(channel="push", provider="file_sink", name="Push sink"),
        cascade_after=cascade_after, **fields)
    mailing_cascade_set(mailing=mailing, steps=[(
        TemplateFactory(channel="sms", subject="", body="SMS {{ member.first_name }}"),
        GatewayFactory(channel="sms", provider="file_sink", name="SMS sink"))])
    return mailing


def _member(*, push: bool = False, sms: bool = False, phone: str = ""):
    member = MemberFactory(phone=phone)
    if push:
        ConsentFactory(member=member, channel="push")
        DeviceFactory(member=member, last_seen_at=timezone.now())
    if sms:
        ConsentFactory(member=member, channel="sms")
    return member


def _rows(mailing: Mailing) -> dict[tuple[int, str], tuple[str, str]]:
    return {(m.member_id, m.channel): (m.status, m.skip_reason)
            for m in Message.objects.filter(mailing=mailing)}


def _start(mailing: Mailing) -> None:
    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)


def test_a_member_reachable_by_push_gets_push_only():
    member = _member(push=True, sms=True, phone="+4915123456789")
    mailing = _cascade_mailing()

    _start(mailing)

    assert _rows(mailing) == {(member.pk, "push"): (Status.QUEUED, "")}


def test_a_member_without_a_device_gets_the_sms_instead():
    member = _member(sms=True, phone="+4915123456789")
    mailing = _cascade_mailing()

    _start(mailing)

    assert _rows(mailing) == {(member.pk, "push"): (Status.SKIPPED, "no_address"),
                              (member.pk, "sms"): (Status.QUEUED, "")}


def test_a_member_reachable_on_no_channel_is_skipped_on_each_with_its_reason():
    member = _member(phone="+4915123456789")  # no consent anywhere
    mailing = _cascade_mailing()

    _start(mailing)

    assert _rows(mailing) == {(member.pk, "push"): (Status.SKIPPED, "no_address"),
                              (member.pk, "sms"): (Status.SKIPPED, "opted_out")}


def test_each_channel_is_sent_through_its_own_gateway_and_template(sink):
    by_push = _member(push=True)
    by_sms = _member(sms=True, phone="+4915123456789")
    mailing = _cascade_mailing()
    _start(mailing)

    message_batch_dispatch(mailing_id=mailing.pk, channel="push")
    message_batch_dispatch(mailing_id=mailing.pk, channel="sms")

    assert _rows(mailing)[(by_push.pk, "push")][0] == Status.SENT
    assert _rows(mailing)[(by_sms.pk, "sms")][0] == Status.SENT
    sms_gateway = CascadeStep.objects.get(mailing=mailing).gateway
    assert Message.objects.get(mailing=mailing, channel="sms").gateway_id == sms_gateway.pk
    written = "".join(path.read_text() for path in sink.rglob("*") if path.is_file())
    assert f"SMS {by_sms.first_name}" in written
    assert f"Push {by_push.first_name}" in written


def test_a_batch_of_one_channel_claims_none_of_another():
    by_push = _member(push=True)
    _member(sms=True, phone="+4915123456789")
    mailing = _cascade_mailing()
    _start(mailing)

    outcome = message_batch_dispatch(mailing_id=mailing.pk, channel="sms")

    assert outcome["claimed"] == 1
    assert _rows(mailing)[(by_push.pk, "push")] == (Status.QUEUED, "")


def test_a_step_on_the_mailings_own_channel_is_refused():
    mailing = MailingFactory()

    with pytest.raises(ValidationError) as error:
        mailing_cascade_set(mailing=mailing, steps=[(TemplateFactory(), GatewayFactory())])

    assert "already a channel" in error.value.message_dict["cascade_steps"][0]


def test_a_step_whose_gateway_sends_another_channel_is_refused():
    mailing = MailingFactory()
    sms_template = TemplateFactory(channel="sms", subject="", body="Hi")

    with pytest.raises(ValidationError) as error:
        mailing_cascade_set(mailing=mailing, steps=[(sms_template, GatewayFactory())])

    assert "the gateway sends email" in error.value.message_dict["cascade_steps"][0]


def test_a_step_whose_gateway_was_deactivated_keeps_the_mailing_from_starting():
    mailing = _cascade_mailing()
    CascadeStep.objects.get(mailing=mailing).gateway.__class__.objects.filter(
        name="SMS sink").update(is_active=False)

    with pytest.raises(ValidationError) as error:
        mailing_schedule(mailing=mailing)

    assert "not active" in error.value.message_dict["cascade_steps"][0]


# --- falling back when the first channel did not reach the member ------------------------------

def _sent_push(mailing: Mailing, *, status: str, sent_ago: timedelta) -> Message:
    message = Message.objects.get(mailing=mailing, channel="push")
    Message.objects.filter(pk=message.pk).update(status=status,
                                                 sent_at=timezone.now() - sent_ago)
    return message


@pytest.mark.parametrize("status", [Status.FAILED, Status.UNDELIVERED, Status.BOUNCED,
                                    Status.REJECTED, Status.EXPIRED])
def test_a_push_that_did_not_reach_the_member_falls_back_to_sms(status):
    member = _member(push=True, sms=True, phone="+4915123456789")
    mailing = _cascade_mailing(cascade_after=timedelta(hours=1))
    _start(mailing)
    _sent_push(mailing, status=status, sent_ago=timedelta(minutes=1))

    written = cascade_fallbacks_create()

    assert written == {mailing.pk: 1}
    assert _rows(mailing)[(member.pk, "sms")] == (Status.QUEUED, "")


def test_a_push_not_delivered_within_the_time_falls_back_to_sms():
    member = _member(push=True, sms=True, phone="+4915123456789")
    mailing = _cascade_mailing(cascade_after=timedelta(hours=1))
    _start(mailing)
    _sent_push(mailing, status=Status.SENT, sent_ago=timedelta(hours=2))

    cascade_fallbacks_create()

    assert _rows(mailing)[(member.pk, "sms")] == (Status.QUEUED, "")


@pytest.mark.parametrize("status, sent_ago", [
    (Status.DELIVERED, timedelta(hours=2)),
    (Status.SENT, timedelta(minutes=10)),
    (Status.UNKNOWN, timedelta(hours=2)),  # the provider may have delivered it
])
def test_a_push_that_reached_or_may_still_reach_the_member_does_not_fall_back(status, sent_ago):
    _member(push=True, sms=True, phone="+4915123456789")
    mailing = _cascade_mailing(cascade_after=timedelta(hours=1))
    _start(mailing)
    _sent_push(mailing, status=status, sent_ago=sent_ago)

    assert cascade_fallbacks_create() == {}
    assert not Message.objects.filter(mailing=mailing, channel="sms").exists()


def test_without_a_fallback_time_a_failed_push_does_not_fall_back():
    _member(push=True, sms=True, phone="+4915123456789")
    mailing = _cascade_mailing(cascade_after=None)
    _start(mailing)
    _sent_push(mailing, status=Status.FAILED, sent_ago=timedelta(hours=2))

    assert cascade_fallbacks_create() == {}


def test_a_fallback_is_written_once_however_often_the_tick_runs():
    _member(push=True, sms=True, phone="+4915123456789")
    mailing = _cascade_mailing(cascade_after=timedelta(hours=1))
    _start(mailing)
    _sent_push(mailing, status=Status.FAILED, sent_ago=timedelta(minutes=1))

    cascade_fallbacks_create()
    cascade_fallbacks_create()

    assert Message.objects.filter(mailing=mailing, channel="sms").count() == 1


def test_a_fallback_honours_the_next_channels_consent():
    member = _member(push=True, phone="+4915123456789")  # no SMS consent
    mailing = _cascade_mailing(cascade_after=timedelta(hours=1))
    _start(mailing)
    _sent_push(mailing, status=Status.FAILED, sent_ago=timedelta(minutes=1))

    cascade_fallbacks_create()

    assert _rows(mailing)[(member.pk, "sms")] == (Status.SKIPPED, "opted_out")


def test_no_fallback_after_the_mailings_message_lifetime():
    _member(push=True, sms=True, phone="+4915123456789")
    mailing = _cascade_mailing(cascade_after=timedelta(hours=1),
                               message_lifetime=timedelta(hours=1))
    _start(mailing)
    Mailing.objects.filter(pk=mailing.pk).update(started_at=timezone.now() - timedelta(hours=2))
    _sent_push(mailing, status=Status.FAILED, sent_ago=timedelta(hours=1))

    assert cascade_fallbacks_create() == {}


def test_a_mailing_is_not_completed_while_a_push_may_still_fall_back():
    _member(push=True, sms=True, phone="+4915123456789")
    mailing = _cascade_mailing(cascade_after=timedelta(hours=1))
    _start(mailing)
    _sent_push(mailing, status=Status.SENT, sent_ago=timedelta(minutes=5))

    assert mailing_complete_if_done(mailing_id=mailing.pk) is False
    Message.objects.filter(mailing=mailing).update(status=Status.DELIVERED)
    assert mailing_complete_if_done(mailing_id=mailing.pk) is True


def test_a_recurring_mailings_runs_keep_its_cascade():
    mailing = _cascade_mailing(recurrence="FREQ=DAILY;BYHOUR=9;BYMINUTE=0;BYSECOND=0")
    mailing_schedule(mailing=mailing)
    mailing.refresh_from_db()

    mailing_runs_start(now=mailing.scheduled_at + timedelta(seconds=1))

    run = Mailing.objects.get(recurring_parent=mailing)
    assert [(step.position, step.template.channel) for step in run.cascade_steps.all()] == [
        (1, "sms")]


# --- API and admin ----------------------------------------------------------------------------

def test_api_sets_and_shows_the_cascade(marketer_client):
    mailing = MailingFactory(template=TemplateFactory(channel="push", subject="Hi", body="Hi"),
                             gateway=GatewayFactory(channel="push", provider="file_sink"))
    sms_template = TemplateFactory(channel="sms", subject="", body="Hi")
    sms_gateway = GatewayFactory(channel="sms", provider="file_sink")

    response = marketer_client.patch(
        f"/api/v1/mailings/{mailing.pk}/",
        {"cascade_after": "04:00:00",
         "cascade_steps": [{"template": sms_template.pk, "gateway": sms_gateway.pk}]},
        content_type="application/json")

    assert response.status_code == 200, response.json()
    assert response.json()["cascade_steps"] == [
        {"position": 1, "channel": "sms", "template": sms_template.pk,
         "gateway": sms_gateway.pk}]
    assert response.json()["cascade_after"] == "04:00:00"


def test_api_refuses_a_cascade_step_on_the_same_channel(marketer_client):
    mailing = MailingFactory()

    response = marketer_client.patch(
        f"/api/v1/mailings/{mailing.pk}/",
        {"cascade_steps": [{"template": TemplateFactory().pk, "gateway": GatewayFactory().pk}]},
        content_type="application/json")

    assert response.status_code == 400
    assert "already a channel" in response.json()["cascade_steps"][0]
    assert not CascadeStep.objects.exists()


def test_admin_saves_a_cascade_step(marketer_client):
    mailing = MailingFactory(template=TemplateFactory(channel="push", subject="Hi", body="Hi"),
                             gateway=GatewayFactory(channel="push", provider="file_sink"))
    sms_template = TemplateFactory(channel="sms", subject="", body="Hi")
    sms_gateway = GatewayFactory(channel="sms", provider="file_sink")

    response = marketer_client.post(
        f"/admin/communications/mailing/{mailing.pk}/change/",
        {"name": mailing.name, "target_group": mailing.target_group_id,
         "template": mailing.template_id, "gateway": mailing.gateway_id, "priority": 0,
         "cascade_after": "1:00:00", **ADMIN_NO_CASCADE_STEPS,
         "cascade_steps-TOTAL_FORMS": "1", "cascade_steps-0-position": "1",
         "cascade_steps-0-template": sms_template.pk, "cascade_steps-0-gateway": sms_gateway.pk,
         "_continue": "1"})

    assert response.status_code == 302
    assert [(s.template_id, s.gateway_id) for s in mailing.cascade_steps.all()] == [
        (sms_template.pk, sms_gateway.pk)]


def test_admin_shows_an_error_for_a_step_on_the_mailings_own_channel(marketer_client):
    mailing = MailingFactory()

    response = marketer_client.post(
        f"/admin/communications/mailing/{mailing.pk}/change/",
        {"name": mailing.name, "target_group": mailing.target_group_id,
         "template": mailing.template_id, "gateway": mailing.gateway_id, "priority": 0,
         **ADMIN_NO_CASCADE_STEPS, "cascade_steps-TOTAL_FORMS": "1",
         "cascade_steps-0-position": "1", "cascade_steps-0-template": TemplateFactory().pk,
         "cascade_steps-0-gateway": GatewayFactory().pk, "_continue": "1"})

    assert response.status_code == 200
    assert "already a channel of this mailing" in response.content.decode()
    assert not CascadeStep.objects.exists()
