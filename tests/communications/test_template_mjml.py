"""Email templates written in MJML, compiled at save with their CSS inlined."""
from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from communications.models import Template
from tests.communications.factories import TemplateFactory

pytestmark = pytest.mark.django_db

MJML = """<mjml>
  <mj-head><mj-style>.offer { color: #c0392b; }</mj-style></mj-head>
  <mj-body>
    <mj-section><mj-column>
      <mj-text css-class="offer">Hello {{ member.first_name }}, double points this week.</mj-text>
      <mj-button href="https://shop.example.com/">See the offers</mj-button>
    </mj-column></mj-section>
  </mj-body>
</mjml>"""


def test_mjml_is_compiled_into_the_html_body_when_the_template_is_cleaned():
    template = TemplateFactory.build(mjml_body=MJML, html_body="")

    template.full_clean()

    assert template.html_body.lower().startswith("<!doctype html>")
    assert "Hello {{ member.first_name }}, double points this week." in template.html_body
    assert 'href="https://shop.example.com/"' in template.html_body


def test_the_mjml_styles_are_inlined_into_the_tags():
    template = TemplateFactory.build(mjml_body=MJML)

    template.full_clean()

    assert "color: #c0392b" in template.html_body.split("<body", 1)[1]


def test_broken_mjml_is_refused_naming_the_field():
    template = TemplateFactory.build(mjml_body="<mjml><mj-body><mj-text>open")

    with pytest.raises(ValidationError) as error:
        template.full_clean()

    assert "not valid MJML" in error.value.message_dict["mjml_body"][0]


def test_an_unknown_placeholder_in_the_mjml_is_refused_like_in_html():
    template = TemplateFactory.build(mjml_body=MJML.replace("first_name", "shoe_size"))

    with pytest.raises(ValidationError) as error:
        template.full_clean()

    assert "shoe_size" in str(error.value)


def test_mjml_is_refused_on_an_sms_template():
    template = TemplateFactory.build(channel="sms", subject="", mjml_body=MJML)

    with pytest.raises(ValidationError) as error:
        template.full_clean()

    assert "email templates" in error.value.message_dict["mjml_body"][0]


def test_the_admin_saves_a_template_written_in_mjml(marketer_client):
    response = marketer_client.post("/admin/communications/template/add/", {
        "name": "Double points", "channel": "email", "language": "en",
        "subject": "Hi {{ member.first_name }}", "body": "Double points this week.",
        "mjml_body": MJML, "html_body": ""})

    assert response.status_code == 302
    assert Template.objects.get(name="Double points").html_body.lower().startswith("<!doctype")
