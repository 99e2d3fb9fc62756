"""Profile fields (columns of the member): every operator, against the document's reading."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.campaigns.reference import CHOICE_FIELDS, MOMENT_FIELDS, TEXT_FIELDS
from tests.campaigns.rule_strategies import FIELD_OPS, PROPERTY, conditions
from tests.campaigns.segment_data import (  # noqa: F401 - the `segment` fixture
    BIRTHDAY_NOWS,
    NOW,
    assert_like_reference,
    ids,
    segment_fixture,
)
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db

COLUMNS = [pair for pair in FIELD_OPS["profile"] if pair[0] not in ("birthday", "age")]
UTC = dt.UTC


@pytest.mark.parametrize(("name", "op"), COLUMNS)
@PROPERTY
@given(data=st.data())
def test_profile_condition_selects_the_members_the_document_says(segment, name, op, data):
    assert_like_reference(data.draw(conditions(segment, name, op)), segment)


@pytest.mark.parametrize("names", [TEXT_FIELDS, CHOICE_FIELDS, ("birth_date",), MOMENT_FIELDS],
                         ids=["text", "choice", "date", "moment"])
@PROPERTY
@given(data=st.data())
def test_negated_profile_condition_selects_every_other_member(segment, names, data):
    name, op = data.draw(st.sampled_from([pair for pair in COLUMNS if pair[0] in names]))
    condition = data.draw(conditions(segment, name, op))

    assert_like_reference({"not": condition}, segment)


@PROPERTY
@given(data=st.data(), now=st.sampled_from(BIRTHDAY_NOWS))
def test_birthday_in_next_days_wraps_over_new_year_and_places_29_february(segment, data, now):
    condition = data.draw(conditions(segment, "birthday", "in_next_days"))

    assert_like_reference(condition, segment, now=now)


@pytest.mark.parametrize("op", ["range", "empty", "not_empty"])
@PROPERTY
@given(data=st.data(), now=st.sampled_from(BIRTHDAY_NOWS))
def test_age_counts_whole_years_on_the_day_of_the_query(segment, op, data, now):
    condition = data.draw(conditions(segment, "age", op))

    assert_like_reference(condition, segment, now=now)


@PROPERTY
@given(data=st.data(), now=st.sampled_from(BIRTHDAY_NOWS))
def test_negated_age_range_includes_members_without_a_birth_date(segment, data, now):
    condition = data.draw(conditions(segment, "age", "range"))

    assert_like_reference({"not": condition}, segment, now=now)


def test_not_city_equals_includes_members_with_no_city(segment):
    no_city = MemberFactory(city="")
    elsewhere = MemberFactory(city="Tallinn")
    riga = MemberFactory(city="Riga")

    selected = ids({"not": {"field": "city", "op": "eq", "value": "Riga"}})

    assert {no_city.pk, elsewhere.pk, riga.pk} & selected == {no_city.pk, elsewhere.pk}


def test_contains_ignores_case_and_equals_does_not(segment):
    member = MemberFactory(city="Rīga")

    assert member.pk in ids({"field": "city", "op": "contains", "value": "RĪG"})
    assert member.pk not in ids({"field": "city", "op": "eq", "value": "rīga"})


def test_contains_reads_percent_and_underscore_as_plain_characters(segment):
    literal = MemberFactory(first_name="50%_off")
    other = MemberFactory(first_name="500 off")

    selected = ids({"field": "first_name", "op": "contains", "value": "0%_"})

    assert {literal.pk, other.pk} & selected == {literal.pk}


def test_someone_born_on_29_february_is_a_year_older_from_1_march_in_a_common_year(segment):
    leapling = MemberFactory(birth_date=dt.date(2008, 2, 29))
    eighteen = {"field": "age", "op": "range", "value": [18, 18]}

    assert leapling.pk not in ids(eighteen, now=dt.datetime(2026, 2, 28, 12, tzinfo=UTC))
    assert leapling.pk in ids(eighteen, now=dt.datetime(2026, 3, 1, 12, tzinfo=UTC))


def test_birthday_of_29_february_lies_between_28_february_and_1_march(segment):
    leapling = MemberFactory(birth_date=dt.date(2008, 2, 29))
    tomorrow = {"field": "birthday", "op": "in_next_days", "value": 1}

    assert leapling.pk in ids(tomorrow, now=dt.datetime(2026, 2, 28, 12, tzinfo=UTC))
    assert leapling.pk not in ids({**tomorrow, "value": 0},
                                  now=dt.datetime(2026, 2, 28, 12, tzinfo=UTC))


def test_birthday_in_next_days_wraps_over_new_year(segment):
    new_year = MemberFactory(birth_date=dt.date(1990, 1, 2))
    december = MemberFactory(birth_date=dt.date(1990, 12, 30))
    march = MemberFactory(birth_date=dt.date(1990, 3, 2))

    selected = ids({"field": "birthday", "op": "in_next_days", "value": 14},
                   now=dt.datetime(2025, 12, 25, 9, tzinfo=UTC))

    assert {new_year.pk, december.pk, march.pk} & selected == {new_year.pk, december.pk}


def test_moment_range_with_a_date_as_upper_end_covers_that_whole_day(segment):
    late = MemberFactory(registered_at=dt.datetime(2025, 3, 10, 23, 59, 59, tzinfo=UTC))
    next_day = MemberFactory(registered_at=dt.datetime(2025, 3, 11, 0, 0, tzinfo=UTC))

    selected = ids({"field": "registered_at", "op": "range", "value": [None, "2025-03-10"]})

    assert {late.pk, next_day.pk} & selected == {late.pk}


def test_moment_in_last_days_includes_exactly_n_days_ago(segment):
    edge = MemberFactory(registered_at=NOW - dt.timedelta(days=30))
    before = MemberFactory(registered_at=NOW - dt.timedelta(days=30, seconds=1))

    selected = ids({"field": "registered_at", "op": "in_last_days", "value": 30})

    assert {edge.pk, before.pk} & selected == {edge.pk}


def test_naive_moment_is_read_in_the_program_time_zone(segment, settings):
    settings.TIME_ZONE = "Europe/Riga"  # UTC+2 in March
    riga_morning = MemberFactory(registered_at=dt.datetime(2025, 3, 10, 0, 30, tzinfo=UTC))
    utc_previous_evening = MemberFactory(
        registered_at=dt.datetime(2025, 3, 9, 21, 30, tzinfo=UTC))

    selected = ids({"field": "registered_at", "op": "range",
                    "value": ["2025-03-10T02:00:00", None]})

    assert {riga_morning.pk, utc_previous_evening.pk} & selected == {riga_morning.pk}


def test_birthday_today_is_the_day_in_the_program_time_zone(segment, settings):
    settings.TIME_ZONE = "Europe/Riga"  # 23:30 UTC on 28 February is 01:30 on 1 March there
    first_of_march = MemberFactory(birth_date=dt.date(1990, 3, 1))
    last_of_february = MemberFactory(birth_date=dt.date(1990, 2, 28))

    selected = ids({"field": "birthday", "op": "in_next_days", "value": 0},
                   now=dt.datetime(2025, 2, 28, 23, 30, tzinfo=UTC))

    assert {first_of_march.pk, last_of_february.pk} & selected == {first_of_march.pk}
