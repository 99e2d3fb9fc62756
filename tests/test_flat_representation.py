"""config.api.FlatRepresentation: the hot calls' representations are their serializers' own."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from rest_framework import serializers

from campaigns.serializers import MemberOfferSerializer
from communications.api_me import InboxMessageSerializer
from communications.selectors.inbox import InboxEntry
from config.api import FlatRepresentation
from members.api_me import ProfileSerializer
from tests.campaigns.factories import PromoContentFactory
from tests.members.factories import MemberFactory


@pytest.mark.django_db
def test_a_members_profile_is_represented_as_its_serializer_does():
    member = MemberFactory(birth_date=dt.date(1990, 5, 17), city="Riga")

    assert FlatRepresentation(ProfileSerializer())(member) == ProfileSerializer(member).data


@pytest.mark.django_db
def test_an_offer_is_represented_as_its_serializer_does():
    offer = PromoContentFactory(image_url="")

    assert (FlatRepresentation(MemberOfferSerializer())(offer)
            == MemberOfferSerializer(offer).data)


@pytest.mark.parametrize("read_at", [None, timezone.now()])
def test_an_inbox_entry_is_represented_as_its_serializer_does(read_at):
    entry = InboxEntry(id=7, channel="push", subject="Hi", body="Points", image_url="",
                       link_url="myapp://offers/7", sent_at=timezone.now(),
                       read=read_at is not None,
                       read_at=read_at, text_source="template")

    assert (FlatRepresentation(InboxMessageSerializer())(entry)
            == InboxMessageSerializer(entry).data)


def test_a_serializer_with_a_computed_field_is_refused():
    class Computed(serializers.Serializer):
        name = serializers.SerializerMethodField()

    with pytest.raises(TypeError, match="Computed.name"):
        FlatRepresentation(Computed())
