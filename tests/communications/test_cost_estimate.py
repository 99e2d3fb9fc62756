from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from communications.selectors.costs import SEGMENT_SAMPLE_SIZE, mailing_cost_estimate
from communications.services.cascade import mailing_cascade_set
from tests.campaigns.factories import StaticListMemberFactory
from tests.communications.factories import GatewayFactory, MailingFactory, TemplateFactory
from tests.members.factories import (
    ConsentFactory,
    MemberFactory,
    SuppressionFactory,
    consenting_member,
)

pytestmark = pytest.mark.django_db

# 150 GSM-7 characters: a first name of up to 10 keeps the SMS in one segment.
FILLER = "x" * 150


def _sms_mailing(*, body: str = "{{ member.first_name }}" + FILLER,
                 price: str = "0.05000", **fields):
    return MailingFactory(
        template=TemplateFactory(channel="sms", subject="", body=body),
        gateway=GatewayFactory(channel="sms", provider="smpp", price_per_message=Decimal(price),
                               settings={"host": "127.0.0.1", "port": 2775,
                                         "system_id": "engage"}),
        **fields)


def _sms_member(first_name: str):
    return consenting_member(channel="sms", first_name=first_name)


def test_email_cost_is_the_reachable_members_times_the_price_per_message():
    # given: three members who may be emailed, one without consent, one suppressed
    for _ in range(3):
        consenting_member()
    MemberFactory()
    suppressed = consenting_member()
    SuppressionFactory(channel="email", address=suppressed.email)
    mailing = MailingFactory(gateway=GatewayFactory(price_per_message=Decimal("0.00100")))

    # when
    estimate = mailing_cost_estimate(mailing=mailing)

    # then
    [email] = estimate["channels"]
    assert estimate["audience"]["size"] == 5
    assert (email["channel"], email["unit"], email["reachable"]) == ("email", "message", 3)
    assert email["billable"] == 3
    assert email["cost"] == Decimal("0.003")
    assert estimate["total_cost"] == Decimal("0.003")
    assert email["segments"] is None


def test_sms_segments_are_counted_on_the_text_rendered_for_each_member():
    # given: "Bo" + 150 fits one segment (152 <= 160); a 20-letter name needs two (170 > 160)
    _sms_member("Bo")
    _sms_member("Bartholomew-Maximian")
    mailing = _sms_mailing()

    estimate = mailing_cost_estimate(mailing=mailing)

    [sms] = estimate["channels"]
    assert sms["unit"] == "segment"
    assert {k: sms["segments"][k] for k in ("sample_size", "min", "avg", "max")} == {
        "sample_size": 2, "min": 1, "avg": 1.5, "max": 2}
    assert sms["billable"] == 3  # 2 reachable x 1.5 segments
    assert sms["cost"] == Decimal("0.15")


def test_a_name_outside_gsm_7_makes_that_members_sms_ucs2_and_longer():
    # given: 80 characters; in GSM-7 one segment, in UCS-2 two (over 70)
    body = "{{ member.first_name }}" + "x" * 75
    _sms_member("Marie")
    _sms_member("Łucja")
    mailing = _sms_mailing(body=body)

    [sms] = mailing_cost_estimate(mailing=mailing)["channels"]

    assert sms["segments"]["encodings"] == {"gsm7": 1, "ucs2": 1}
    assert (sms["segments"]["min"], sms["segments"]["max"]) == (1, 2)


def test_sms_segments_are_sampled_from_reachable_members_only():
    _sms_member("Bo")
    MemberFactory(first_name="Bartholomew-Maximian")  # no SMS consent: never sent, not sampled
    mailing = _sms_mailing()

    [sms] = mailing_cost_estimate(mailing=mailing)["channels"]

    assert sms["reachable"] == 1
    assert (sms["segments"]["sample_size"], sms["segments"]["max"]) == (1, 1)


def test_the_segment_sample_is_capped_and_the_average_scales_to_every_reachable_member():
    for _ in range(SEGMENT_SAMPLE_SIZE + 5):
        _sms_member("Bo")
    mailing = _sms_mailing(price="0.01000")

    [sms] = mailing_cost_estimate(mailing=mailing)["channels"]

    assert sms["segments"]["sample_size"] == SEGMENT_SAMPLE_SIZE
    assert sms["reachable"] == SEGMENT_SAMPLE_SIZE + 5
    assert sms["billable"] == SEGMENT_SAMPLE_SIZE + 5
    assert sms["cost"] == Decimal("2.05")


def test_the_estimate_takes_as_many_queries_for_many_members_as_for_few():
    _sms_member("Bo")
    mailing = _sms_mailing()
    with CaptureQueriesContext(connection) as few:
        mailing_cost_estimate(mailing=mailing)
    for _ in range(30):
        _sms_member("Anna")

    with CaptureQueriesContext(connection) as many:
        mailing_cost_estimate(mailing=mailing)

    assert len(many.captured_queries) == len(few.captured_queries)


def test_a_template_failing_for_a_member_is_counted_not_raised():
    _sms_member("Bo")
    _sms_member("")
    # Dividing by the length of an empty name fails for that member only.
    mailing = _sms_mailing(body="{{ 10 // member.first_name|length }}" + FILLER)

    [sms] = mailing_cost_estimate(mailing=mailing)["channels"]

    assert sms["segments"]["render_failures"] == 1
    assert sms["segments"]["sample_size"] == 2


def test_a_static_list_audience_is_priced_by_its_reachable_entries():
    listed = consenting_member()
    StaticListMemberFactory(member=listed)
    consenting_member()  # not on the list
    entry = StaticListMemberFactory(member=consenting_member())
    StaticListMemberFactory(static_list=entry.static_list, member=listed)
    mailing = MailingFactory(target_group=None, static_list=entry.static_list,
                             gateway=GatewayFactory(price_per_message=Decimal("1")))

    estimate = mailing_cost_estimate(mailing=mailing)

    assert estimate["audience"]["kind"] == "static_list"
    assert estimate["audience"]["size"] == 2
    assert estimate["channels"][0]["cost"] == Decimal("2")


def test_a_single_member_audience_is_priced_for_that_member():
    member = consenting_member()
    consenting_member()
    mailing = MailingFactory(target_group=None, member=member,
                             gateway=GatewayFactory(price_per_message=Decimal("0.5")))

    estimate = mailing_cost_estimate(mailing=mailing)

    assert (estimate["audience"]["kind"], estimate["audience"]["size"]) == ("member", 1)
    assert estimate["channels"][0]["reachable"] == 1
    assert estimate["total_cost"] == Decimal("0.5")


def test_a_mailing_without_a_gateway_names_it_and_has_no_price():
    consenting_member()
    mailing = MailingFactory(gateway=None)

    estimate = mailing_cost_estimate(mailing=mailing)

    assert "gateway" in estimate["problems"]
    assert estimate["channels"][0]["reachable"] == 1
    assert estimate["channels"][0]["cost"] is None
    assert estimate["total_cost"] == 0


def test_a_mailing_without_an_audience_names_it_and_costs_nothing():
    mailing = MailingFactory(target_group=None)

    estimate = mailing_cost_estimate(mailing=mailing)

    assert "target_group" in estimate["problems"]
    assert estimate["channels"][0]["reachable"] == 0
    assert estimate["total_cost"] == 0


def test_the_api_answers_the_estimate_of_a_mailing(marketer_client):
    _sms_member("Bo")
    _sms_member("Bartholomew-Maximian")
    mailing = _sms_mailing()

    response = marketer_client.get(f"/api/v1/mailings/{mailing.pk}/estimate/")

    assert response.status_code == 200
    body = response.json()
    [sms] = body["channels"]
    assert (sms["channel"], sms["reachable"], sms["billable"]) == ("sms", 2, 3)
    assert sms["segments"]["avg"] == 1.5
    assert Decimal(sms["cost"]) == Decimal("0.15")
    assert Decimal(body["total_cost"]) == Decimal("0.15")
    assert body["audience"]["reachable"]["sms"] == 2


def test_the_estimate_api_refuses_anonymous_callers(client):
    mailing = MailingFactory()

    response = client.get(f"/api/v1/mailings/{mailing.pk}/estimate/")

    assert response.status_code in (401, 403)


def test_the_mailing_page_shows_the_estimated_cost(marketer_client):
    _sms_member("Bo")
    _sms_member("Bartholomew-Maximian")
    mailing = _sms_mailing()

    response = marketer_client.get(f"/admin/communications/mailing/{mailing.pk}/change/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "mailing-cost-estimate" in page
    assert "min 1, average 1.5, max 2" in page
    assert '<td class="mailing-cost-estimate-cost">0.15</td>' in page


def test_a_cascade_prices_each_channel_for_the_members_it_reaches_first():
    # given: email first, then SMS; two members reachable by email (one of them by SMS too),
    # one by SMS only
    consenting_member()
    both = consenting_member(phone="+4915100000001")
    ConsentFactory(member=both, channel="sms")
    consenting_member(channel="sms", phone="+4915100000002", email="")
    mailing = MailingFactory(gateway=GatewayFactory(price_per_message=Decimal("0.00100")))
    sms_gateway = GatewayFactory(channel="sms", provider="smpp",
                                 price_per_message=Decimal("0.05000"),
                                 settings={"host": "127.0.0.1", "port": 2775,
                                           "system_id": "engage"})
    mailing_cascade_set(mailing=mailing, steps=[(
        TemplateFactory(channel="sms", subject="", body="Hi"), sms_gateway)])

    # when
    estimate = mailing_cost_estimate(mailing=mailing)

    # then
    email, sms = estimate["channels"]
    assert (email["channel"], email["reachable"], email["cost"]) == ("email", 2, Decimal("0.002"))
    assert (sms["channel"], sms["reachable"], sms["billable"]) == ("sms", 1, 1)
    assert sms["cost"] == Decimal("0.05")
    assert estimate["total_cost"] == Decimal("0.052")
