"""Member use cases that change state."""

from __future__ import annotations

import phonenumbers
from django.core.exceptions import ValidationError


def phone_normalize(raw: str, *, region: str | None = None) -> str:
    """A phone number as typed (`0151 2345 6789`, `+49 151…`) in E.164, or ValidationError.

    `region` is the ISO country assumed for numbers written without a country code.
    """
    raw = raw.strip()
    if not raw:
        return ""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise ValidationError({"phone": f"{raw!r} is not a phone number: {exc}"}) from exc
    if not phonenumbers.is_valid_number(number):
        raise ValidationError({"phone": f"{raw!r} is not a valid phone number"})
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
