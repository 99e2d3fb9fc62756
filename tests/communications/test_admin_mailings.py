from __future__ import annotations

import datetime as dt

import pytest
from django.contrib import messages
from django.urls import reverse
from django.utils import timezone

from communications.models import Gateway, Mailing, Message, Template
from tests.campaigns.factories import TargetGroupFactory
from tests.communications.factories import (
    ADMIN_NO_CASCADE_STEPS,
    GatewayFactory,
    MailingFactory,
    TemplateFactory,
)
from tests.members.factories import MemberFactory

State = Mailing.State
Status = Message.Status
CHANGELIST = reverse("admin:communications_mailing_changelist")


def _change_url(mailing: Mailing) -> str:
    return reverse("admin:communications_mailing_change", args=[mailing.pk])


def _form(mailing: Mailing, button: str = "_save", **fields: object) -> dict[str, object]:
    """The change form as a browser posts it, with `fields` overriding the mailing's values."""
    scheduled_at = fields.pop("scheduled_at", mailing.scheduled_at)
    local = timezone.localtime(scheduled_at) if scheduled_at else None
    data = {
        "name": mailing.name,
        "campaign": mailing.campaign_id or "",
        "target_group": mailing.target_group_id or "",
        "template": mailing.template_id or "",
        "gateway": mailing.gateway_id or "",
        "scheduled_at_0": local.strftime("%Y-%m-%d") if local else "",
        "scheduled_at_1": local.strftime("%H:%M:%S") if local else "",
        button: "1",
        **ADMIN_NO_CASCADE_STEPS,
    }
    data.update({key: "" if value is None else value for key, value in fields.items()})
    return data


def _messages(mailing: Mailing, **by_status: int) -> None:
    now = timezone.now()
    rows = []
    for status, count in by_status.items():
        status, _, reason = status.partition("__")
        for member in MemberFactory.create_batch(count):
            rows.append(Message(mailing=mailing, member=member, channel="email",
                                address=member.email, status=status, skip_reason=reason,
                                created_at=now, updated_at=now))
    Message.objects.bulk_create(rows)


def _shown(response) -> list[tuple[int, str]]:
    return [(m.level, m.message) for m in response.context["messages"]]


# --- the change page buttons ----------------------------------------------------------------

@pytest.mark.django_db
def test_scheduling_a_mailing_without_gateway_shows_a_form_error_naming_the_field(
    marketer_client,
):
    mailing = MailingFactory(gateway=None)

    response = marketer_client.post(_change_url(mailing), _form(mailing, "_schedule"))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "gateway": ["a mailing needs a gateway"]
    }
    mailing.refresh_from_db()
    assert mailing.state == State.DRAFT


@pytest.mark.django_db
def test_scheduling_with_a_gateway_of_another_channel_shows_a_form_error_on_the_gateway(
    marketer_client,
):
    mailing = MailingFactory(template=TemplateFactory(channel="sms", subject=""))

    response = marketer_client.post(_change_url(mailing), _form(mailing, "_schedule"))

    assert response.context["adminform"].form.errors == {
        "gateway": ["the gateway sends email, the template is for sms"]
    }


@pytest.mark.django_db
def test_a_rejected_schedule_saves_none_of_the_edits(marketer_client):
    mailing = MailingFactory(name="Spring sale", target_group=None)

    marketer_client.post(_change_url(mailing), _form(mailing, "_schedule", name="Renamed"))

    mailing.refresh_from_db()
    assert (mailing.name, mailing.state) == ("Spring sale", State.DRAFT)


@pytest.mark.django_db
def test_save_and_schedule_uses_the_scheduled_time(marketer_client):
    mailing = MailingFactory()
    at = (timezone.now() + dt.timedelta(days=2)).replace(microsecond=0)

    response = marketer_client.post(_change_url(mailing),
                                    _form(mailing, "_schedule", scheduled_at=at))

    assert response.status_code == 302
    mailing.refresh_from_db()
    assert (mailing.state, mailing.scheduled_at) == (State.SCHEDULED, at)


@pytest.mark.django_db
def test_save_and_schedule_without_a_time_schedules_for_now(marketer_client):
    mailing = MailingFactory()
    before = timezone.now()

    marketer_client.post(_change_url(mailing), _form(mailing, "_schedule"))

    mailing.refresh_from_db()
    assert mailing.state == State.SCHEDULED
    assert before <= mailing.scheduled_at <= timezone.now()


@pytest.mark.django_db
def test_a_new_mailing_can_be_saved_and_scheduled_at_once(marketer_client, marketer):
    draft = MailingFactory.build(target_group=TargetGroupFactory(), template=TemplateFactory(),
                                 gateway=GatewayFactory(), campaign=None)

    response = marketer_client.post(reverse("admin:communications_mailing_add"),
                                    _form(draft, "_schedule"))

    mailing = Mailing.objects.get()
    assert response.url == _change_url(mailing)
    assert (mailing.state, mailing.created_by) == (State.SCHEDULED, marketer)


@pytest.mark.django_db
def test_saving_a_draft_keeps_it_a_draft(marketer_client):
    mailing = MailingFactory(gateway=None)

    response = marketer_client.post(_change_url(mailing), _form(mailing, name="Renamed"))

    assert response.status_code == 302
    mailing.refresh_from_db()
    assert (mailing.name, mailing.state) == ("Renamed", State.DRAFT)


@pytest.mark.django_db
def test_start_now_schedules_the_mailing(marketer_client):
    mailing = MailingFactory(scheduled_at=timezone.now() + dt.timedelta(days=7))

    response = marketer_client.post(_change_url(mailing), _form(mailing, "_start_now"),
                                    follow=True)

    mailing.refresh_from_db()
    assert mailing.state == State.SCHEDULED
    assert mailing.scheduled_at <= timezone.now()
    assert (messages.SUCCESS, f"“{mailing}” is starting now.") in _shown(response)


@pytest.mark.django_db
def test_start_now_enqueues_the_audience_snapshot_only_after_commit(
    marketer_client, django_capture_on_commit_callbacks,
):
    mailing = MailingFactory()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        marketer_client.post(_change_url(mailing), _form(mailing, "_start_now"))

    assert len(callbacks) == 1


@pytest.mark.django_db
def test_start_now_without_a_template_shows_a_form_error_naming_the_field(marketer_client):
    mailing = MailingFactory(template=None)

    response = marketer_client.post(_change_url(mailing), _form(mailing, "_start_now"))

    assert response.context["adminform"].form.errors == {
        "template": ["a mailing needs a template"]
    }


@pytest.mark.django_db
def test_cancel_button_cancels_a_scheduled_mailing(marketer_client):
    mailing = MailingFactory(state=State.SCHEDULED, scheduled_at=timezone.now())

    response = marketer_client.post(_change_url(mailing), _form(mailing, "_cancel"),
                                    follow=True)

    mailing.refresh_from_db()
    assert mailing.state == State.CANCELLED
    assert (messages.SUCCESS, f"“{mailing}” is cancelled.") in _shown(response)


@pytest.mark.django_db
def test_cancelling_a_completed_mailing_reports_why_it_cannot(marketer_client):
    mailing = MailingFactory(state=State.COMPLETED)

    response = marketer_client.post(_change_url(mailing), {"_cancel": "1"}, follow=True)

    assert (messages.ERROR, "state: a completed mailing cannot be cancelled") in _shown(
        response)


@pytest.mark.django_db
def test_change_page_of_a_draft_offers_schedule_start_and_cancel(marketer_client):
    mailing = MailingFactory()

    content = marketer_client.get(_change_url(mailing)).content.decode()

    for name in ("_save", "_schedule", "_start_now", "_cancel"):
        assert f'name="{name}"' in content


@pytest.mark.django_db
def test_change_page_of_a_sending_mailing_offers_only_pause_and_cancel(marketer_client):
    mailing = MailingFactory(state=State.SENDING)

    content = marketer_client.get(_change_url(mailing)).content.decode()

    assert 'name="_pause"' in content
    assert 'name="_cancel"' in content
    for name in ("_save", "_continue", "_schedule", "_start_now", "_resume"):
        assert f'name="{name}"' not in content


@pytest.mark.django_db
def test_change_page_of_a_paused_mailing_offers_resume(marketer_client):
    mailing = MailingFactory(state=State.PAUSED)

    content = marketer_client.get(_change_url(mailing)).content.decode()

    assert 'name="_resume"' in content
    assert 'name="_pause"' not in content


@pytest.mark.django_db
def test_pause_button_pauses_a_sending_mailing(marketer_client):
    mailing = MailingFactory(state=State.SENDING)

    response = marketer_client.post(_change_url(mailing), {"_pause": "1"}, follow=True)

    mailing.refresh_from_db()
    assert mailing.state == State.PAUSED
    assert (messages.SUCCESS, f"“{mailing}” is paused.") in _shown(response)


@pytest.mark.django_db
def test_resume_button_sends_a_paused_mailing_again(marketer_client):
    mailing = MailingFactory(state=State.PAUSED)

    response = marketer_client.post(_change_url(mailing), {"_resume": "1"}, follow=True)

    mailing.refresh_from_db()
    assert mailing.state == State.SENDING
    assert (messages.SUCCESS, f"“{mailing}” is sending again.") in _shown(response)


# --- what may change ------------------------------------------------------------------------

@pytest.mark.django_db
def test_sending_mailing_fields_are_read_only(marketer_client):
    mailing = MailingFactory(state=State.SENDING)
    other_group = TargetGroupFactory()

    page = marketer_client.get(_change_url(mailing))
    response = marketer_client.post(_change_url(mailing),
                                    _form(mailing, target_group=other_group.pk))

    assert 'name="target_group"' not in page.content.decode()
    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors() == [
        "This mailing is sending; it can no longer be changed."
    ]
    mailing.refresh_from_db()
    assert mailing.target_group_id != other_group.pk
    assert mailing.state == State.SENDING


@pytest.mark.django_db
def test_state_is_not_a_field_of_the_mailing_form(marketer_client):
    mailing = MailingFactory()

    response = marketer_client.post(_change_url(mailing), _form(mailing, state="completed"))

    assert response.status_code == 302
    mailing.refresh_from_db()
    assert mailing.state == State.DRAFT


@pytest.mark.django_db
def test_a_scheduled_mailing_cannot_be_saved_without_its_template(marketer_client):
    mailing = MailingFactory(state=State.SCHEDULED, scheduled_at=timezone.now())

    response = marketer_client.post(_change_url(mailing), _form(mailing, template=None))

    assert response.context["adminform"].form.errors == {
        "template": ["a mailing needs a template"]
    }


@pytest.mark.django_db
def test_a_scheduled_mailing_cannot_be_saved_without_a_time(marketer_client):
    mailing = MailingFactory(state=State.SCHEDULED, scheduled_at=timezone.now())

    response = marketer_client.post(_change_url(mailing), _form(mailing, scheduled_at=None))

    assert list(response.context["adminform"].form.errors) == ["scheduled_at"]


@pytest.mark.django_db
def test_only_draft_mailings_can_be_deleted(marketer_client):
    draft = MailingFactory()
    sent = MailingFactory(state=State.COMPLETED)

    assert marketer_client.get(
        reverse("admin:communications_mailing_delete", args=[draft.pk])).status_code == 200
    assert marketer_client.get(
        reverse("admin:communications_mailing_delete", args=[sent.pk])).status_code == 403


# --- counters -------------------------------------------------------------------------------

@pytest.mark.django_db
def test_mailing_page_shows_status_counters(marketer_client):
    mailing = MailingFactory(state=State.SENDING)
    _messages(mailing, sent=3, failed=1, queued=2, skipped__opted_out=2, skipped__no_address=1)

    response = marketer_client.get(_change_url(mailing))

    content = response.content.decode()
    for label, count in [("Total", 9), ("Sent", 3), ("Failed", 1), ("Queued", 2),
                         ("Skipped", 3), ("— No marketing consent on the channel", 2),
                         ("— No address for the channel", 1), ("Cancelled", 0)]:
        assert f"<tr><th>{label}</th><td>{count}</td></tr>" in content


@pytest.mark.django_db
def test_mailing_changelist_shows_state_channel_and_counters(marketer_client):
    mailing = MailingFactory(state=State.SENDING)
    _messages(mailing, sent=2, failed=1, skipped__opted_out=1)
    MailingFactory()

    response = marketer_client.get(CHANGELIST)

    row = next(m for m in response.context["cl"].result_list if m.pk == mailing.pk)
    assert (row.state, row.channel) == (State.SENDING, "email")
    assert (row.count_sent, row.count_failed, row.count_skipped, row.count_queued) == (
        2, 1, 1, 0)
    assert 'class="field-total">4</td>' in response.content.decode()
    assert 'class="field-sent">2</td>' in response.content.decode()


# --- changelist actions ---------------------------------------------------------------------

def _action(client, action: str, *mailings: Mailing):
    return client.post(CHANGELIST, {"action": action, "index": 0,
                                    "_selected_action": [m.pk for m in mailings]}, follow=True)


@pytest.mark.django_db
def test_schedule_action_schedules_the_selected_mailings(marketer_client):
    first, second = MailingFactory.create_batch(2)

    response = _action(marketer_client, "schedule_selected", first, second)

    assert set(Mailing.objects.values_list("state", flat=True)) == {State.SCHEDULED}
    assert (messages.SUCCESS, "Scheduled 2 mailing(s).") in _shown(response)


@pytest.mark.django_db
def test_schedule_action_reports_a_mailing_that_cannot_be_scheduled_as_an_error(
    marketer_client,
):
    ready = MailingFactory()
    broken = MailingFactory(name="No gateway", gateway=None)

    response = _action(marketer_client, "schedule_selected", ready, broken)

    assert (messages.ERROR, "“No gateway”: gateway: a mailing needs a gateway") in _shown(
        response)
    assert Mailing.objects.get(pk=ready.pk).state == State.SCHEDULED
    assert Mailing.objects.get(pk=broken.pk).state == State.DRAFT


@pytest.mark.django_db
def test_start_now_action_schedules_for_now(marketer_client):
    mailing = MailingFactory(scheduled_at=timezone.now() + dt.timedelta(days=7))

    _action(marketer_client, "start_selected", mailing)

    mailing.refresh_from_db()
    assert mailing.state == State.SCHEDULED
    assert mailing.scheduled_at <= timezone.now()


@pytest.mark.django_db
def test_cancel_action_cancels_and_reports_those_it_cannot(marketer_client):
    scheduled = MailingFactory(state=State.SCHEDULED, scheduled_at=timezone.now())
    done = MailingFactory(name="Done", state=State.COMPLETED)

    response = _action(marketer_client, "cancel_selected", scheduled, done)

    assert Mailing.objects.get(pk=scheduled.pk).state == State.CANCELLED
    assert (messages.ERROR, "“Done”: state: a completed mailing cannot be cancelled") in (
        _shown(response))


# --- templates and gateways -----------------------------------------------------------------

@pytest.mark.django_db
def test_template_with_unknown_placeholder_is_rejected_on_save(marketer_client):
    response = marketer_client.post(reverse("admin:communications_template_add"), {
        "name": "Welcome", "channel": "email", "language": "en", "subject": "Hi",
        "body": "Hello {{ member.shoe_size }}", "html_body": "",
    })

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["body"]
    assert errors["body"][0].startswith("unknown placeholder(s): member.shoe_size")
    assert not Template.objects.exists()


@pytest.mark.django_db
def test_template_with_known_placeholders_is_saved(marketer_client):
    response = marketer_client.post(reverse("admin:communications_template_add"), {
        "name": "Welcome", "channel": "email", "language": "en",
        "subject": "Hi {{ member.first_name }}", "body": "Your number: {{ member.external_id }}",
        "html_body": "",
    })

    assert response.status_code == 302
    assert Template.objects.get().name == "Welcome"


@pytest.mark.django_db
def test_template_of_a_sending_mailing_is_read_only(marketer_client):
    mailing = MailingFactory(state=State.SENDING)

    response = marketer_client.get(
        reverse("admin:communications_template_change", args=[mailing.template_id]))

    assert 'name="body"' not in response.content.decode()


@pytest.mark.django_db
def test_gateway_with_invalid_settings_is_rejected_on_save(marketer_client):
    response = marketer_client.post(reverse("admin:communications_gateway_add"), {
        "name": "Relay", "channel": "email", "provider": "smtp",
        "settings": '{"port": 70000}', "sender": "", "price_per_message": "0",
        "is_active": "on",
    })

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"settings": [
        "host: the SMTP server's host name is required", "port: must be a port number",
    ]}
    assert not Gateway.objects.exists()


@pytest.mark.django_db
def test_gateway_for_a_channel_its_provider_cannot_send_is_rejected_on_save(marketer_client):
    response = marketer_client.post(reverse("admin:communications_gateway_add"), {
        "name": "Relay", "channel": "sms", "provider": "smtp",
        "settings": '{"host": "127.0.0.1"}', "sender": "", "price_per_message": "0",
    })

    assert response.context["adminform"].form.errors == {"channel": ["smtp does not send sms"]}
