from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from communications.renderers import CompiledTemplate, member_context, template_validate
from tests.communications.factories import TemplateFactory

pytestmark = pytest.mark.django_db


def test_template_with_known_placeholders_is_valid():
    template_validate(channel="email", subject="Hi {{ member.first_name }}",
                      body="{{ member.full_name }} / {{ member.external_id }}")


def test_unknown_member_placeholder_is_rejected_on_the_field_that_has_it():
    with pytest.raises(ValidationError) as error:
        template_validate(channel="email", subject="Hi", body="Hello {{ member.shoe_size }}")

    assert "member.shoe_size" in error.value.message_dict["body"][0]


def test_unknown_top_level_name_is_rejected():
    with pytest.raises(ValidationError) as error:
        template_validate(channel="email", subject="Hi {{ coupon }}", body="x")

    assert "coupon" in error.value.message_dict["subject"][0]


def test_syntax_error_names_the_line():
    with pytest.raises(ValidationError) as error:
        template_validate(channel="email", subject="Hi", body="line one\n{{ member.first_name ")

    assert "line 2" in error.value.message_dict["body"][0]


def test_email_template_needs_a_subject():
    with pytest.raises(ValidationError) as error:
        template_validate(channel="email", subject="", body="x")

    assert "subject" in error.value.message_dict


def test_saving_a_template_through_model_validation_rejects_unknown_placeholders():
    template = TemplateFactory.build(body="{{ member.password }}")

    with pytest.raises(ValidationError) as error:
        template.full_clean()

    assert "body" in error.value.message_dict


def test_rendering_fills_the_member_placeholders():
    template = CompiledTemplate(subject="Hi {{ member.first_name }}",
                                body="Dear {{ member.full_name }} ({{ member.external_id }})")
    member = member_context({"member__first_name": "Ann", "member__last_name": "Lee",
                             "member__external_id": "M1"})

    rendered = template.render(member)

    assert (rendered.subject, rendered.body) == ("Hi Ann", "Dear Ann Lee (M1)")


def test_html_body_escapes_member_values():
    template = CompiledTemplate(subject="x", body="x", html_body="<p>{{ member.first_name }}</p>")
    member = member_context({"member__first_name": "<script>"})

    assert template.render(member).html_body == "<p>&lt;script&gt;</p>"


def test_sandbox_refuses_to_reach_python_internals():
    template = CompiledTemplate(subject="x", body="{{ member.first_name.__class__.__mro__ }}")

    with pytest.raises(Exception, match="unsafe|attribute"):
        template.render(member_context({"member__first_name": "Ann"}))


def test_sandbox_refuses_huge_repetition():
    template = CompiledTemplate(subject="x", body="{{ member.first_name * 100000000 }}")

    with pytest.raises(ValueError, match="too large"):
        template.render(member_context({"member__first_name": "Ann"}))


def test_a_social_template_with_markup_is_refused_naming_the_body():
    with pytest.raises(ValidationError) as error:
        template_validate(channel="social", subject="", body="**Double** points this week")

    assert "plain text only" in error.value.message_dict["body"][0]


def test_a_social_template_in_plain_prose_is_accepted():
    template_validate(channel="social", subject="",
                      body="Hi {{ member.first_name }}, a 5* weekend awaits: summer_sale_10")


def test_a_push_template_takes_an_https_image_a_deep_link_and_text_data():
    template_validate(channel="push", subject="Offer", body="Tap to see it",
                      image_url="https://cdn.example.com/a.jpg", link_url="myapp://offers/7",
                      push_data={"offer_id": "7"})


@pytest.mark.parametrize(("fields", "named"), [
    ({"image_url": "http://cdn.example.com/a.jpg"}, "image_url"),
    ({"link_url": "offers/7"}, "link_url"),
    ({"link_url": "javascript:alert(1)"}, "link_url"),
    ({"button_text": "Open"}, "button_text"),
    ({"push_data": {"offer_id": 7}}, "push_data"),
    ({"push_data": {"engage_message_id": "1"}}, "push_data"),
])
def test_a_push_templates_bad_rich_content_is_refused_by_field(fields, named):
    with pytest.raises(ValidationError) as error:
        template_validate(channel="push", subject="Offer", body="Tap", **fields)

    assert list(error.value.message_dict) == [named]


def test_a_viber_button_needs_a_web_link():
    with pytest.raises(ValidationError) as error:
        template_validate(channel="viber", subject="", body="Offer", button_text="See it",
                          link_url="myapp://offers/7")

    assert "http(s) URL" in error.value.message_dict["link_url"][0]


def test_an_sms_template_carries_no_image_or_link():
    with pytest.raises(ValidationError) as error:
        template_validate(channel="sms", subject="", body="Offer",
                          image_url="https://cdn.example.com/a.jpg")

    assert "only push and Viber" in error.value.message_dict["image_url"][0]
