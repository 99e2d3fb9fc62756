"""Recurring mailings: each occurrence of the rule runs as a mailing of its own."""
from __future__ import annotations

import zoneinfo
from datetime import datetime

import pytest
from django.core.exceptions import ValidationError

from communications.models import Mailing
from communications.services import mailing_cancel, mailing_schedule, mailings_tick
from communications.services.schedules import mailing_runs_start
from tests.communications.factories import MailingFactory
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db

State = Mailing.State
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
EVERY_MONDAY_AT_9 = "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0;BYSECOND=0"


@pytest.fixture(autouse=True)
def program_in_berlin(settings):
    settings.TIME_ZONE = "Europe/Berlin"


def _berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def _recurring(rule: str = EVERY_MONDAY_AT_9, **fields) -> Mailing:
    mailing = MailingFactory(recurrence=rule, **fields)
    return mailing_schedule(mailing=mailing, at=_berlin(2026, 3, 4, 12, 0))  # a Wednesday


def test_scheduling_a_recurring_mailing_waits_for_the_first_occurrence():
    mailing = _recurring()

    assert mailing.state == State.RECURRING
    assert mailing.scheduled_at == _berlin(2026, 3, 9, 9, 0)


def test_the_tick_at_an_occurrence_starts_a_run_copied_from_the_mailing():
    mailing = _recurring(priority=5, defer_capped=True)

    result = mailings_tick(now=_berlin(2026, 3, 9, 9, 0, 5))

    run = Mailing.objects.get(recurring_parent=mailing)
    assert result["runs"] == [run.pk]
    assert run.pk in result["started"]
    assert (run.state, run.scheduled_at) == (State.SCHEDULED, _berlin(2026, 3, 9, 9, 0))
    assert (run.target_group_id, run.template_id, run.gateway_id, run.priority,
            run.defer_capped, run.recurrence) == (
        mailing.target_group_id, mailing.template_id, mailing.gateway_id, 5, True, "")


def test_after_a_run_the_recurring_mailing_waits_for_the_next_occurrence():
    mailing = _recurring()

    mailings_tick(now=_berlin(2026, 3, 9, 9, 0, 5))

    mailing.refresh_from_db()
    assert (mailing.state, mailing.scheduled_at) == (State.RECURRING, _berlin(2026, 3, 16, 9, 0))


def test_two_ticks_at_the_same_occurrence_start_one_run():
    mailing = _recurring()
    now = _berlin(2026, 3, 9, 9, 0, 5)

    mailing_runs_start(now=now)
    mailing_runs_start(now=now)

    assert Mailing.objects.filter(recurring_parent=mailing).count() == 1


def test_before_the_occurrence_nothing_runs():
    mailing = _recurring()

    assert mailing_runs_start(now=_berlin(2026, 3, 9, 8, 59)) == []
    assert not Mailing.objects.filter(recurring_parent=mailing).exists()


def test_after_a_scheduler_outage_only_the_latest_missed_occurrence_runs():
    mailing = _recurring()

    mailing_runs_start(now=_berlin(2026, 3, 25, 12, 0))  # three Mondays later

    runs = Mailing.objects.filter(recurring_parent=mailing)
    assert [run.scheduled_at for run in runs] == [_berlin(2026, 3, 23, 9, 0)]
    mailing.refresh_from_db()
    assert mailing.scheduled_at == _berlin(2026, 3, 30, 9, 0)


def test_occurrences_keep_their_clock_time_across_a_daylight_saving_change():
    mailing = _recurring()

    mailing_runs_start(now=_berlin(2026, 3, 23, 9, 0, 1))  # Berlin moves to summer time 29 March
    mailing.refresh_from_db()

    assert mailing.scheduled_at.astimezone(BERLIN).hour == 9
    assert mailing.scheduled_at == _berlin(2026, 3, 30, 9, 0)


def test_a_rule_that_has_ended_completes_the_recurring_mailing():
    mailing = _recurring(rule=EVERY_MONDAY_AT_9 + ";COUNT=1")

    mailing_runs_start(now=_berlin(2026, 3, 9, 9, 0, 5))

    mailing.refresh_from_db()
    assert mailing.state == State.COMPLETED
    assert Mailing.objects.filter(recurring_parent=mailing).count() == 1


def test_a_cancelled_recurring_mailing_runs_no_more():
    mailing = _recurring()

    mailing_cancel(mailing=mailing)
    runs = mailing_runs_start(now=_berlin(2026, 3, 9, 9, 0, 5))

    assert runs == []


def test_a_run_takes_the_single_member_audience_too():
    member = MemberFactory()
    mailing = _recurring(target_group=None, member=member)

    mailing_runs_start(now=_berlin(2026, 3, 9, 9, 0, 5))

    assert Mailing.objects.get(recurring_parent=mailing).member_id == member.pk


@pytest.mark.parametrize("rule, expected", [
    ("FREQ=MINUTELY", "hourly at most"),
    ("FREQ=WEEKLY;BYDAY=XX", "not an iCalendar rule"),
    ("DTSTART:20260101T000000\nRRULE:FREQ=DAILY", "without DTSTART"),
    ("FREQ=DAILY;UNTIL=20250101T000000", "no occurrence"),
])
def test_a_rule_that_cannot_run_is_refused_naming_the_recurrence(rule, expected):
    mailing = MailingFactory(recurrence=rule)

    with pytest.raises(ValidationError) as error:
        mailing_schedule(mailing=mailing, at=_berlin(2026, 3, 4, 12, 0))

    assert expected in error.value.message_dict["recurrence"][0]
    mailing.refresh_from_db()
    assert mailing.state == State.DRAFT


def test_api_schedules_a_recurring_mailing(marketer_client):
    mailing = MailingFactory(recurrence=EVERY_MONDAY_AT_9)

    response = marketer_client.post(f"/api/v1/mailings/{mailing.pk}/schedule/",
                                    {"scheduled_at": "2026-03-04T12:00:00+01:00"},
                                    content_type="application/json")

    assert response.status_code == 200, response.json()
    assert response.json()["state"] == "recurring"
    assert response.json()["scheduled_at"].startswith("2026-03-09T09:00:00")
