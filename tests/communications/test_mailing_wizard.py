"""The mailing wizard: four steps to a draft, a scheduled or an A/B tested mailing, with the
same checks as the mailing form, and nothing written until the last step."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from communications.models import Mailing
from tests.campaigns.factories import CampaignFactory, TargetGroupFactory
from tests.communications.factories import GatewayFactory, TemplateFactory
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db

URL = "/admin/communications/mailing/wizard/"
PREFIX = "mailing_wizard"


def _step(client, step: str, fields: dict):
    data = {f"{PREFIX}-current_step": step}
    data.update({f"{step}-{name}": value for name, value in fields.items()})
    return client.post(URL, data)


@pytest.fixture
def parts():
    return {"group": TargetGroupFactory(name="Everyone"), "campaign": CampaignFactory(),
            "template": TemplateFactory(channel="email", name="Offer A"),
            "gateway": GatewayFactory(channel="email", name="Mail")}


def _walk(client, parts, *, content=None, sending=None):
    client.get(URL)
    _step(client, "audience", {"name": "Winter offers", "campaign": parts["campaign"].pk,
                               "target_group": parts["group"].pk})
    _step(client, "content", {"template": parts["template"].pk, "holdout_percent": 10,
                              "test_percent": 20, "test_hours": 4,
                              "winner_metric": "open_rate", **(content or {})})
    _step(client, "sending", {"gateway": parts["gateway"].pk, "track_engagement": "on",
                              "when": "draft", **(sending or {})})
    return _step(client, "review", {})


def test_the_wizard_saves_a_draft_with_its_control_group(admin_as, parts):
    response = _walk(admin_as("marketer"), parts)

    mailing = Mailing.objects.get()
    assert response.status_code == 302
    assert response.url == f"/admin/communications/mailing/{mailing.pk}/change/"
    assert (mailing.name, mailing.state, mailing.holdout_percent) == ("Winter offers", "draft", 10)
    assert (mailing.target_group, mailing.template, mailing.gateway) == (
        parts["group"], parts["template"], parts["gateway"])
    assert mailing.created_by.username == "staff-marketer"


def test_the_wizard_creates_an_ab_test_with_its_variants_in_order(admin_as, parts):
    second = TemplateFactory(channel="email", name="Offer B")

    _walk(admin_as("marketer"), parts, content={"variant_b": second.pk,
                                                "winner_metric": "click_rate"})

    mailing = Mailing.objects.get()
    assert [(v.label, v.template.name) for v in mailing.variants.all()] == [
        ("A", "Offer A"), ("B", "Offer B")]
    assert mailing.winner_metric == "click_rate"


def test_the_wizard_schedules_the_mailing_when_asked(admin_as, parts):
    at = timezone.now() + timedelta(days=1)

    _walk(admin_as("marketer"), parts, sending={
        "when": "at", "scheduled_at_0": at.strftime("%Y-%m-%d"),
        "scheduled_at_1": at.strftime("%H:%M:%S")})

    mailing = Mailing.objects.get()
    assert mailing.state == "scheduled"
    assert abs(mailing.scheduled_at - at) < timedelta(seconds=1)


def test_a_step_with_an_error_stays_on_that_step(admin_as, parts):
    client = admin_as("marketer")
    client.get(URL)

    response = _step(client, "audience", {"name": "No audience"})

    assert response.status_code == 200
    assert "Choose a target group or a static list" in response.content.decode()
    assert response.context["wizard"]["steps"].current == "audience"


def test_a_variant_of_another_channel_is_refused_on_the_content_step(admin_as, parts):
    client = admin_as("marketer")
    client.get(URL)
    _step(client, "audience", {"name": "x", "target_group": parts["group"].pk})

    response = _step(client, "content", {
        "template": parts["template"].pk, "variant_b": TemplateFactory(channel="sms").pk,
        "holdout_percent": 0, "test_percent": 20, "test_hours": 4,
        "winner_metric": "open_rate"})

    assert "a sms template: the mailing sends email" in response.content.decode()
    assert not Mailing.objects.exists()


def test_the_review_shows_the_audience_and_estimated_cost(admin_as, parts):
    client = admin_as("marketer")
    client.get(URL)
    _step(client, "audience", {"name": "x", "target_group": parts["group"].pk})
    _step(client, "content", {"template": parts["template"].pk, "holdout_percent": 0,
                              "test_percent": 20, "test_hours": 4, "winner_metric": "open_rate"})

    response = _step(client, "sending", {"gateway": parts["gateway"].pk, "when": "now"})

    page = response.content.decode()
    assert response.context["wizard"]["steps"].current == "review"
    assert "Estimated cost" in page and "start now" in page
    assert not Mailing.objects.exists()


@override_settings(ENGAGE_APPROVAL_THRESHOLD=1)
def test_a_refusal_at_the_end_creates_nothing_and_shows_on_the_review(admin_as, parts):
    MemberFactory.create_batch(2)  # over the threshold: a second person must approve

    response = _walk(admin_as("marketer"), parts, sending={"when": "now"})

    assert response.status_code == 200
    assert "approv" in response.content.decode()
    assert not Mailing.objects.exists()


def test_analysts_cannot_open_the_wizard(admin_as):
    assert admin_as("analyst").get(URL).status_code == 403
