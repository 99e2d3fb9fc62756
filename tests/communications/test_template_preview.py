"""The template preview in the admin: a template as a chosen member would see it, per channel."""
from __future__ import annotations

import html
import re

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from playwright.sync_api import Page, expect

from tests.communications.factories import GatewayFactory, MailingFactory, TemplateFactory
from tests.conftest import screenshot
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-test-password"


def _url(template, **params) -> str:
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return f"/admin/communications/template/{template.pk}/preview/" + (f"?{query}" if query else "")


def _page(client: Client, template, **params) -> str:
    response = client.get(_url(template, **params))
    assert response.status_code == 200
    return response.content.decode()


def _cell(page: str, css_class: str) -> str:
    found = re.search(rf'class="[^"]*\b{css_class}\b[^"]*"[^>]*>(.*?)</', page, re.S)
    assert found, f"no .{css_class} on the page"
    return html.unescape(found.group(1)).strip()


def _staff(*, codenames: list[str]) -> Client:
    user = User.objects.create_user(username="staff-preview", password="a-long-test-password",
                                    is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def test_an_email_preview_shows_the_subject_and_text_rendered_for_the_chosen_member(
        marketer_client):
    # given
    member = MemberFactory(external_id="C-77", first_name="Greta", last_name="Lind")
    template = TemplateFactory(channel="email", subject="Hello {{ member.first_name }}",
                               body="Dear {{ member.full_name }}, number {{ member.external_id }}.")

    # when
    page = _page(marketer_client, template, member="C-77")

    # then
    assert _cell(page, "tp-email-subject") == "Hello Greta"
    assert _cell(page, "tp-email-text") == "Dear Greta Lind, number C-77."
    assert f"/admin/members/member/{member.pk}/change/" in page


def test_the_email_html_is_escaped_inside_a_sandboxed_iframe_srcdoc(marketer_client):
    # given: a member whose name is markup, which the sandbox escapes in the HTML part
    MemberFactory(external_id="C-1", first_name="<b>Bo</b>")
    template = TemplateFactory(channel="email", html_body="<p>Hi {{ member.first_name }}</p>")

    # when
    page = _page(marketer_client, template, member="C-1")

    # then
    frame = re.search(r"<iframe ([^>]*)>", page).group(1)
    assert 'sandbox=""' in frame
    srcdoc = re.search(r'srcdoc="([^"]*)"', frame).group(1)
    assert html.unescape(srcdoc) == "<p>Hi &lt;b&gt;Bo&lt;/b&gt;</p>"
    assert "<p>Hi" not in page


def test_the_email_sender_is_the_chosen_gateways(marketer_client):
    # given
    MemberFactory()
    gateway = GatewayFactory(channel="email", sender="Club News <news@club.example.com>")
    template = TemplateFactory(channel="email")

    # when
    page = _page(marketer_client, template, gateway=gateway.pk)

    # then
    assert _cell(page, "tp-email-from") == "Club News <news@club.example.com>"


def test_the_email_preheader_written_in_mjml_is_shown(marketer_client):
    # given
    MemberFactory(external_id="C-2", first_name="Ida")
    template = TemplateFactory.build(channel="email", mjml_body=(
        "<mjml><mj-head><mj-preview>Double points for {{ member.first_name }}</mj-preview>"
        "</mj-head><mj-body><mj-section><mj-column><mj-text>Hi</mj-text></mj-column>"
        "</mj-section></mj-body></mjml>"))
    template.full_clean()
    template.save()

    # when
    page = _page(marketer_client, template, member="C-2")

    # then
    assert _cell(page, "tp-email-preheader") == "Double points for Ida"


def test_an_sms_preview_of_a_gsm_text_counts_gsm7_segments(marketer_client):
    # given: 170 GSM characters, past one message's 160
    MemberFactory(external_id="S-1", first_name="Ole")
    text = "Hi {{ member.first_name }}! " + "x" * 162
    template = TemplateFactory(channel="sms", subject="", body=text)

    # when
    page = _page(marketer_client, template, member="S-1")

    # then
    assert _cell(page, "tp-sms-text") == "Hi Ole! " + "x" * 162
    assert _cell(page, "tp-sms-characters") == "170"
    assert _cell(page, "tp-sms-encoding") == "GSM-7"
    assert _cell(page, "tp-sms-segments") == "2"


def test_an_sms_preview_of_a_cyrillic_text_counts_ucs2_segments(marketer_client):
    # given: 79 Cyrillic characters, past UCS-2's 70 in one message
    MemberFactory(external_id="S-2", first_name="Иван")
    template = TemplateFactory(
        channel="sms", subject="",
        body="Привет, {{ member.first_name }}! Двойные баллы до воскресенья, заходите в магазин. "
             "Ждём вас всех!")

    # when
    page = _page(marketer_client, template, member="S-2")

    # then
    text = _cell(page, "tp-sms-text")
    assert text.startswith("Привет, Иван!")
    assert _cell(page, "tp-sms-characters") == str(len(text))
    assert _cell(page, "tp-sms-encoding") == "UCS-2"
    assert _cell(page, "tp-sms-segments") == "2"


def test_a_short_cyrillic_sms_is_one_ucs2_segment(marketer_client):
    # given
    MemberFactory(external_id="S-3", first_name="Анна")
    template = TemplateFactory(channel="sms", subject="", body="Привет, {{ member.first_name }}!")

    # when
    page = _page(marketer_client, template, member="S-3")

    # then
    assert _cell(page, "tp-sms-encoding") == "UCS-2"
    assert _cell(page, "tp-sms-segments") == "1"


def test_a_push_preview_shows_the_rendered_title_and_body_with_image_and_deep_link(
        marketer_client):
    # given
    MemberFactory(external_id="P-1", first_name="Mia")
    template = TemplateFactory(
        channel="push", subject="{{ member.first_name }}, points await", body="Tap to see them.",
        image_url="https://cdn.example.com/offer.png", link_url="myapp://offers/7")

    # when
    page = _page(marketer_client, template, member="P-1")

    # then
    assert _cell(page, "tp-push-title") == "Mia, points await"
    assert _cell(page, "tp-push-body") == "Tap to see them."
    assert _cell(page, "tp-push-link") == "myapp://offers/7"
    assert '<img src="https://cdn.example.com/offer.png"' in page


def test_a_viber_preview_shows_the_text_image_and_button_with_its_link(marketer_client):
    # given
    MemberFactory(external_id="V-1", first_name="Noah")
    template = TemplateFactory(
        channel="viber", subject="", body="Hi {{ member.first_name }}, your coupon is ready.",
        image_url="https://cdn.example.com/coupon.png", link_url="https://shop.example.com/c",
        button_text="Get it")

    # when
    page = _page(marketer_client, template, member="V-1")

    # then
    assert _cell(page, "tp-chat-text") == "Hi Noah, your coupon is ready."
    assert _cell(page, "tp-bubble-button") == "Get it"
    assert _cell(page, "tp-chat-link") == "https://shop.example.com/c"
    assert '<img src="https://cdn.example.com/coupon.png"' in page


def test_a_member_can_be_chosen_by_email_address(marketer_client):
    # given
    MemberFactory(email="kim@example.com", first_name="Kim")
    template = TemplateFactory(channel="sms", subject="", body="Hi {{ member.first_name }}")

    # when
    page = _page(marketer_client, template, member="kim@example.com")

    # then
    assert _cell(page, "tp-sms-text") == "Hi Kim"


def test_without_a_chosen_member_the_first_member_is_shown(marketer_client):
    # given
    MemberFactory(first_name="First")
    MemberFactory(first_name="Second")
    template = TemplateFactory(channel="sms", subject="", body="Hi {{ member.first_name }}")

    # when
    page = _page(marketer_client, template)

    # then
    assert _cell(page, "tp-sms-text") == "Hi First"


def test_without_members_the_typed_sample_data_is_shown(marketer_client):
    # given
    template = TemplateFactory(channel="sms", subject="",
                               body="Hi {{ member.first_name }} {{ member.last_name }}")

    # when
    page = _page(marketer_client, template, first_name="Sam")

    # then: the blank last name takes its example
    assert _cell(page, "tp-sms-text") == "Hi Sam Example"


def test_a_template_error_for_the_member_is_a_readable_message(marketer_client):
    # given: the first letter of a name the member does not have
    MemberFactory(external_id="E-1", first_name="")
    template = TemplateFactory(channel="sms", subject="",
                               body="Dear {{ member.first_name[0] }}.")

    # when
    response = marketer_client.get(_url(template, member="E-1"))

    # then
    assert response.status_code == 200
    error = _cell(response.content.decode(), "template-preview-error")
    assert error.startswith("The template fails for member")
    assert "E-1" in error


def test_an_unknown_member_is_a_form_error(marketer_client):
    # given
    template = TemplateFactory()

    # when
    response = marketer_client.get(_url(template, member="NOBODY"))

    # then
    assert response.status_code == 200
    assert "no member with the external id, email address or id" in _cell(
        response.content.decode(), "errorlist")
    assert response.context["preview"] is None


def test_staff_without_the_template_view_permission_get_403():
    # given
    client = _staff(codenames=["view_member"])
    template = TemplateFactory()

    # when
    response = client.get(_url(template))

    # then
    assert response.status_code == 403


def test_choosing_a_member_needs_the_member_view_permission():
    # given
    MemberFactory(external_id="H-1", first_name="Hidden")
    client = _staff(codenames=["view_template"])
    template = TemplateFactory(channel="sms", subject="", body="Hi {{ member.first_name }}")

    # when
    response = client.get(_url(template, member="H-1"))

    # then
    page = response.content.decode()
    assert response.status_code == 200
    assert "needs the permission to view members" in _cell(page, "errorlist")
    assert "Hidden" not in page


def test_without_the_member_view_permission_the_preview_uses_sample_data():
    # given
    MemberFactory(first_name="Hidden")
    client = _staff(codenames=["view_template"])
    template = TemplateFactory(channel="sms", subject="", body="Hi {{ member.first_name }}")

    # when
    page = _page(client, template)

    # then
    assert _cell(page, "tp-sms-text") == "Hi Anna"


def test_a_mailings_preview_shows_its_audience_member_through_its_gateway(marketer_client):
    # given
    member = MemberFactory(first_name="Lena")
    MemberFactory(first_name="Other")
    template = TemplateFactory(channel="email", subject="For {{ member.first_name }}")
    gateway = GatewayFactory(channel="email", sender="Offers <offers@club.example.com>")
    mailing = MailingFactory(template=template, gateway=gateway, target_group=None,
                             member=member)

    # when
    page = _page(marketer_client, template, mailing=mailing.pk)

    # then
    assert _cell(page, "tp-email-subject") == "For Lena"
    assert _cell(page, "tp-email-from") == "Offers <offers@club.example.com>"


def test_the_template_change_form_links_to_the_preview(marketer_client):
    # given
    template = TemplateFactory()

    # when
    page = marketer_client.get(f"/admin/communications/template/{template.pk}/change/")

    # then
    assert f'href="{_url(template)}"' in page.content.decode()



def test_the_mailing_change_page_links_to_its_messages_preview(marketer_client):
    # given
    mailing = MailingFactory()

    # when
    page = marketer_client.get(f"/admin/communications/mailing/{mailing.pk}/change/")

    # then
    assert f'href="{_url(mailing.template, mailing=mailing.pk)}"' in page.content.decode()

@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_marketer_previews_an_email_as_a_member_on_desktop_and_mobile(
        browser_page: Page, live_server, django_user_model):
    # given
    django_user_model.objects.create_superuser("marketer", "marketer@example.com", PASSWORD)
    MemberFactory(external_id="B-1", first_name="Greta")
    template = TemplateFactory(
        channel="email", subject="Hello {{ member.first_name }}",
        html_body='<p id="greeting">Hi {{ member.first_name }}</p>'
                  '<script>document.title = "scripted"</script>')
    page = browser_page
    page.goto(live_server.url + reverse("admin:login"))
    page.get_by_label("Username").fill("marketer")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.goto(live_server.url + reverse("admin:communications_template_change",
                                        args=[template.pk]))

    # when
    page.get_by_role("link", name="Preview as a member").click()
    page.get_by_label("Member").fill("B-1")
    page.get_by_role("button", name="Preview").click()

    # then
    expect(page.locator(".tp-email-subject")).to_have_text("Hello Greta")
    frame = page.frame_locator("iframe[sandbox]")
    expect(frame.locator("#greeting")).to_have_text("Hi Greta")
    desktop = page.locator("iframe[sandbox]").bounding_box()["width"]
    page.get_by_text("Mobile (375 px)").click()
    page.wait_for_function(
        "() => document.querySelector('iframe[sandbox]').getBoundingClientRect().width < 380")
    assert desktop > 375
    # the sandbox ran no script of the email's
    assert page.locator("iframe[sandbox]").evaluate(
        "el => el.contentDocument === null || el.contentDocument.title !== 'scripted'")
    screenshot(page, "template_preview_email_mobile")
