"""The trigger mailing screen: a mailing and its trigger created on one page and activated;
a bad trigger is a form error at its field, with nothing saved."""

from __future__ import annotations

import pytest

from communications.models import Mailing, Trigger
from tests.communications.factories import GatewayFactory, TemplateFactory

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/communications/triggermailing/add/"


def _post(client, *, activate: bool = False, **trigger_fields):
    data = {
        "name": "Thanks for your order", "template": TemplateFactory().pk,
        "gateway": GatewayFactory().pk, "priority": "0",
        "trigger-TOTAL_FORMS": "1", "trigger-INITIAL_FORMS": "0",
        "trigger-MIN_NUM_FORMS": "1", "trigger-MAX_NUM_FORMS": "1",
        "trigger-0-conditions": "[]", "trigger-0-cancel_on": "[]", "trigger-0-send_hour": "10",
        **{f"trigger-0-{name}": value for name, value in trigger_fields.items()},
    }
    if activate:
        data["_activate"] = "Save and activate"
    return client.post(ADD_URL, data)


def test_a_trigger_mailing_is_created_with_its_trigger_and_activated(marketer_client):
    response = _post(marketer_client, activate=True, event_type="ORDER_PLACED",
                     conditions='[{"path": "total", "op": "gte", "value": 50}]',
                     delay="02:00:00", cancel_on='["ORDER_REFUNDED"]', cancel_match="order_id")

    assert response.status_code == 302
    mailing = Mailing.objects.get()
    assert (mailing.kind, mailing.state) == ("trigger", "sending")
    trigger = Trigger.objects.get(mailing=mailing)
    assert trigger.conditions == [{"path": "total", "op": "gte", "value": 50}]
    assert trigger.cancel_on == ["ORDER_REFUNDED"]
    assert trigger.read_until == mailing.started_at


def test_a_condition_with_an_unknown_op_is_a_form_error_naming_it(marketer_client):
    response = _post(marketer_client, event_type="ORDER_PLACED",
                     conditions='[{"path": "total", "op": "bigger", "value": 50}]')

    assert response.status_code == 200
    assert "conditions[0].op: one of eq, ne, gt" in response.content.decode()
    assert not Mailing.objects.exists()


def test_an_unknown_event_type_is_a_form_error(marketer_client):
    response = _post(marketer_client, event_type="ORDER_SHIPPED")

    assert response.status_code == 200
    assert "is neither in the event catalog nor an active custom event type" in (
        response.content.decode())
    assert not Mailing.objects.exists()


def test_a_cancelling_event_without_a_delay_is_a_form_error(marketer_client):
    response = _post(marketer_client, event_type="ORDER_PLACED",
                     cancel_on='["ORDER_REFUNDED"]')

    assert response.status_code == 200
    assert "a message is cancelled only while it waits out its delay" in (
        response.content.decode())
    assert not Mailing.objects.exists()


def test_a_date_rule_without_its_days_is_a_form_error(marketer_client):
    response = _post(marketer_client, date_rule="days_since_last_purchase")

    assert response.status_code == 200
    assert "needs a number of days" in response.content.decode()
    assert not Mailing.objects.exists()


def test_a_mailing_with_a_gateway_of_another_channel_is_not_saved(marketer_client):
    response = marketer_client.post(ADD_URL, {
        "name": "Birthday", "template": TemplateFactory().pk,
        "gateway": GatewayFactory(channel="sms", provider="smpp").pk, "priority": "0",
        "trigger-TOTAL_FORMS": "1", "trigger-INITIAL_FORMS": "0",
        "trigger-MIN_NUM_FORMS": "1", "trigger-MAX_NUM_FORMS": "1",
        "trigger-0-date_rule": "birthday", "trigger-0-conditions": "[]",
        "trigger-0-cancel_on": "[]", "trigger-0-send_hour": "9"})

    assert response.status_code == 200
    assert "the gateway sends sms, the template is for email" in response.content.decode()
    assert not Mailing.objects.exists()


def test_an_active_trigger_mailing_shows_its_counts_and_links_its_report(marketer_client):
    _post(marketer_client, activate=True, event_type="ORDER_PLACED")
    mailing = Mailing.objects.get()

    page = marketer_client.get(f"/admin/communications/triggermailing/{mailing.pk}/change/")
    report = marketer_client.get(f"/admin/communications/mailing/{mailing.pk}/report/")

    assert page.status_code == 200
    assert 'name="_pause"' in page.content.decode()
    assert f"/admin/communications/mailing/{mailing.pk}/report/" in page.content.decode()
    assert report.status_code == 200


def test_the_mailing_list_leaves_trigger_mailings_to_their_own_screen(marketer_client):
    _post(marketer_client, event_type="ORDER_PLACED")

    # (the trigger list first: it shows the "was added" message left by the save)
    triggers = marketer_client.get("/admin/communications/triggermailing/")
    mailings = marketer_client.get("/admin/communications/mailing/")

    assert "Thanks for your order" not in mailings.content.decode()
    assert "Thanks for your order" in triggers.content.decode()
