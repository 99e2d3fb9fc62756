"""A mailing's control group: a share of the members it would send to, held out by the
audience snapshot as `skipped: holdout`, drawn per member so that a retry draws the same."""
from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from communications.models import Message
from communications.services import mailing_prepare, mailing_schedule, message_batch_dispatch
from communications.services.mailings import mailing_create
from communications.services.snapshots import (
    BUCKETS,
    HOLDOUT_SALT,
    audience_snapshot,
    member_bucket_of,
)
from tests.communications.factories import GatewayFactory, MailingFactory, TemplateFactory
from tests.members.factories import MemberFactory, consenting_member

pytestmark = pytest.mark.django_db

Status = Message.Status
SkipReason = Message.SkipReason


def _drawn_into_holdout(mailing, member_id: int) -> bool:
    cut = mailing.holdout_percent * BUCKETS // 100
    return member_bucket_of(mailing_id=mailing.pk, salt=HOLDOUT_SALT, member_id=member_id) < cut


def _held_out(mailing) -> set[int]:
    return set(Message.objects.filter(mailing=mailing, status=Status.SKIPPED,
                                      skip_reason=SkipReason.HOLDOUT)
               .values_list("member_id", flat=True))


def _prepared(*, members: int, holdout_percent: int, **fields):
    ids = [consenting_member().pk for _ in range(members)]
    mailing = MailingFactory(holdout_percent=holdout_percent, **fields)
    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)
    mailing.refresh_from_db()
    return mailing, ids


def test_the_members_drawn_into_the_holdout_are_skipped_as_holdout():
    mailing, ids = _prepared(members=60, holdout_percent=30)

    expected = {pk for pk in ids if _drawn_into_holdout(mailing, pk)}
    assert _held_out(mailing) == expected
    assert 8 <= len(expected) <= 28  # about 30% of 60
    queued = set(Message.objects.filter(mailing=mailing, status=Status.QUEUED)
                 .values_list("member_id", flat=True))
    assert queued == set(ids) - expected


def test_a_snapshot_part_written_again_holds_out_the_same_members():
    mailing, ids = _prepared(members=40, holdout_percent=50)
    first = _held_out(mailing)

    # The part's rows gone (its transaction rolled back), the part is frozen again.
    Message.objects.filter(mailing=mailing).delete()
    audience_snapshot(mailing=mailing, members=(min(ids), max(ids)))

    assert _held_out(mailing) == first


def test_two_mailings_draw_different_holdouts_from_the_same_audience():
    ids = [consenting_member().pk for _ in range(40)]
    held = []
    for _ in range(2):
        mailing = MailingFactory(holdout_percent=50)
        mailing_schedule(mailing=mailing)
        mailing_prepare(mailing_id=mailing.pk)
        held.append(_held_out(mailing))

    assert held[0] != held[1]
    assert held[0] <= set(ids) and held[1] <= set(ids)


def test_a_member_skipped_for_consent_keeps_that_reason_even_if_drawn_into_the_holdout():
    mailing = MailingFactory(holdout_percent=50)
    unconsenting = [MemberFactory().pk for _ in range(12)]
    assert any(_drawn_into_holdout(mailing, pk) for pk in unconsenting)  # the case is real

    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)

    reasons = set(Message.objects.filter(mailing=mailing).values_list("skip_reason", flat=True))
    assert reasons == {SkipReason.OPTED_OUT}


def test_held_out_members_are_never_sent_to(smtp_peer):
    mailing, ids = _prepared(members=20, holdout_percent=40,
                             gateway=GatewayFactory(settings=smtp_peer.gateway_settings()))
    held = _held_out(mailing)
    assert held

    while message_batch_dispatch(mailing_id=mailing.pk, batch_size=50)["claimed"]:
        pass

    mailing.refresh_from_db()
    assert mailing.state == mailing.State.COMPLETED
    assert set(Message.objects.filter(mailing=mailing, member_id__in=held)
               .values_list("status", flat=True)) == {Status.SKIPPED}
    held_addresses = set(Message.objects.filter(mailing=mailing, member_id__in=held)
                         .values_list("address", flat=True))
    received = {rcpt for mail in smtp_peer.received for rcpt in mail.rcpt_tos}
    assert len(received) == len(ids) - len(held)
    assert not received & held_addresses


def test_no_holdout_by_default():
    mailing, ids = _prepared(members=10, holdout_percent=0)

    assert _held_out(mailing) == set()
    assert Message.objects.filter(mailing=mailing, status=Status.QUEUED).count() == len(ids)


def test_a_holdout_over_half_the_audience_is_refused_naming_the_field():
    with pytest.raises(ValidationError) as error:
        mailing_create(name="Too many held out", template=TemplateFactory(),
                       gateway=GatewayFactory(), holdout_percent=51)

    assert "holdout_percent" in error.value.message_dict
