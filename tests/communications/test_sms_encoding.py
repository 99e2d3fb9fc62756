from __future__ import annotations

from decimal import Decimal

import pytest

from communications.sms_encoding import GSM7_BASIC, GSM7_EXTENSION, sms_cost, sms_parts

CYRILLIC = "ж"  # one UTF-16 unit, not in GSM 03.38
EMOJI = "😀"  # outside the BMP: a surrogate pair, two units


def test_160_gsm_characters_are_one_segment():
    result = sms_parts("a" * 160)

    assert (result.encoding, result.segments, result.units) == ("gsm7", 1, 160)
    assert result.parts == ["a" * 160]


def test_161_gsm_characters_are_two_segments_of_153_and_8():
    result = sms_parts("a" * 161)

    assert result.segments == 2
    assert [len(part) for part in result.parts] == [153, 8]


def test_two_full_gsm_parts_are_two_segments():
    assert sms_parts("a" * 153 * 2).segments == 2


def test_one_character_past_two_full_gsm_parts_is_a_third_segment():
    result = sms_parts("a" * (153 * 2 + 1))

    assert result.segments == 3
    assert [len(part) for part in result.parts] == [153, 153, 1]


def test_extension_characters_count_two_septets():
    result = sms_parts("€[]{}\\^~|\f")

    assert (result.encoding, result.units) == ("gsm7", 20)


def test_extension_characters_fill_one_segment_at_80():
    assert sms_parts("€" * 80).segments == 1
    assert sms_parts("€" * 80 + "a").segments == 2


def test_extension_character_that_would_straddle_a_boundary_starts_the_next_part():
    # given 152 septets, then a two-septet character that does not fit in the 153rd
    text = "a" * 152 + "€" + "b" * 152

    # when
    result = sms_parts(text)

    # then 306 septets, but three parts: the euro moves whole to the second one
    assert result.units == 306
    assert result.parts == ["a" * 152, "€" + "b" * 151, "b"]
    assert result.segments == 3


def test_extension_character_that_ends_exactly_at_a_boundary_stays_in_its_part():
    result = sms_parts("a" * 151 + "€" + "b" * 10)

    assert result.parts == ["a" * 151 + "€", "b" * 10]


def test_a_single_non_gsm_character_makes_the_text_ucs2():
    result = sms_parts("a" * 100 + CYRILLIC)

    assert (result.encoding, result.units, result.segments) == ("ucs2", 101, 2)


def test_lower_case_c_cedilla_is_not_gsm():
    # GSM 03.38 has only the capital Ç; some gateways swap them, which changes the text.
    assert sms_parts("ç").encoding == "ucs2"
    assert sms_parts("Ç").encoding == "gsm7"


def test_escape_character_itself_is_not_gsm():
    assert sms_parts("\x1b").encoding == "ucs2"


def test_70_ucs2_characters_are_one_segment():
    result = sms_parts(CYRILLIC * 70)

    assert (result.encoding, result.segments, result.units) == ("ucs2", 1, 70)


def test_71_ucs2_characters_are_two_segments_of_67_and_4():
    result = sms_parts(CYRILLIC * 71)

    assert [len(part) for part in result.parts] == [67, 4]


def test_emoji_counts_two_ucs2_units():
    result = sms_parts(EMOJI * 35)

    assert (result.encoding, result.units, result.segments) == ("ucs2", 70, 1)


def test_emoji_that_would_straddle_a_boundary_starts_the_next_part():
    # given 66 units, then a surrogate pair that does not fit in the 67th
    text = CYRILLIC * 66 + EMOJI + CYRILLIC * 5

    # when
    result = sms_parts(text)

    # then the pair moves whole to the second part, never split into halves
    assert result.units == 73
    assert result.parts == [CYRILLIC * 66, EMOJI + CYRILLIC * 5]


def test_every_ucs2_part_encodes_to_at_most_134_bytes():
    text = (CYRILLIC + EMOJI) * 100

    parts = sms_parts(text).parts

    assert max(len(part.encode("utf-16-be")) for part in parts) <= 134


def test_parts_join_back_to_the_text():
    text = ("Hallo {name}, 20% Rabatt bis Montag! ~€5 " * 20) + EMOJI

    assert "".join(sms_parts(text).parts) == text


def test_the_whole_gsm_alphabet_stays_gsm7():
    result = sms_parts(GSM7_BASIC + GSM7_EXTENSION)

    assert result.encoding == "gsm7"
    assert result.units == len(GSM7_BASIC) + 2 * len(GSM7_EXTENSION)


def test_empty_text_is_no_segment():
    result = sms_parts("")

    assert (result.segments, result.units, result.parts) == (0, 0, [])


@pytest.mark.parametrize(("text", "cost"), [
    ("a" * 160, Decimal("0.075")),
    ("a" * 161, Decimal("0.150")),
    (CYRILLIC * 71, Decimal("0.150")),
    ("", Decimal("0")),
])
def test_sms_cost_is_segments_times_the_price(text, cost):
    assert sms_cost(text, price_per_segment=Decimal("0.075")) == cost
