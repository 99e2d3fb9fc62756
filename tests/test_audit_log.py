"""The audit log (django-auditlog, config/audit.py): who changed what and when, with the
before and after of each changed field; secrets never in it; the pipeline's own writes not
in it."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from auditlog.models import LogEntry
from django.http import HttpResponse
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign
from communications.models import Gateway, Mailing
from communications.services import mailing_schedule
from communications.tasks import prepare_mailing
from config.audit import MASK, AuditMiddleware
from loyalty.integration.keys import api_key_create, api_key_rotate
from loyalty.integration.models import ApiKey
from loyalty.webhooks.models import WebhookSubscription, secret_open
from loyalty.webhooks.services import subscription_create, subscription_secret_rotate
from tests.campaigns.factories import CampaignFactory, TargetGroupFactory
from tests.communications.factories import GatewayFactory, MailingFactory, TemplateFactory
from tests.conftest import wait_until
from tests.members.factories import consenting_member

pytestmark = pytest.mark.django_db

PASSWORD = "old-relay-password-1"
NEW_PASSWORD = "new-relay-password-2"


def _updates(obj) -> list[LogEntry]:
    return list(LogEntry.objects.get_for_object(obj)
                .filter(action=LogEntry.Action.UPDATE).order_by("timestamp", "id"))


def _entry_text(entry: LogEntry) -> str:
    """Everything an entry stores that a reader could see."""
    return " ".join([json.dumps(entry.changes), entry.changes_text, entry.object_repr,
                     json.dumps(entry.serialized_data), json.dumps(entry.additional_data)])


def _all_entries_text(obj) -> str:
    return " ".join(_entry_text(entry) for entry in LogEntry.objects.get_for_object(obj))


# -- changes in the admin ---------------------------------------------------------------------


def test_a_campaign_changed_in_the_admin_is_logged_with_its_actor_and_before_after(
        marketer_client, marketer):
    campaign = CampaignFactory(name="Spring", budget="1000.00")

    response = marketer_client.post(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
        {"name": "Spring sale", "starts_on": "", "ends_on": "", "budget": "1500.00",
         "currency": "EUR", "status": "planned", "attribution_touch": "delivered",
         "attribution_window_days": "7"},
        REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR="203.0.113.9")

    assert response.status_code == 302
    [entry] = _updates(campaign)
    assert entry.actor == marketer
    assert entry.changes == {"name": ["Spring", "Spring sale"], "budget": ["1000.00", "1500.00"]}
    # the address the proxy saw, not the one the client wrote into X-Forwarded-For
    assert entry.remote_addr == "198.51.100.7"


def test_a_template_changed_in_the_admin_is_logged_with_the_changed_text(marketer_client,
                                                                          marketer):
    template = TemplateFactory(subject="Hello", body="Old body")

    response = marketer_client.post(
        reverse("admin:communications_template_change", args=[template.pk]),
        {"name": template.name, "channel": "email", "language": "en", "subject": "Hello",
         "body": "New body {{ member.first_name }}", "mjml_body": "", "html_body": "",
         "image_url": "", "link_url": "", "button_text": "", "push_data": "{}"})

    assert response.status_code == 302
    [entry] = _updates(template)
    assert entry.actor == marketer
    assert entry.changes == {"body": ["Old body", "New body {{ member.first_name }}"]}


def test_a_gateway_changed_in_the_admin_logs_its_actor_and_never_its_password(
        marketer_client, marketer):
    gateway = GatewayFactory(sender="old@example.com",
                             settings={"host": "127.0.0.1", "port": 2525, "password": PASSWORD})
    old_token = Gateway.objects.get(pk=gateway.pk).secrets

    response = marketer_client.post(
        reverse("admin:communications_gateway_change", args=[gateway.pk]),
        {"name": gateway.name, "channel": "email", "provider": "smtp",
         "settings": '{"host": "127.0.0.1", "port": 2525}', "sender": "new@example.com",
         "price_per_message": "0.00000", "is_active": "on", "backup": "",
         "secret_password": NEW_PASSWORD})

    assert response.status_code == 302
    gateway.refresh_from_db()
    assert gateway.secret_values() == {"password": NEW_PASSWORD}  # the change did happen
    [entry] = _updates(gateway)
    assert entry.actor == marketer
    assert entry.changes == {"sender": ["old@example.com", "new@example.com"],
                             "secrets": [MASK, MASK]}
    logged = _all_entries_text(gateway)
    for secret in (PASSWORD, NEW_PASSWORD, old_token, gateway.secrets):
        assert secret not in logged
        assert secret[len(secret) // 2:] not in logged


def test_a_gateway_health_probe_adds_no_entry():
    gateway = GatewayFactory()
    Gateway.objects.filter(pk=gateway.pk).update(last_health_ok=False)
    gateway.refresh_from_db()

    gateway.last_health_ok, gateway.last_health_detail = True, "connected"
    gateway.last_health_at = timezone.now()
    gateway.save()

    assert _updates(gateway) == []


# -- secrets of the integrations ----------------------------------------------------------------


def test_webhook_secrets_and_connector_credentials_never_reach_the_log():
    write_key = "SegmentWriteKey0123456789"
    subscription, first_secret = subscription_create(
        connector="segment", credentials={"write_key": write_key}, description="Segment")
    sealed_first = subscription.secret_encrypted
    sealed_credentials = subscription.credentials_encrypted

    second_secret = subscription_secret_rotate(subscription=subscription)

    subscription = WebhookSubscription.objects.get(pk=subscription.pk)
    assert secret_open(subscription.secret_encrypted) == second_secret
    [rotation] = _updates(subscription)
    assert rotation.changes["secret_encrypted"] == [MASK, MASK]
    assert rotation.changes["previous_secret_encrypted"] == ["", MASK]
    logged = _all_entries_text(subscription)
    raw_secrets = [base64.b64decode(s.removeprefix("whsec_")).hex() for s in
                   (first_secret, second_secret)]
    for secret in (write_key, first_secret, second_secret, sealed_first, sealed_credentials,
                   subscription.secret_encrypted, *raw_secrets):
        assert secret not in logged
    assert "relayed_until" not in logged


def test_revoking_an_api_key_in_the_admin_is_logged_with_its_actor(marketer_client, marketer):
    api_key, _ = api_key_create(name="POS Riga", scopes=["orders:write"], by=marketer)

    marketer_client.post("/admin/loyalty/apikey/", {
        "action": "revoke", "_selected_action": [api_key.pk]})

    [revoked] = _updates(api_key)
    assert revoked.actor == marketer
    assert list(revoked.changes) == ["revoked_at"]
    assert revoked.changes["revoked_at"][0] == "None"


def test_an_api_key_is_logged_without_its_hash(marketer):
    api_key, key = api_key_create(name="POS Riga", scopes=["orders:write"], by=marketer)

    new_key, new_secret = api_key_rotate(api_key=api_key, by=marketer)

    [created] = LogEntry.objects.get_for_object(api_key).filter(action=LogEntry.Action.CREATE)
    assert created.changes["name"] == ["None", "POS Riga"]
    [rotated] = _updates(api_key)
    assert set(rotated.changes) == {"expires_at"}
    stored = ApiKey.objects.filter(pk__in=[api_key.pk, new_key.pk])
    logged = _all_entries_text(api_key) + _all_entries_text(new_key)
    for secret in (key, new_secret, *stored.values_list("key_hash", flat=True)):
        assert secret not in logged
    assert "key_hash" not in logged


# -- the API and the middleware ---------------------------------------------------------------


def test_a_mailing_created_through_the_api_records_its_actor(client, marketer):
    template, gateway = TemplateFactory(), GatewayFactory()
    group, campaign = TargetGroupFactory(), CampaignFactory()
    # basic auth: DRF knows the user only inside the view, after the middleware ran
    credentials = base64.b64encode(b"marketer:a-long-test-password").decode()

    response = client.post("/api/v1/mailings/", {
        "name": "Autumn news", "campaign": campaign.pk, "target_group": group.pk,
        "template": template.pk, "gateway": gateway.pk},
        content_type="application/json", HTTP_AUTHORIZATION=f"Basic {credentials}")

    assert response.status_code == 201, response.content
    mailing = Mailing.objects.get(pk=response.json()["id"])
    [entry] = LogEntry.objects.get_for_object(mailing)
    assert entry.action == LogEntry.Action.CREATE
    assert entry.actor == marketer
    assert entry.actor_email == marketer.email
    assert entry.changes["name"] == ["None", "Autumn news"]


def test_a_mailing_scheduled_by_a_marketer_is_logged_with_its_state(marketer_client, marketer):
    mailing = MailingFactory()

    response = marketer_client.post(f"/api/v1/mailings/{mailing.pk}/schedule/",
                                    {"scheduled_at": (timezone.now() + timedelta(days=1))
                                     .isoformat()}, content_type="application/json")

    assert response.status_code == 200, response.content
    [entry] = _updates(mailing)
    assert entry.actor == marketer
    assert entry.changes["state"] == ["draft", "scheduled"]


def _save_campaign_view(request):
    campaign = Campaign.objects.get(name="Watched")
    campaign.currency = "USD" if campaign.currency == "EUR" else "EUR"
    campaign.save()
    return HttpResponse()


def test_member_api_requests_run_without_the_audit_context(marketer):
    campaign = CampaignFactory(name="Watched")
    middleware = AuditMiddleware(_save_campaign_view)
    member_api = RequestFactory().get("/api/v1/me/home/", REMOTE_ADDR="198.51.100.7")
    staff_api = RequestFactory().get("/api/v1/mailings/", REMOTE_ADDR="198.51.100.7")
    member_api.user = staff_api.user = marketer

    middleware(member_api)
    middleware(staff_api)

    skipped, audited = _updates(campaign)
    assert (skipped.actor, skipped.remote_addr) == (None, None)
    assert (audited.actor, audited.remote_addr) == (marketer, "198.51.100.7")


# -- the pipeline ---------------------------------------------------------------------------


def test_a_celery_task_moving_a_mailing_adds_no_entry():
    consenting_member()
    mailing = mailing_schedule(mailing=MailingFactory())
    before = LogEntry.objects.count()

    prepare_mailing.apply(args=[mailing.pk])

    mailing.refresh_from_db()
    assert mailing.state == Mailing.State.SENDING
    assert LogEntry.objects.count() == before


@pytest.mark.pipeline
@pytest.mark.django_db(transaction=True)
def test_a_workers_send_adds_no_entries_for_the_mailings_state_or_counters(
        smtp_peer, celery_worker_process):
    # given
    for name in ("Ann", "Bob", "Cid"):
        consenting_member(first_name=name)
    mailing = MailingFactory(gateway=GatewayFactory(settings=smtp_peer.gateway_settings()))
    mailing_schedule(mailing=mailing, at=timezone.now() - timedelta(seconds=1))
    entries = list(LogEntry.objects.values_list("pk", flat=True))
    [scheduled] = _updates(mailing)
    assert scheduled.changes["state"] == ["draft", "scheduled"]

    # when
    def completed() -> bool:
        mailing.refresh_from_db()
        return mailing.state == Mailing.State.COMPLETED

    wait_until(completed, timeout=60, what="the mailing to complete")

    # then
    assert len(smtp_peer.received) == 3
    assert list(LogEntry.objects.values_list("pk", flat=True)) == entries
