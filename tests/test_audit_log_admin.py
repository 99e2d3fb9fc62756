"""The audit log's admin screen (config/audit_admin.py): read-only, filtered by model, action,
actor and date, each entry with the before and after of its changes."""

from __future__ import annotations

import pytest
from auditlog.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse

from campaigns.models import Campaign
from communications.models import Template
from tests.campaigns.factories import CampaignFactory
from tests.communications.factories import TemplateFactory

pytestmark = pytest.mark.django_db

LIST_URL = reverse("admin:auditlog_logentry_changelist")


@pytest.fixture
def analyst(django_user_model):
    return django_user_model.objects.create_user(
        username="analyst", password="a-long-test-password", is_staff=True, is_superuser=True)


def _campaign_rename(client, campaign: Campaign, name: str) -> None:
    response = client.post(reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
                           {"name": name, "starts_on": "", "ends_on": "", "budget": "",
                            "currency": campaign.currency, "status": campaign.status,
                            "attribution_touch": campaign.attribution_touch,
                            "attribution_window_days": campaign.attribution_window_days})
    assert response.status_code == 302


def _template_retitle(client, template: Template, subject: str) -> None:
    response = client.post(
        reverse("admin:communications_template_change", args=[template.pk]),
        {"name": template.name, "channel": template.channel, "language": template.language,
         "subject": subject, "body": template.body, "mjml_body": "", "html_body": "",
         "image_url": "", "link_url": "", "button_text": "", "push_data": "{}"})
    assert response.status_code == 302


def _listed(response) -> list[LogEntry]:
    return list(response.context["cl"].result_list)


def test_the_log_is_on_the_admin_home_page(marketer_client):
    response = marketer_client.get(reverse("admin:index"))

    assert response.status_code == 200
    assert LIST_URL in response.content.decode()


def test_the_log_filters_by_model(marketer_client):
    campaign, template = CampaignFactory(name="Spring"), TemplateFactory(subject="Hi")
    _campaign_rename(marketer_client, campaign, "Spring sale")
    _template_retitle(marketer_client, template, "Hello")

    response = marketer_client.get(
        LIST_URL, {"model": ContentType.objects.get_for_model(Template).pk,
                   "action__exact": LogEntry.Action.UPDATE})

    assert response.status_code == 200
    assert [(entry.object_pk, entry.changes) for entry in _listed(response)] == [
        (str(template.pk), {"subject": ["Hi", "Hello"]})]


def test_the_log_filters_by_actor(client, marketer, analyst):
    campaign = CampaignFactory(name="Spring")
    client.force_login(marketer)
    _campaign_rename(client, campaign, "Spring sale")
    client.force_login(analyst)
    _campaign_rename(client, campaign, "Spring sale 2026")

    by_marketer = client.get(LIST_URL, {"actor": marketer.pk})
    by_nobody = client.get(LIST_URL, {"actor": "none"})

    assert [entry.changes["name"] for entry in _listed(by_marketer)] == [
        ["Spring", "Spring sale"]]
    # the factory's create ran outside any request
    assert [entry.action for entry in _listed(by_nobody)] == [LogEntry.Action.CREATE]


def test_the_list_filters_by_audited_model_action_staff_user_and_date(marketer_client,
                                                                      analyst):
    response = marketer_client.get(LIST_URL)

    choices = {spec.title: [choice["display"] for choice in spec.choices(response.context["cl"])]
               for spec in response.context["cl"].filter_specs}
    assert {"Campaign", "Target group", "Mailing", "Trigger", "Template", "Gateway", "API key",
            "Webhook subscription"} <= set(choices["model"])
    assert "Consent" not in choices["model"]
    assert {"marketer", "analyst", "No user"} <= set(choices["actor"])
    assert {"action", "timestamp"} <= set(choices)


def test_an_entry_page_shows_the_fields_before_and_after(marketer_client):
    campaign = CampaignFactory(name="Spring")
    _campaign_rename(marketer_client, campaign, "Spring sale")
    entry = LogEntry.objects.get_for_object(campaign).get(action=LogEntry.Action.UPDATE)

    response = marketer_client.get(reverse("admin:auditlog_logentry_change", args=[entry.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    assert "<td>Spring</td>" in page and "<td>Spring sale</td>" in page
    assert "marketer" in page


def test_entries_cannot_be_changed_added_or_deleted(marketer_client):
    campaign = CampaignFactory(name="Spring")
    entry = LogEntry.objects.get_for_object(campaign).get()

    changed = marketer_client.post(reverse("admin:auditlog_logentry_change", args=[entry.pk]),
                                   {"object_repr": "forged"})
    added = marketer_client.get(reverse("admin:auditlog_logentry_add"))
    deleted = marketer_client.post(reverse("admin:auditlog_logentry_delete", args=[entry.pk]),
                                   {"post": "yes"})

    assert changed.status_code == 403
    assert added.status_code == 403
    assert deleted.status_code == 403
    entry.refresh_from_db()
    assert entry.object_repr == "Spring"
