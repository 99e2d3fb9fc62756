"""The messaging calendar (selectors.calendar): which mailings go out day by day, to how many
members, and the members who would get two or more of them on one day."""
from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from communications.models import Mailing, Message
from communications.selectors.calendar import messaging_calendar
from tests.campaigns.factories import (
    StaticListFactory,
    StaticListMemberFactory,
    TargetGroupFactory,
)
from tests.communications.factories import MailingFactory
from tests.members.factories import MemberFactory, consenting_member

pytestmark = pytest.mark.django_db

State = Mailing.State
Status = Message.Status
MAY_1 = dt.date(2030, 5, 1)
MAY_31 = dt.date(2030, 5, 31)


def _at(day: dt.date, hour: int = 9, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=timezone.get_current_timezone())


def _list_of(members) -> object:
    static_list = StaticListFactory()
    for member in members:
        StaticListMemberFactory(static_list=static_list, member=member)
    return static_list


def _scheduled(members, day: dt.date, **fields) -> Mailing:
    """A scheduled email mailing to exactly `members` (a static list), at 9:00 on `day`."""
    return MailingFactory(target_group=None, static_list=_list_of(members),
                          state=State.SCHEDULED, scheduled_at=_at(day), **fields)


def _frozen(sent: dict, *, state: str = State.COMPLETED, **fields) -> Mailing:
    """A mailing whose messages were sent: {member: sent_at or a status still waiting}."""
    mailing = MailingFactory(state=state, started_at=_at(MAY_1, 0), **fields)
    now = timezone.now()
    Message.objects.bulk_create([
        Message(mailing=mailing, member=member, channel="email", address=member.email,
                status=Status.SENT if isinstance(when, dt.datetime) else when,
                sent_at=when if isinstance(when, dt.datetime) else None,
                created_at=now, updated_at=now)
        for member, when in sent.items()])
    return mailing


def _day(calendar, day: dt.date):
    return next(entry for entry in calendar.days if entry.date == day)


def _members(calendar_day) -> dict[str, int]:
    return {entry.name: entry.members for entry in calendar_day.mailings}


# --- which mailings, which days ----------------------------------------------------------------

def test_a_scheduled_mailing_is_on_its_day_with_the_members_reachable_on_its_channel():
    reachable = [consenting_member() for _ in range(3)]
    not_consenting = MemberFactory()
    _scheduled([*reachable, not_consenting], dt.date(2030, 5, 6), name="Spring offers")

    calendar = messaging_calendar(start=MAY_1, end=MAY_31)

    assert len(calendar.days) == 31
    assert _members(_day(calendar, dt.date(2030, 5, 6))) == {"Spring offers": 3}
    assert [day.date for day in calendar.days if day.mailings] == [dt.date(2030, 5, 6)]


def test_members_in_two_mailings_on_one_day_are_counted_as_the_overlap():
    shared = [consenting_member() for _ in range(2)]
    first = _scheduled([*shared, consenting_member()], dt.date(2030, 5, 6), name="Offers")
    second = _scheduled([*shared, consenting_member(), consenting_member()],
                        dt.date(2030, 5, 6), name="News")

    day = _day(messaging_calendar(start=MAY_1, end=MAY_31), dt.date(2030, 5, 6))

    assert _members(day) == {"Offers": 3, "News": 4}
    assert (day.members, day.overlap) == (5, 2)
    assert [(pair.mailings, pair.members) for pair in day.pairs] == [
        ((first.pk, second.pk), 2)]


def test_mailings_on_different_days_do_not_overlap():
    shared = [consenting_member() for _ in range(2)]
    _scheduled(shared, dt.date(2030, 5, 6))
    _scheduled(shared, dt.date(2030, 5, 7))

    calendar = messaging_calendar(start=MAY_1, end=MAY_31)

    assert [day.overlap for day in calendar.days if day.mailings] == [0, 0]
    assert [day.pairs for day in calendar.days if day.mailings] == [[], []]


def test_a_frozen_mailing_counts_its_members_on_the_day_each_message_was_sent():
    early, late, skipped = MemberFactory(), MemberFactory(), MemberFactory()
    _frozen({early: _at(dt.date(2030, 5, 6), 23), late: _at(dt.date(2030, 5, 7), 0, 30),
             skipped: Status.SKIPPED}, name="Sale")

    calendar = messaging_calendar(start=MAY_1, end=MAY_31)

    assert {day.date: _members(day) for day in calendar.days if day.mailings} == {
        dt.date(2030, 5, 6): {"Sale": 1}, dt.date(2030, 5, 7): {"Sale": 1}}


def test_days_are_dates_in_the_programs_time_zone(settings):
    settings.TIME_ZONE = "Europe/Berlin"
    member = MemberFactory()
    # 22:30 UTC on the 6th is 00:30 on the 7th in Berlin
    _frozen({member: dt.datetime(2030, 5, 6, 22, 30, tzinfo=dt.UTC)}, name="Late")

    calendar = messaging_calendar(start=MAY_1, end=MAY_31)

    assert [day.date for day in calendar.days if day.mailings] == [dt.date(2030, 5, 7)]


def test_test_sends_put_no_mailing_on_the_calendar():
    mailing = MailingFactory(state=State.COMPLETED, started_at=_at(MAY_1, 0))
    now = timezone.now()
    Message.objects.create(mailing=mailing, member=MemberFactory(), is_test=True,
                           channel="email", status=Status.SENT, sent_at=_at(dt.date(2030, 5, 6)),
                           created_at=now, updated_at=now)

    calendar = messaging_calendar(start=MAY_1, end=MAY_31)

    assert [day for day in calendar.days if day.mailings] == []


def test_waiting_messages_of_a_sending_mailing_count_today():
    waiting = MemberFactory()
    _frozen({waiting: Status.QUEUED}, state=State.SENDING, name="Now")

    calendar = messaging_calendar(start=MAY_1, end=MAY_31, now=_at(dt.date(2030, 5, 10), 12))

    assert {day.date: _members(day) for day in calendar.days if day.mailings} == {
        dt.date(2030, 5, 10): {"Now": 1}}


def test_waiting_messages_of_a_failed_mailing_are_on_no_day():
    _frozen({MemberFactory(): Status.QUEUED}, state=State.FAILED)

    calendar = messaging_calendar(start=MAY_1, end=MAY_31, now=_at(dt.date(2030, 5, 10), 12))

    assert [day for day in calendar.days if day.mailings] == []


def test_a_target_group_whose_rules_no_longer_hold_is_shown_with_why():
    consenting_member()
    MailingFactory(target_group=TargetGroupFactory(rules={"field": "no_such_field", "op": "eq",
                                                          "value": 1}),
                   state=State.SCHEDULED, scheduled_at=_at(dt.date(2030, 5, 6)))

    [entry] = _day(messaging_calendar(start=MAY_1, end=MAY_31), dt.date(2030, 5, 6)).mailings

    assert entry.members == 0
    assert "no_such_field" in entry.error


def test_a_frozen_and_a_scheduled_mailing_overlap_on_the_same_day():
    shared = consenting_member()
    _frozen({shared: _at(dt.date(2030, 5, 6), 8), MemberFactory(): _at(dt.date(2030, 5, 6), 8)},
            name="Sent")
    _scheduled([shared, consenting_member()], dt.date(2030, 5, 6), name="Planned")

    day = _day(messaging_calendar(start=MAY_1, end=MAY_31), dt.date(2030, 5, 6))

    assert _members(day) == {"Sent": 2, "Planned": 2}
    assert day.overlap == 1


def test_a_recurring_mailing_shows_its_coming_runs_on_each_day_of_its_rule():
    members = [consenting_member() for _ in range(2)]
    MailingFactory(target_group=None, static_list=_list_of(members), name="Weekly",
                   state=State.RECURRING, scheduled_at=_at(dt.date(2030, 5, 6)),
                   recurrence="FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0")

    calendar = messaging_calendar(start=MAY_1, end=MAY_31)

    runs = {day.date: day.mailings for day in calendar.days if day.mailings}
    assert list(runs) == [dt.date(2030, 5, d) for d in (6, 13, 20, 27)]
    assert all(entry.planned_run and entry.members == 2
               for entries in runs.values() for entry in entries)


def test_a_recurring_mailing_going_out_twice_a_day_overlaps_with_itself():
    members = [consenting_member() for _ in range(2)]
    MailingFactory(target_group=None, static_list=_list_of(members), state=State.RECURRING,
                   scheduled_at=_at(dt.date(2030, 5, 6)),
                   recurrence="FREQ=DAILY;BYHOUR=9,18;BYMINUTE=0;COUNT=2")

    day = _day(messaging_calendar(start=MAY_1, end=MAY_31), dt.date(2030, 5, 6))

    assert len(day.mailings[0].times) == 2
    assert day.overlap == 2


def test_drafts_are_not_on_the_calendar():
    MailingFactory(state=State.DRAFT, scheduled_at=_at(dt.date(2030, 5, 6)))

    calendar = messaging_calendar(start=MAY_1, end=MAY_31)

    assert [day for day in calendar.days if day.mailings] == []


def test_calendar_reads_one_statement_per_day_with_mailings(django_assert_max_num_queries):
    members = [consenting_member() for _ in range(30)]
    for day in (dt.date(2030, 5, 6), dt.date(2030, 5, 6), dt.date(2030, 5, 9)):
        _scheduled(members, day)
    _frozen({member: _at(dt.date(2030, 5, 9), 8) for member in members})

    # the mailings, the frozen ones' days, one per day with mailings
    with django_assert_max_num_queries(4):
        calendar = messaging_calendar(start=MAY_1, end=MAY_31)

    assert [day.overlap for day in calendar.days if day.mailings] == [30, 30]


# --- the API ------------------------------------------------------------------------------------

def test_calendar_api_answers_each_day_with_its_mailings_and_overlap(marketer_client):
    shared = consenting_member()
    first = _scheduled([shared], dt.date(2030, 5, 6), name="Offers")
    second = _scheduled([shared, consenting_member()], dt.date(2030, 5, 6), name="News")

    response = marketer_client.get("/api/v1/mailings/calendar/",
                                   {"start": "2030-05-05", "end": "2030-05-07"})

    assert response.status_code == 200
    body = response.json()
    assert [day["date"] for day in body["days"]] == ["2030-05-05", "2030-05-06", "2030-05-07"]
    day = body["days"][1]
    assert [(m["id"], m["channel"], m["members"], m["source"]) for m in day["mailings"]] == [
        (first.pk, "email", 1, "audience"), (second.pk, "email", 2, "audience")]
    assert (day["members"], day["overlap"]) == (2, 1)
    assert day["pairs"] == [{"mailings": [first.pk, second.pk], "members": 1}]


def test_calendar_api_refuses_a_range_over_92_days(marketer_client):
    response = marketer_client.get("/api/v1/mailings/calendar/",
                                   {"start": "2030-01-01", "end": "2030-04-03"})

    assert response.status_code == 400
    assert list(response.json()) == ["end"]


def test_calendar_api_takes_a_range_of_exactly_92_days(marketer_client):
    response = marketer_client.get("/api/v1/mailings/calendar/",
                                   {"start": "2030-01-01", "end": "2030-04-02"})

    assert response.status_code == 200
    assert len(response.json()["days"]) == 92


def test_calendar_api_names_the_field_of_a_bad_date(marketer_client):
    response = marketer_client.get("/api/v1/mailings/calendar/",
                                   {"start": "2030-02-30", "end": "2030-03-01"})

    assert response.status_code == 400
    assert list(response.json()) == ["start"]


def test_calendar_api_refuses_an_end_before_the_start(marketer_client):
    response = marketer_client.get("/api/v1/mailings/calendar/",
                                   {"start": "2030-03-02", "end": "2030-03-01"})

    assert response.status_code == 400
    assert list(response.json()) == ["end"]


def test_calendar_api_needs_both_dates(marketer_client):
    response = marketer_client.get("/api/v1/mailings/calendar/")

    assert response.status_code == 400
    assert set(response.json()) == {"start", "end"}


def test_openapi_schema_describes_the_calendar(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()

    calendar = schema["paths"]["/api/v1/mailings/calendar/"]["get"]
    assert {parameter["name"] for parameter in calendar["parameters"]} >= {"start", "end"}
    assert "days" in schema["components"]["schemas"]["MessagingCalendar"]["properties"]


# --- the admin ------------------------------------------------------------------------------------

def test_calendar_page_shows_the_month_with_each_days_mailings_and_overlap(marketer_client):
    shared = consenting_member()
    _scheduled([shared], dt.date(2030, 5, 6), name="Offers")
    _scheduled([shared], dt.date(2030, 5, 6), name="News")

    response = marketer_client.get(reverse("admin:communications_mailing_calendar"),
                                   {"month": "2030-05"})

    assert response.status_code == 200
    page = response.content.decode()
    assert "May 2030" in page
    assert 'data-date="2030-05-31"' in page
    assert "1 member in 2+ mailings" in page
    assert "Offers &amp; News: 1" in page or "News &amp; Offers: 1" in page


def test_calendar_page_escapes_mailing_names(marketer_client):
    _scheduled([consenting_member()], dt.date(2030, 5, 6), name="<script>alert(1)</script>")

    response = marketer_client.get(reverse("admin:communications_mailing_calendar"),
                                   {"month": "2030-05"})

    page = response.content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_calendar_page_with_a_bad_month_shows_this_month_and_says_why(marketer_client):
    response = marketer_client.get(reverse("admin:communications_mailing_calendar"),
                                   {"month": "2030-13"})

    assert response.status_code == 200
    assert "give the month as YYYY-MM" in response.content.decode()
    assert response.context["month"] == timezone.localdate().replace(day=1)


def test_mailing_list_links_to_the_calendar(marketer_client):
    response = marketer_client.get(reverse("admin:communications_mailing_changelist"))

    assert reverse("admin:communications_mailing_calendar") in response.content.decode()
