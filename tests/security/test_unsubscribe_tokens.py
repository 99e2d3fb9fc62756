"""Forged and tampered unsubscribe links are refused at every door (the page, RFC 8058
one-click, the preference form, the saved page): a 404 page that says the link does not work,
and no consent changes. Tokens carry no expiry on purpose (members.unsubscribe: RFC 8058 asks
that an old message's link keep working), so there is no expired case to refuse."""

from __future__ import annotations

import pytest
from django.core import signing
from django.core.signing import Signer
from django.test import Client
from django.urls import reverse

from communications.tracking import tracked_html
from members.models import ConsentEvent
from members.unsubscribe import unsubscribe_token
from tests.members.factories import SubscriptionCategoryFactory, consenting_member

pytestmark = pytest.mark.django_db

ONE_CLICK = {"List-Unsubscribe": "One-Click"}
SALT = "engage.members.unsubscribe"


def _link(token: str, tail: str = "") -> str:
    return reverse("members-public:unsubscribe", args=[token]) + tail


def _consent_events() -> int:
    return ConsentEvent.objects.count()


def _forgeries(member_a, member_b) -> dict[str, str]:
    """Links for member A (the victim) that were not issued for A as they stand."""
    a_email = unsubscribe_token(member_id=member_a.pk, channel="email", mailing_id=7)
    b_email = unsubscribe_token(member_id=member_b.pk, channel="email", mailing_id=7)
    payload, signature = a_email.rsplit(".", 1)
    b_signature = b_email.rsplit(".", 1)[1]
    other_key = Signer(key="not-the-secret-key", salt=SALT, sep=".")
    tracking_pixel = tracked_html("<p>x</p>", message_id=member_a.pk)
    return {
        "another member's signature on A's payload": f"{payload}.{b_signature}",
        "B's token with A's id put in": b_email.replace(f"{member_b.pk}.", f"{member_a.pk}.", 1),
        "channel changed": a_email.replace(".email.", ".sms.", 1),
        "mailing id changed": a_email.replace(".7.", ".8.", 1),
        "mailing id removed": a_email.replace(".7.", ".", 1),
        "mailing id added": unsubscribe_token(member_id=member_a.pk, channel="email")
        .replace(".email.", ".email.7.", 1),
        "signature truncated": a_email[:-1],
        "signature cut off": payload,
        "signature empty": payload + ".",
        "signature's case flipped": f"{payload}.{signature.swapcase()}",
        "signed with another key": other_key.sign(f"{member_a.pk}.email"),
        "signed without the unsubscribe salt": Signer(sep=".").sign(f"{member_a.pk}.email"),
        "another signed value of the project": tracking_pixel.split("/t/o/")[1].split("/")[0],
        "a JSON dumps under the same salt": signing.dumps({"member": member_a.pk}, salt=SALT),
        "payload alone, guessed": f"{member_a.pk}.email",
        "negative member id": Signer(key="x", salt=SALT, sep=".").sign("-1.email"),
        "huge token": "9" * 5000 + ".email." + signature,
        "non-ASCII digits": a_email.replace(str(member_a.pk), "\u0661" * len(str(member_a.pk)),
                                            1),
    }


@pytest.fixture
def members():
    return consenting_member(), consenting_member()


def _assert_refused(response) -> None:
    assert response.status_code == 404
    assert "This link does not work" in response.content.decode()



@pytest.mark.parametrize("case", [
    "another member's signature on A's payload", "B's token with A's id put in",
    "channel changed", "mailing id changed", "mailing id removed", "mailing id added",
    "signature truncated", "signature cut off", "signature empty", "signature's case flipped",
    "signed with another key", "signed without the unsubscribe salt",
    "another signed value of the project", "a JSON dumps under the same salt",
    "payload alone, guessed", "negative member id", "huge token", "non-ASCII digits",
])
def test_a_forged_link_is_refused_by_one_click_and_changes_no_consent(case, members):
    token = _forgeries(*members)[case]
    before = _consent_events()

    response = Client().post(_link(token), ONE_CLICK)

    _assert_refused(response)
    assert _consent_events() == before


@pytest.mark.parametrize("case", ["channel changed", "signature truncated",
                                  "another member's signature on A's payload"])
def test_a_forged_link_shows_no_preference_page(case, members):
    response = Client().get(_link(_forgeries(*members)[case]))

    _assert_refused(response)


@pytest.mark.parametrize("case", ["unsubscribe_all", "channels"])
def test_a_forged_link_cannot_save_preferences(case, members):
    token = _forgeries(*members)["B's token with A's id put in"]
    before = _consent_events()
    form = {"unsubscribe_all": "1"} if case == "unsubscribe_all" else {"channel": []}

    response = Client().post(_link(token, "preferences"), form)

    _assert_refused(response)
    assert _consent_events() == before


def test_a_forged_link_shows_no_saved_page(members):
    response = Client().get(_link(_forgeries(*members)["mailing id changed"], "saved"))

    _assert_refused(response)


def test_a_valid_link_of_member_b_changes_only_member_b(members):
    member_a, member_b = members
    token = unsubscribe_token(member_id=member_b.pk, channel="email", mailing_id=7)

    response = Client().post(_link(token), ONE_CLICK)

    assert response.status_code == 200
    assert list(ConsentEvent.objects.filter(action="withdraw")
                .values_list("member_id", flat=True)) == [member_b.pk]


def test_a_valid_one_click_post_withdraws_the_links_channel(members):
    member_a, _ = members
    token = unsubscribe_token(member_id=member_a.pk, channel="email")

    response = Client().post(_link(token), ONE_CLICK)

    assert response.status_code == 200
    assert ConsentEvent.objects.filter(member=member_a, channel="email",
                                       action="withdraw").count() == 1


@pytest.mark.parametrize("body", [{}, {"List-Unsubscribe": "one-click"},
                                  {"List-Unsubscribe": "One-Click\r\nX: y"},
                                  {"Unsubscribe": "One-Click"}])
def test_a_one_click_post_with_the_wrong_body_is_a_400_and_changes_nothing(body, members):
    member_a, _ = members
    before = _consent_events()

    response = Client().post(_link(unsubscribe_token(member_id=member_a.pk, channel="email")),
                             body)

    assert response.status_code == 400
    assert _consent_events() == before


def test_a_link_of_a_deleted_member_is_refused(members):
    member_a, _ = members
    token = unsubscribe_token(member_id=member_a.pk, channel="email")
    member_a.delete()

    _assert_refused(Client().post(_link(token), ONE_CLICK))


def test_the_preference_form_without_its_csrf_token_is_refused(members):
    member_a, _ = members
    before = _consent_events()
    client = Client(enforce_csrf_checks=True)

    response = client.post(_link(unsubscribe_token(member_id=member_a.pk, channel="email"),
                                 "preferences"), {"unsubscribe_all": "1"})

    assert response.status_code == 403
    assert _consent_events() == before


@pytest.mark.parametrize("field, value", [("channel", "carrier-pigeon"),
                                          ("category", "no-such-category")])
def test_a_preference_form_naming_what_the_page_did_not_show_is_a_400(field, value, members):
    member_a, _ = members
    SubscriptionCategoryFactory(code="offers")
    before = _consent_events()

    response = Client().post(
        _link(unsubscribe_token(member_id=member_a.pk, channel="email"), "preferences"),
        {"channel": ["email"], "category": ["offers"], field: value})

    assert response.status_code == 400
    assert _consent_events() == before
