from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from communications.address_lists import (
    LIST_BYTES_MAX,
    LOOKUP_CHUNK,
    AddressListError,
    InvalidAddress,
    address_list_read,
)
from tests.members.factories import MemberFactory

pytestmark = pytest.mark.django_db


def _file(text: str) -> io.BytesIO:
    return io.BytesIO(text.encode())


def test_one_phone_a_line_is_read_in_e164():
    report = address_list_read(file=_file("+49 151 2345 6789\n+4915198765432\n"),
                               channel="sms")

    assert report.addresses == ["+4915123456789", "+4915198765432"]


def test_phones_without_country_code_take_the_region():
    report = address_list_read(file=_file("0151 23456789\n"), channel="sms", region="DE")

    assert report.addresses == ["+4915123456789"]


def test_viber_lists_are_read_as_phones():
    report = address_list_read(file=_file("+4915123456789\n"), channel="viber")

    assert report.addresses == ["+4915123456789"]


def test_phone_column_is_taken_from_a_semicolon_separated_header_row():
    text = "name;Phone;city\nAna;+4915123456789;Berlin\nBen;+4915198765432;Köln\n"

    report = address_list_read(file=_file(text), channel="sms")

    assert (report.total, report.addresses) == (2, ["+4915123456789", "+4915198765432"])


def test_email_column_is_taken_from_a_header_row_and_lower_cased():
    text = "email,first_name\nAna.Lopez@Example.COM,Ana\n"

    report = address_list_read(file=_file(text), channel="email")

    assert report.addresses == ["ana.lopez@example.com"]


def test_excel_utf8_file_with_byte_order_mark_and_crlf_is_read():
    upload = SimpleUploadedFile("list.csv", "\ufeffphone\r\n+4915123456789\r\n".encode())

    report = address_list_read(file=upload, channel="sms")

    assert report.addresses == ["+4915123456789"]


def test_counts_add_up_to_the_lines_below_the_header():
    # given one member with a phone in the list, one number nobody has, one bad, one repeated
    MemberFactory(phone="+4915123456789")
    text = "phone\n+4915123456789\n+4915198765432\nnot a number\n0151 23456789\n\n"

    # when
    report = address_list_read(file=_file(text), channel="sms", region="DE")

    # then
    assert (report.total, report.valid, report.unknown, report.invalid, report.duplicates) == (
        4, 2, 1, 1, 1)


def test_the_same_number_written_two_ways_is_a_duplicate():
    text = "+49 151 2345 6789\n0151 23456789\n"

    report = address_list_read(file=_file(text), channel="sms", region="DE")

    assert (report.valid, report.duplicates, report.addresses) == (1, 1, ["+4915123456789"])


def test_addresses_no_member_has_are_counted_unknown_but_kept_valid():
    MemberFactory(email="ana@example.com")
    MemberFactory(email="ben@example.com")
    text = "ana@example.com\nBEN@example.com\ncarla@example.com\n"

    report = address_list_read(file=_file(text), channel="email")

    assert (report.valid, report.unknown) == (3, 1)
    assert report.addresses == ["ana@example.com", "ben@example.com", "carla@example.com"]


def test_two_members_with_one_phone_count_it_known_once():
    MemberFactory(phone="+4915123456789")
    MemberFactory(phone="+4915123456789")

    report = address_list_read(file=_file("+4915123456789\n+4915198765432\n"), channel="sms")

    assert (report.valid, report.unknown) == (2, 1)


def test_invalid_lines_are_shown_with_their_line_and_reason():
    text = "email\nana@example.com\nnot-an-email\n"

    report = address_list_read(file=_file(text), channel="email")

    assert report.invalid_examples == [InvalidAddress(
        line=3, value="not-an-email", reason="'not-an-email' is not a valid email address")]


def test_an_empty_cell_of_the_address_column_is_invalid():
    text = "name,phone\nAna,\nBen,+4915123456789\n"

    report = address_list_read(file=_file(text), channel="sms")

    assert (report.invalid, report.valid) == (1, 1)
    assert report.invalid_examples[0].reason == "no phone"


def test_two_values_on_a_line_of_a_list_without_header_are_invalid():
    text = "+4915123456789\n+4915198765432,+4915112345678\n"

    report = address_list_read(file=_file(text), channel="sms")

    assert (report.valid, report.invalid) == (1, 1)


def test_members_are_looked_up_in_one_query_per_chunk():
    # given one address more than a chunk
    text = "".join(f"+49151{n:08d}\n" for n in range(LOOKUP_CHUNK + 1))
    MemberFactory(phone="+4915100000000")

    # when
    with CaptureQueriesContext(connection) as queries:
        report = address_list_read(file=_file(text), channel="sms")

    # then
    assert len(queries) == 2
    assert (report.valid, report.unknown) == (LOOKUP_CHUNK + 1, LOOKUP_CHUNK)


def test_the_uploaded_file_is_left_open():
    upload = _file("+4915123456789\n")

    address_list_read(file=upload, channel="sms")

    assert not upload.closed


def test_a_file_that_is_not_utf8_is_refused():
    upload = io.BytesIO("email\nmüller@example.com\n".encode("latin-1"))

    with pytest.raises(AddressListError, match="not UTF-8"):
        address_list_read(file=upload, channel="email")


def test_an_empty_file_is_refused():
    with pytest.raises(AddressListError, match="empty"):
        address_list_read(file=_file("\n \n"), channel="sms")


def test_a_header_without_addresses_is_refused():
    with pytest.raises(AddressListError, match="no phone below"):
        address_list_read(file=_file("phone\n"), channel="sms")


def test_a_file_without_the_channels_column_is_refused():
    with pytest.raises(AddressListError, match="no phone column"):
        address_list_read(file=_file("email,name\nana@example.com,Ana\n"), channel="sms")


def test_a_file_over_the_size_limit_is_refused():
    upload = io.BytesIO(b"+4915123456789," * (LIST_BYTES_MAX // 15 + 1))

    with pytest.raises(AddressListError, match="larger than 32 MB"):
        address_list_read(file=upload, channel="sms")


def test_a_channel_without_addresses_to_list_is_refused():
    with pytest.raises(AddressListError, match="not push"):
        address_list_read(file=_file("+4915123456789\n"), channel="push")


def test_a_file_of_empty_cells_is_refused_as_empty():
    with pytest.raises(AddressListError, match="empty"):
        address_list_read(file=_file('"",""\n,\n'), channel="email")
