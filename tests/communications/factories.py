from __future__ import annotations

import factory
from django.utils import timezone

from communications.models import FrequencyCap, Gateway, Mailing, Message, Template
from tests.campaigns.factories import CampaignFactory, TargetGroupFactory
from tests.members.factories import MemberFactory


class GatewayFactory(factory.django.DjangoModelFactory):
    """An SMTP gateway; point `settings` at a loopback peer (see tests/peers/smtp.py)."""

    class Meta:
        model = Gateway

    name = factory.Sequence(lambda n: f"SMTP {n}")
    channel = "email"
    provider = "smtp"
    settings = factory.LazyFunction(lambda: {"host": "127.0.0.1", "port": 25, "timeout": 5})
    sender = "Engage Club <club@engage.example.com>"


class TemplateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Template

    name = factory.Sequence(lambda n: f"Template {n}")
    channel = "email"
    subject = "Hello {{ member.first_name }}"
    body = "Dear {{ member.full_name }}, your member number is {{ member.external_id }}."


class MailingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Mailing

    name = factory.Sequence(lambda n: f"Mailing {n}")
    campaign = factory.SubFactory(CampaignFactory)
    target_group = factory.SubFactory(TargetGroupFactory)
    template = factory.SubFactory(TemplateFactory)
    gateway = factory.SubFactory(GatewayFactory)


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    mailing = factory.SubFactory(MailingFactory)
    member = factory.SubFactory(MemberFactory)
    channel = "email"
    status = Message.Status.QUEUED
    created_at = factory.LazyFunction(timezone.now)
    updated_at = factory.LazyAttribute(lambda m: m.created_at)


class FrequencyCapFactory(factory.django.DjangoModelFactory):
    """At most 3 marketing messages per member per 7 days, on every channel together."""

    class Meta:
        model = FrequencyCap

    channel = ""
    max_messages = 3
    period_length = 7
    period_unit = FrequencyCap.Unit.DAYS


def sms_mailing(**fields) -> Mailing:
    """A mailing on the SMS channel (an SMPP gateway, left unreachable: claims never send)."""
    return MailingFactory(
        template=TemplateFactory(channel="sms", subject="", body="Hi {{ member.first_name }}"),
        gateway=GatewayFactory(channel="sms", provider="smpp",
                               settings={"host": "127.0.0.1", "port": 2775,
                                         "system_id": "engage"}),
        **fields)


# The cascade inline's management form, as the mailing admin page posts it with no steps.
ADMIN_NO_CASCADE_STEPS = {"cascade_steps-TOTAL_FORMS": "0", "cascade_steps-INITIAL_FORMS": "0",
                          # ... and no A/B variants (their inline posts its management form too).
                          "variants-TOTAL_FORMS": "0", "variants-INITIAL_FORMS": "0"}
