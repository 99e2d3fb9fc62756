"""The import checks each cell with `member_fields_clean`'s rules, looked up once per column.

These tests feed the import rows of good and bad cells in every profile column and custom
attribute type, and compare what it reports and stores with what `member_fields_clean` says
of the same row: the same rows pass, the same cells fail with the same reasons, and the
members hold the values it returns.
"""

from __future__ import annotations

import csv
import io
import random

import pytest
from django.core.exceptions import ValidationError

from members.imports import BadRow, members_import
from members.models import Member
from members.services import member_fields_clean
from members.services.profiles import custom_attributes_declared
from tests.members.factories import CustomAttributeFactory

pytestmark = pytest.mark.django_db

# Per column: cells that pass, then cells that may not (most do not).
CELLS = {
    "first_name": (["Ana", "  Ben  ", "Zoë", "", "x" * 100], ["x" * 101]),
    "last_name": (["Smith", "", "O'Neil"], ["y" * 101]),
    "email": (["ana@example.com", " Ana@Example.COM ", "", "x@localhost"],
              ["not-an-email", "a@b", "a@-bad.com", "a..b@example.com", "user@[127.0.0.1]",
               "user@[999.1.1.1]"]),
    "phone": (["+4915112345678", "+49 151 12345678", "+1 202 555 0143", "+12025550143", "",
               "+390612345678", "+44 7911 123456"],
              ["0151 12345678", "12", "+49015112345678", "+999123", "abc", "+49 1",
               "+80012345678"]),
    "birth_date": (["1990-02-03", "", " 1990-02-03 "], ["2990-01-01", "1990-02-30", "03/02/1990"]),
    "gender": (["female", "male", "other", ""], ["x", "Female"]),
    "language": (["en", "pt-BR"], ["EN", "english", "", " de "]),
    "timezone": (["Europe/Berlin", "UTC"], ["Mars/Base", "", " UTC"]),
    "city": (["Berlin", ""], ["c" * 101]),
    "region": (["Bavaria", "", "r" * 100], ["r" * 101]),
    "country": (["DE", "de", "", "GB"], ["Germany", " us "]),
    "location": ([("52.5", "13.4"), ("", ""), ("-90", "-180")],
                 [("52.5", ""), ("", "13.4"), ("91", "0"), ("abc", "1"), ("0", "181"),
                  ("nan", "1")]),
    "registered_at": (["2021-01-02T03:04:05Z", "2021-01-02", "", "2021-01-02 03:04:05+02:00"],
                      ["yesterday", "2021-13-01"]),
    "registration_source": (["shop", ""], ["s" * 65]),
    "attr.size": (["42", "", "-3"], ["big", "4.5"]),
    "attr.vip": (["yes", "", "FALSE", "1"], ["maybe"]),
    "attr.since": (["2020-01-01", ""], ["2020-02-30", "x"]),
    "attr.tier": (["gold", ""], ["bronze"]),
    "attr.score": (["1.5", "1e3", ""], ["abc"]),
    "attr.note": (["hi", "", " spaced "], []),
}
PROFILE = ["first_name", "last_name", "email", "phone", "birth_date", "gender", "language",
           "timezone", "city", "region", "country", "latitude", "longitude", "registered_at",
           "registration_source"]
ATTRIBUTES = ["size", "vip", "since", "tier", "score", "note"]
HEADER = ["external_id", *PROFILE, *(f"attr.{key}" for key in ATTRIBUTES)]


@pytest.fixture
def declared():
    CustomAttributeFactory(key="size", type="integer")
    CustomAttributeFactory(key="vip", type="boolean")
    CustomAttributeFactory(key="since", type="date")
    CustomAttributeFactory(key="tier", type="choice", choices=["gold", "silver"])
    CustomAttributeFactory(key="score", type="number")
    CustomAttributeFactory(key="note", type="string")
    return custom_attributes_declared()


def _rows(count: int) -> list[dict[str, str]]:
    rng = random.Random(7)
    rows = []
    for number in range(count):
        row = {name: rng.choice(good if rng.random() < 0.93 or not other else other)
               for name, (good, other) in CELLS.items()}
        row["latitude"], row["longitude"] = row.pop("location")
        row["external_id"] = f"C{number}"
        rows.append(row)
    return rows


def _csv(rows: list[dict[str, str]]) -> io.BytesIO:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(HEADER)
    writer.writerows([[row[column] for column in HEADER] for row in rows])
    return io.BytesIO(text.getvalue().encode())


def _service_says(row: dict[str, str], declared) -> tuple[dict, list[tuple[str, str]]]:
    """member_fields_clean's verdict on the row: its cleaned fields, or its errors by column."""
    data = {name: row[name] for name in PROFILE}
    data["custom_attributes"] = {key: row[f"attr.{key}"] for key in ATTRIBUTES}
    try:
        return member_fields_clean(data, declared=declared), []
    except ValidationError as exc:
        errors = [(key.replace("custom_attributes.", "attr.", 1), "; ".join(texts))
                  for key, texts in exc.message_dict.items()]
        return {}, sorted(errors, key=lambda error: HEADER.index(error[0]))


def test_the_import_refuses_the_cells_member_fields_clean_refuses_for_the_same_reasons(
        declared):
    rows = _rows(400)
    expected = [BadRow(line, column, reason)
                for line, row in enumerate(rows, start=2)
                for column, reason in _service_says(row, declared)[1]]

    report = members_import(source=_csv(rows), skip_bad_rows=True)

    assert report.bad_rows == expected
    assert 20 < report.created < 380  # both kinds of rows are there


def test_the_imported_members_hold_the_values_member_fields_clean_returns(declared):
    rows = _rows(400)

    members_import(source=_csv(rows), skip_bad_rows=True)

    stored = {member.external_id: member for member in Member.objects.all()}
    compared = 0
    for row in rows:
        cleaned, errors = _service_says(row, declared)
        if errors:
            assert row["external_id"] not in stored
            continue
        member = stored[row["external_id"]]
        attributes = cleaned.pop("custom_attributes")
        if cleaned["registered_at"] is None:  # a new member joins at the import's time
            del cleaned["registered_at"]
        assert {name: getattr(member, name) for name in cleaned} == cleaned
        assert member.custom_attributes == {
            key: value for key, value in attributes.items() if value is not None}
        compared += 1
    assert compared > 20
