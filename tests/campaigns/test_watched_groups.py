from __future__ import annotations

import pytest

from campaigns.models import TargetGroupMembership
from campaigns.services import target_group_watch, target_groups_reevaluate
from loyalty.models import Event
from members.models import Member
from members.services import member_upsert
from tests.campaigns.factories import TargetGroupFactory
from tests.conftest import wait_until
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db

GERMAN = {"field": "language", "op": "eq", "value": "de"}


def _events(kind: str) -> list[tuple[int, int]]:
    return sorted(Event.objects.filter(type=kind)
                  .values_list("member_id", "payload__target_group"))


def test_watching_takes_the_current_members_as_baseline_without_events():
    german = MemberFactory(language="de")
    MemberFactory(language="en")
    group = TargetGroupFactory(rules=GERMAN)

    target_group_watch(target_group=group)

    assert list(TargetGroupMembership.objects.values_list("member_id", flat=True)) == [german.pk]
    assert not Event.objects.exists()


def test_a_changed_member_enters_and_leaves_with_events():
    # given a watched group of German speakers
    leaving = MemberFactory(language="de")
    entering = MemberFactory(language="en")
    group = target_group_watch(target_group=TargetGroupFactory(rules=GERMAN))
    # when both switch language and the engine looks at them
    leaving.language, entering.language = "en", "de"
    leaving.save()
    entering.save()
    totals = target_groups_reevaluate(member_ids=[leaving.pk, entering.pk])
    # then one entered and one left, each with its event
    assert totals == {"entered": 1, "left": 1}
    assert _events("TARGET_GROUP_ENTERED") == [(entering.pk, group.pk)]
    assert _events("TARGET_GROUP_LEFT") == [(leaving.pk, group.pk)]
    assert list(TargetGroupMembership.objects.values_list("member_id", flat=True)) == [
        entering.pk]


def test_only_the_given_members_are_evaluated():
    group = target_group_watch(target_group=TargetGroupFactory(rules=GERMAN))
    untouched = MemberFactory(language="de")  # joined the rules, but nobody said so
    changed = MemberFactory(language="de")

    target_groups_reevaluate(member_ids=[changed.pk])

    members = set(TargetGroupMembership.objects.filter(target_group=group)
                  .values_list("member_id", flat=True))
    assert members == {changed.pk}
    assert untouched.pk not in members


def test_reevaluating_again_records_nothing_new():
    target_group_watch(target_group=TargetGroupFactory(rules=GERMAN))
    member = MemberFactory(language="de")
    target_groups_reevaluate(member_ids=[member.pk])

    totals = target_groups_reevaluate(member_ids=[member.pk])

    assert totals == {"entered": 0, "left": 0}
    assert Event.objects.count() == 1


def test_full_sweep_catches_members_no_service_reported():
    target_group_watch(target_group=TargetGroupFactory(rules=GERMAN))
    member = MemberFactory(language="de")

    totals = target_groups_reevaluate()

    assert totals == {"entered": 1, "left": 0}
    assert _events("TARGET_GROUP_ENTERED")[0][0] == member.pk


def test_unwatched_groups_are_left_alone():
    TargetGroupFactory(rules=GERMAN)
    member = MemberFactory(language="de")

    assert target_groups_reevaluate(member_ids=[member.pk]) == {"entered": 0, "left": 0}
    assert not TargetGroupMembership.objects.exists()


@pytest.mark.pipeline
def test_profile_update_enters_the_member_through_a_real_worker(celery_worker_process):
    # given a watched group, and a worker on Redis
    group = target_group_watch(target_group=TargetGroupFactory(rules=GERMAN))
    member = MemberFactory(language="en")
    # when the member's profile changes through its service
    member_upsert(external_id=member.external_id, data={"language": "de"})
    # then, after commit, the worker records the entry
    wait_until(lambda: bool(_events("TARGET_GROUP_ENTERED")), what="the entered event")
    assert _events("TARGET_GROUP_ENTERED") == [(member.pk, group.pk)]


@pytest.mark.pipeline
def test_members_imported_from_csv_enter_watched_groups_through_a_real_worker(
        celery_worker_process, tmp_path):
    from members.imports import members_import

    group = target_group_watch(target_group=TargetGroupFactory(rules=GERMAN))
    source = tmp_path / "members.csv"
    source.write_text("external_id,language\nCSV-1,de\nCSV-2,en\n", encoding="utf-8")

    with source.open("rb") as handle:
        report = members_import(source=handle, by=None)

    assert report.imported
    wait_until(lambda: bool(_events("TARGET_GROUP_ENTERED")), what="the entered event")
    entered = _events("TARGET_GROUP_ENTERED")
    assert [(member_id, group_id) for member_id, group_id in entered] == [
        (Member.objects.get(external_id="CSV-1").pk, group.pk)]
