"""Engagement: received, opened or clicked a mailing, or any mailing of a campaign."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.campaigns.rule_strategies import FIELD_OPS, PROPERTY, conditions
from tests.campaigns.segment_data import (  # noqa: F401 - the `segment` fixture
    NOW,
    assert_like_reference,
    ids,
    segment_fixture,
)
from tests.communications.factories import MailingFactory, MessageFactory
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("name", "op"), FIELD_OPS["engagement"])
@PROPERTY
@given(data=st.data())
def test_engagement_condition_selects_the_members_the_document_says(segment, name, op, data):
    assert_like_reference(data.draw(conditions(segment, name, op)), segment)


@pytest.mark.parametrize("name", ["received", "opened", "clicked"])
@PROPERTY
@given(data=st.data())
def test_negated_engagement_condition_includes_members_never_sent_it(segment, name, data):
    op = data.draw(st.sampled_from(["mailing", "campaign"]))

    assert_like_reference({"not": data.draw(conditions(segment, name, op))}, segment)


def test_received_means_sent_or_delivered(segment):
    mailing = MailingFactory()
    by_status = {status: MessageFactory(mailing=mailing, status=status, sent_at=NOW).member
                 for status in ("sent", "delivered", "failed", "queued", "skipped")}

    selected = ids({"field": "received", "op": "mailing", "value": mailing.pk})

    assert {member.pk for member in by_status.values()} & selected == {
        by_status["sent"].pk, by_status["delivered"].pk}


def test_campaign_covers_every_mailing_of_it(segment):
    first = MailingFactory()
    second = MailingFactory(campaign=first.campaign)
    other = MailingFactory()
    members = [MessageFactory(mailing=mailing, status="delivered", sent_at=NOW,
                              opened_at=NOW).member for mailing in (first, second, other)]

    selected = ids({"field": "opened", "op": "campaign", "value": first.campaign_id})

    assert {member.pk for member in members} & selected == {members[0].pk, members[1].pk}


def test_opened_in_a_window_counts_from_when_it_was_opened(segment):
    mailing = MailingFactory()
    sent_long_ago = NOW - dt.timedelta(days=60)
    opened_lately = MessageFactory(mailing=mailing, status="delivered", sent_at=sent_long_ago,
                                   opened_at=NOW - dt.timedelta(days=2)).member
    opened_then = MessageFactory(mailing=mailing, status="delivered", sent_at=sent_long_ago,
                                 opened_at=sent_long_ago).member

    selected = ids({"field": "opened", "op": "mailing", "value": mailing.pk, "days": 7})

    assert {opened_lately.pk, opened_then.pk} & selected == {opened_lately.pk}


def test_not_clicked_includes_members_who_were_never_sent_the_mailing(segment):
    mailing = MailingFactory()
    clicked = MessageFactory(mailing=mailing, status="delivered", sent_at=NOW, opened_at=NOW,
                             clicked_at=NOW).member
    stranger = MemberFactory()

    selected = ids({"not": {"field": "clicked", "op": "mailing", "value": mailing.pk}})

    assert {clicked.pk, stranger.pk} & selected == {stranger.pk}
