"""The import's phone check answers exactly as phonenumbers does.

`phone_normalize` reads a number in E.164 (or E.164 with spaces, as shop forms write it)
without `phonenumbers.parse`, and decides its validity with the type patterns of each number
length joined into one regular expression rather than `is_valid_number`. These tests compare
its answers with phonenumbers' own on numbers of every region and type, and on numbers one
digit away from them, most of which are invalid.
"""

from __future__ import annotations

import random

import phonenumbers
import pytest
from django.core.exceptions import ValidationError

from members.services import phone_normalize


def _phonenumbers_answer(raw: str, region: str | None = None) -> str | None:
    """What phone_normalize must return (None: what it must refuse), by phonenumbers alone."""
    try:
        number = phonenumbers.parse(raw.strip(), region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _our_answer(raw: str, region: str | None = None) -> str | None:
    try:
        return phone_normalize(raw, region=region)
    except ValidationError:
        return None


def _spaced(rng: random.Random, code: int, nsn: str) -> str:
    cut = rng.randrange(1, len(nsn)) if len(nsn) > 1 else 1
    return f"+{code} {nsn[:cut]} {nsn[cut:]}".rstrip()


def _samples() -> list[str]:
    """E.164 numbers: each example number of phonenumbers (every region, every type), each
    with a digit changed, added or dropped, and digits at random after every calling code."""
    rng = random.Random(20_240_602)
    numbers: list[tuple[int, str]] = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in phonenumbers.PhoneNumberType.values():
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            nsn = phonenumbers.national_significant_number(example)
            position = rng.randrange(len(nsn))
            numbers += [
                (example.country_code, nsn),
                (example.country_code, nsn[:position] + str(rng.randrange(10))
                 + nsn[position + 1:]),
                (example.country_code, nsn + str(rng.randrange(10))),
                (example.country_code, nsn[:-1]),
            ]
    for code in sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE):
        for length in range(2, 14):
            numbers.append((code, "".join(str(rng.randrange(10)) for _ in range(length))))
    samples = [f"+{code}{nsn}" for code, nsn in numbers]
    samples += [_spaced(rng, code, nsn) for code, nsn in numbers[::3]]
    return samples


SAMPLES = _samples()


def test_the_samples_hold_valid_and_invalid_numbers_of_every_calling_code():
    answers = [_phonenumbers_answer(raw) for raw in SAMPLES]

    assert sum(answer is not None for answer in answers) > 3_000
    assert sum(answer is None for answer in answers) > 3_000
    valid_codes = {phonenumbers.parse(answer).country_code for answer in answers if answer}
    assert len(valid_codes) > 200


def test_e164_numbers_are_judged_as_phonenumbers_judges_them():
    different = [(raw, _our_answer(raw), _phonenumbers_answer(raw)) for raw in SAMPLES
                 if _our_answer(raw) != _phonenumbers_answer(raw)]

    assert different == []


@pytest.mark.parametrize("region", ["DE", "US", "GB", None])
def test_the_default_region_changes_nothing_for_a_number_with_its_country_code(region):
    sample = SAMPLES[::7]

    different = [raw for raw in sample
                 if _our_answer(raw, region) != _phonenumbers_answer(raw, region)]

    assert different == []


@pytest.mark.parametrize(("raw", "region"), [
    ("+4915112345678", None),  # German mobile
    ("+49 151 12345678", None),  # the same, typed with spaces
    ("+1 202 555 0143", None),  # a calling code of 25 regions
    ("+14165550143", None),  # Canada, after the United States in that list
    ("+447911123456", None),  # United Kingdom mobile: the Crown dependencies share +44
    ("+441481256789", None),  # Guernsey
    ("+390612345678", None),  # Italy: the leading zero is part of the number
    ("+49015112345678", None),  # a national prefix after the country code
    ("+78001234567", None),  # Russia and Kazakhstan share +7
    ("+80012345678", None),  # a calling code of no country (freephone)
    ("+19995551234", None),  # no such area code
    ("+4915", None),
    ("0151 12345678", "DE"),
    ("+49  151 12345678", None),  # two spaces: not the shop form, parse reads it
])
def test_numbers_the_fast_path_tells_apart_get_phonenumbers_answer(raw, region):
    assert _our_answer(raw, region) == _phonenumbers_answer(raw, region)
