from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.core.signing import Signer
from django.test import Client
from django.urls import reverse

from communications.models import Message
from communications.services import mailing_prepare, mailing_schedule
from members.models import Consent, ConsentEvent, Member
from members.unsubscribe import (
    UnsubscribeToken,
    UnsubscribeTokenInvalid,
    unsubscribe_token,
    unsubscribe_token_read,
    unsubscribe_url,
)
from tests.communications.factories import MailingFactory
from tests.members.factories import (
    ConsentFactory,
    MemberFactory,
    SubscriptionCategoryFactory,
    consenting_member,
)

pytestmark = pytest.mark.django_db

EVIDENCE = {"REMOTE_ADDR": "203.0.113.7", "HTTP_USER_AGENT": "Gmail one-click/1.0"}


def _page(member: Member, channel: str = "email", mailing_id: int | None = None) -> str:
    token = unsubscribe_token(member_id=member.pk, channel=channel, mailing_id=mailing_id)
    return reverse("members-public:unsubscribe", args=[token])


def _preferences(member: Member) -> str:
    return _page(member) + "preferences"


def _state(member: Member, channel: str, category=None) -> str | None:
    return (Consent.objects.filter(member=member, channel=channel, purpose="marketing",
                                   category=category)
            .values_list("state", flat=True).first())


class _Checkboxes(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.boxes: dict[tuple[str, str], bool] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "input" and found.get("type") == "checkbox":
            self.boxes[(found["name"], found["value"])] = "checked" in found


def _checkboxes(html: str) -> dict[tuple[str, str], bool]:
    """{(name, value): checked} of the page's checkboxes."""
    parser = _Checkboxes()
    parser.feed(html)
    return parser.boxes


def _skip_reason(member: Member, **mailing_fields) -> str:
    mailing = mailing_schedule(mailing=MailingFactory(**mailing_fields))
    mailing_prepare(mailing_id=mailing.pk)
    return Message.objects.get(mailing=mailing, member=member).skip_reason


# --- the token ------------------------------------------------------------------------------

def test_token_round_trips_member_channel_and_mailing():
    token = unsubscribe_token(member_id=42, channel="email", mailing_id=7)

    assert unsubscribe_token_read(token) == UnsubscribeToken(member_id=42, channel="email",
                                                             mailing_id=7)


def test_token_without_a_mailing_round_trips():
    token = unsubscribe_token(member_id=42, channel="sms")

    assert unsubscribe_token_read(token) == UnsubscribeToken(member_id=42, channel="sms")


def test_token_with_another_member_id_is_rejected():
    signature = unsubscribe_token(member_id=42, channel="email").rsplit(".", 1)[1]

    with pytest.raises(UnsubscribeTokenInvalid):
        unsubscribe_token_read(f"43.email.{signature}")


def test_value_signed_for_another_purpose_is_not_a_token():
    with pytest.raises(UnsubscribeTokenInvalid):
        unsubscribe_token_read(Signer(sep=".").sign("42.email"))


def test_unsubscribe_url_is_built_on_the_public_url(settings):
    settings.ENGAGE_PUBLIC_URL = "https://club.example.com"

    url = unsubscribe_url(member_id=42, channel="email", mailing_id=7)

    token = unsubscribe_token(member_id=42, channel="email", mailing_id=7)
    assert url == f"https://club.example.com/u/{token}/"


# --- the page -------------------------------------------------------------------------------

def test_preference_page_shows_the_members_name_and_current_channel_states(client):
    member = consenting_member(first_name="Ingrid", channel="email")
    ConsentFactory(member=member, channel="sms", state="withdrawn")

    response = client.get(_page(member))

    assert response.status_code == 200
    html = response.content.decode()
    assert "Hello Ingrid" in html
    boxes = _checkboxes(html)
    assert (boxes[("channel", "email")], boxes[("channel", "sms")]) == (True, False)
    assert "Unsubscribe from all" in html


def test_preference_page_lists_active_subscription_categories_with_their_state(client):
    member = consenting_member()
    offers = SubscriptionCategoryFactory(code="offers", name="Special offers")
    SubscriptionCategoryFactory(code="news", name="Club news")
    SubscriptionCategoryFactory(code="old", name="Retired topic", is_active=False)
    ConsentFactory(member=member, channel="email", category=offers, state="withdrawn")

    html = client.get(_page(member)).content.decode()

    boxes = _checkboxes(html)
    assert (boxes[("category", "offers")], boxes[("category", "news")]) == (False, True)
    assert "Retired topic" not in html


def test_opening_the_page_changes_nothing(client):
    member = consenting_member()

    client.get(_page(member))

    assert not ConsentEvent.objects.filter(member=member).exists()
    assert _state(member, "email") == "granted"


def test_tampered_link_shows_a_not_found_page(client):
    member = consenting_member()
    token = unsubscribe_token(member_id=member.pk, channel="email")
    forged = f"{member.pk + 1}.email.{token.rsplit('.', 1)[1]}"

    response = client.get(reverse("members-public:unsubscribe", args=[forged]))

    assert response.status_code == 404
    assert "This link does not work" in response.content.decode()


# --- RFC 8058 one-click ---------------------------------------------------------------------

def test_one_click_post_withdraws_email_consent_with_its_evidence():
    member = consenting_member()
    # Mail providers send no cookie and no CSRF token.
    client = Client(enforce_csrf_checks=True)

    response = client.post(_page(member, mailing_id=99), {"List-Unsubscribe": "One-Click"},
                           **EVIDENCE)

    assert response.status_code == 200
    assert _state(member, "email") == "withdrawn"
    event = ConsentEvent.objects.get(member=member)
    assert (event.action, event.source, event.ip_address, event.user_agent) == (
        "withdraw", "unsubscribe_link", "203.0.113.7", "Gmail one-click/1.0")
    assert "RFC 8058" in event.consent_text and "mailing 99" in event.consent_text


def test_one_click_unsubscribe_excludes_the_member_from_the_next_email_mailing(client):
    member = consenting_member()

    client.post(_page(member), {"List-Unsubscribe": "One-Click"}, **EVIDENCE)

    assert _skip_reason(member) == "opted_out"


def test_one_click_withdraws_only_the_links_channel(client):
    member = consenting_member(channel="email")
    ConsentFactory(member=member, channel="sms")

    client.post(_page(member, channel="email"), {"List-Unsubscribe": "One-Click"})

    assert (_state(member, "email"), _state(member, "sms")) == ("withdrawn", "granted")


def test_repeated_one_click_posts_record_one_withdrawal(client):
    member = consenting_member()

    for _ in range(3):
        client.post(_page(member), {"List-Unsubscribe": "One-Click"})

    assert ConsentEvent.objects.filter(member=member).count() == 1


def test_post_without_the_one_click_body_changes_nothing(client):
    member = consenting_member()

    response = client.post(_page(member), {"something": "else"})

    assert response.status_code == 400
    assert _state(member, "email") == "granted"


def test_one_click_with_a_tampered_link_is_not_found(client):
    member = consenting_member()
    signature = unsubscribe_token(member_id=member.pk, channel="email").rsplit(".", 1)[1]

    response = client.post(reverse("members-public:unsubscribe",
                                   args=[f"{member.pk}.sms.{signature}"]),
                           {"List-Unsubscribe": "One-Click"})

    assert response.status_code == 404
    assert _state(member, "email") == "granted"


def test_erased_member_can_still_unsubscribe(client):
    member = consenting_member(status=Member.Status.ERASED, first_name="", email="")

    page = client.get(_page(member))
    client.post(_page(member), {"List-Unsubscribe": "One-Click"})

    assert page.status_code == 200
    assert _state(member, "email") == "withdrawn"


# --- the preference form --------------------------------------------------------------------

def test_preference_form_records_only_what_changed_as_an_account_page_change(client):
    member = consenting_member(channel="email")
    ConsentFactory(member=member, channel="sms")

    # email stays checked, sms is unchecked
    response = client.post(_preferences(member), {"channel": ["email"]}, **EVIDENCE)

    assert response.status_code == 302
    event = ConsentEvent.objects.get(member=member)
    assert (event.channel, event.action, event.source, event.ip_address) == (
        "sms", "withdraw", "account_page", "203.0.113.7")
    assert (_state(member, "email"), _state(member, "sms")) == ("granted", "withdrawn")


def test_preference_form_grants_a_channel_the_member_checks(client):
    member = MemberFactory(phone="+4915112345678")

    client.post(_preferences(member), {"channel": ["sms"]})

    assert _state(member, "sms") == "granted"
    assert _state(member, "email") is None


def test_preference_form_is_csrf_protected():
    member = consenting_member()
    client = Client(enforce_csrf_checks=True)

    response = client.post(_preferences(member), {"channel": []})

    assert response.status_code == 403
    assert _state(member, "email") == "granted"


def test_saved_page_says_what_the_member_still_receives(client):
    member = consenting_member(channel="email")

    response = client.post(_preferences(member), {"channel": ["email"]}, follow=True)

    assert "We may send you marketing by: Email." in response.content.decode()


def test_granting_email_on_the_page_asks_to_confirm_when_double_opt_in_is_on(client, settings):
    settings.ENGAGE_EMAIL_DOUBLE_OPT_IN = True
    member = MemberFactory(email="ana@example.com", email_verified_at=None)

    response = client.post(_preferences(member), {"channel": ["email"]}, follow=True)

    assert _state(member, "email") == "granted"
    assert "Please confirm your email address" in response.content.decode()


def test_unknown_channel_in_the_form_is_named_and_nothing_is_saved(client):
    member = consenting_member(channel="email")
    ConsentFactory(member=member, channel="sms")

    response = client.post(_preferences(member), {"channel": ["email", "pigeon"]})

    assert response.status_code == 400
    assert "unknown channel" in response.content.decode()
    assert not ConsentEvent.objects.filter(member=member).exists()


def test_category_withdrawal_skips_the_member_only_for_that_categorys_mailings(client):
    member = consenting_member()
    offers = SubscriptionCategoryFactory(code="offers")
    news = SubscriptionCategoryFactory(code="news")

    client.post(_preferences(member), {"channel": ["email"], "category": ["news"]})

    assert _state(member, "email", category=offers) == "withdrawn"
    assert ConsentEvent.objects.filter(member=member, category=offers,
                                       source="account_page").exists()
    assert _skip_reason(member, category=offers) == "not_subscribed_to_category"
    assert _skip_reason(member, category=news) == ""
    assert _skip_reason(member) == ""


def test_checking_a_category_again_grants_it_back(client):
    member = consenting_member()
    offers = SubscriptionCategoryFactory(code="offers")
    ConsentFactory(member=member, channel="email", category=offers, state="withdrawn")

    client.post(_preferences(member), {"channel": ["email"], "category": ["offers"]})

    assert _state(member, "email", category=offers) == "granted"
    assert _skip_reason(member, category=offers) == ""


def test_unsubscribe_from_all_withdraws_every_granted_channel(client):
    member = consenting_member(channel="email")
    ConsentFactory(member=member, channel="sms")

    client.post(_preferences(member), {"channel": ["email", "sms"], "unsubscribe_all": "1"},
                **EVIDENCE)

    events = ConsentEvent.objects.filter(member=member)
    assert sorted(events.values_list("channel", "action", "source")) == [
        ("email", "withdraw", "unsubscribe_link"), ("sms", "withdraw", "unsubscribe_link")]
    assert _skip_reason(member) == "opted_out"


def test_erased_member_cannot_grant_through_the_page(client):
    member = MemberFactory(status=Member.Status.ERASED, email="", phone="")
    ConsentFactory(member=member, channel="email", state="withdrawn")

    response = client.post(_preferences(member), {"channel": ["email"]})

    assert response.status_code == 400
    assert _state(member, "email") == "withdrawn"
