"""Member profiles: cleaning what the loyalty engine, imports and the API send, and upserts.

`member_fields_clean` is the one place a profile value is validated; the API, the CSV import
and the admin all call it, so a phone or a custom attribute means the same thing everywhere.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator, validate_email
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from members import hooks
from members.models import CustomAttribute, Member
from members.services.phones import phone_cached, phone_e164

PROFILE_FIELDS = (
    "first_name", "last_name", "email", "phone", "birth_date", "gender", "language", "timezone",
    "city", "region", "country", "latitude", "longitude", "registered_at",
    "registration_source", "status", "custom_attributes",
)
_TEXT_LIMITS = {
    "first_name": 100, "last_name": 100, "city": 100, "region": 100,
    "registration_source": 64,
}
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_TIMEZONES = frozenset(zoneinfo.available_timezones())
_GENDERS = ("", None, *Member.Gender.values)


class _EmailValidator(EmailValidator):
    """Django's email check with the verdict on each domain remembered: a file of a million
    members has a few thousand domains, and the domain pattern is most of the check's cost."""

    # Django's own pattern, compiled now rather than behind a lazy object on every use.
    user_regex = re.compile(EmailValidator.user_regex.pattern, EmailValidator.user_regex.flags)

    def validate_domain_part(self, domain_part: str) -> bool:
        return _domain_valid(domain_part)


@lru_cache(maxsize=4096)
def _domain_valid(domain_part: str) -> bool:
    return EmailValidator.validate_domain_part(validate_email, domain_part)


_validate_email = _EmailValidator()


def email_normalize(raw: str) -> str:
    """An email address trimmed and lower-cased (how suppressions and lookups compare it)."""
    email = raw.strip().lower()
    if not email:
        return ""
    try:
        _validate_email(email)
    except ValidationError as exc:
        raise ValidationError({"email": f"{raw!r} is not a valid email address"}) from exc
    return email


def custom_attributes_declared() -> dict[str, CustomAttribute]:
    return {attribute.key: attribute for attribute in CustomAttribute.objects.all()}


def custom_attribute_clean(attribute: CustomAttribute, value: Any) -> Any:
    """One custom attribute value typed as declared (None: remove it), or ValueError."""
    kind = attribute.type
    if value is None or value == "":
        return None
    if kind == CustomAttribute.Type.STRING:
        if not isinstance(value, str):
            raise ValueError("must be text")
        return value
    if kind == CustomAttribute.Type.INTEGER:
        if isinstance(value, bool):
            raise ValueError("must be a whole number")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            return int(value)
        raise ValueError("must be a whole number")
    if kind == CustomAttribute.Type.NUMBER:
        if isinstance(value, bool):
            raise ValueError("must be a number")
        if isinstance(value, int | float):
            return value
        try:
            return float(Decimal(str(value).strip()))
        except InvalidOperation as exc:
            raise ValueError("must be a number") from exc
    if kind == CustomAttribute.Type.BOOLEAN:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in {"true", "1", "yes"}:
            return True
        if text in {"false", "0", "no"}:
            return False
        raise ValueError("must be true or false")
    if kind == CustomAttribute.Type.DATE:
        if isinstance(value, str) and (day := parse_date(value.strip())):
            return day.isoformat()
        raise ValueError("must be a date (YYYY-MM-DD)")
    # choice
    if value not in attribute.choices:
        raise ValueError(f"must be one of {', '.join(map(str, attribute.choices))}")
    return value


def custom_attributes_validate(values: Any, *,
                               declared: Mapping[str, CustomAttribute] | None = None
                               ) -> dict[str, Any]:
    """Typed custom attribute values; an unknown key or a wrong type names the key.

    A null or empty value removes the key.
    """
    if not isinstance(values, Mapping):
        raise ValidationError({"custom_attributes": "must be an object of key: value"})
    declared = custom_attributes_declared() if declared is None else declared
    cleaned: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for key, value in values.items():
        attribute = declared.get(key)
        if attribute is None:
            errors[f"custom_attributes.{key}"] = (
                f"unknown attribute; declared: {', '.join(sorted(declared)) or 'none'}")
            continue
        try:
            cleaned[key] = custom_attribute_clean(attribute, value)
        except ValueError as exc:
            errors[f"custom_attributes.{key}"] = str(exc)
    if errors:
        raise ValidationError(errors)
    return cleaned


def _parse_day(value: Any) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str) and (day := parse_date(value.strip())):
        return day
    raise ValueError("must be a date (YYYY-MM-DD)")


def moment_parse(value: Any) -> dt.datetime:
    """An ISO date or date-time; naive means UTC. ValueError names what is wrong."""
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, str):
        text = value.strip()
        moment = parse_datetime(text)
        if moment is None and (day := parse_date(text)):
            moment = dt.datetime.combine(day, dt.time.min)
        if moment is None:
            raise ValueError("must be an ISO date or date-time")
    else:
        raise ValueError("must be an ISO date or date-time")
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, dt.UTC)


def _parse_coordinate(value: Any, limit: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError("must be a number") from exc
    if not -limit <= number <= limit:
        raise ValueError(f"must be between -{limit:g} and {limit:g}")
    return number


def _text_rule(limit: int) -> Callable[[Any], str]:
    def clean(value: Any) -> str:
        text = "" if value is None else str(value).strip()
        if len(text) > limit:
            raise ValueError(f"at most {limit} characters")
        return text
    return clean


def _text_or_none(value: Any, what: str) -> None:
    # JSON bodies can hold a list or a number where text belongs: a field error, not a crash.
    if value is not None and not isinstance(value, str):
        raise ValueError(f"must be {what}")


def _email_clean(value: Any) -> str:
    _text_or_none(value, "an email address")
    return email_normalize(value or "")


def _birth_date_clean(value: Any) -> dt.date | None:
    day = None if value in (None, "") else _parse_day(value)
    if day and day > timezone.now().date():
        raise ValueError("is in the future")
    return day


def _registered_at_clean(value: Any) -> dt.datetime | None:
    return None if value in (None, "") else moment_parse(value)


def _gender_clean(value: Any) -> str:
    _text_or_none(value, f"one of {', '.join(Member.Gender.values)} or empty")
    if value not in _GENDERS:
        raise ValueError(f"must be one of {', '.join(Member.Gender.values)} or empty")
    return value or ""


def _language_clean(value: Any) -> str:
    if not isinstance(value, str) or not _LANGUAGE.match(value.strip()):
        raise ValueError("must be a language code such as en or pt-BR")
    return value.strip()


def _timezone_clean(value: Any) -> str:
    if not isinstance(value, str) or value not in _TIMEZONES:
        raise ValueError("must be an IANA time zone such as Europe/Berlin")
    return value


def _country_clean(value: Any) -> str:
    _text_or_none(value, "a two-letter ISO country code such as DE")
    text = (value or "").strip().upper()
    if text and not _COUNTRY.match(text):
        raise ValueError("must be a two-letter ISO country code such as DE")
    return text


def _latitude_clean(value: Any) -> float | None:
    return None if value in (None, "") else _parse_coordinate(value, 90)


def _longitude_clean(value: Any) -> float | None:
    return None if value in (None, "") else _parse_coordinate(value, 180)


def _status_clean(value: Any) -> str:
    if (not isinstance(value, str) or value not in Member.Status.values
            or value == Member.Status.ERASED):
        raise ValueError("must be active or blocked (erasure has its own request)")
    return value


# The rule of each profile field but `phone` (see `phone_clean`) and `custom_attributes`
# (`custom_attributes_validate`): the value cleaned, or ValueError / ValidationError naming
# what is wrong. `member_fields_clean` applies them; the CSV import picks those of its columns
# once and applies them to every row.
FIELD_CLEANERS: dict[str, Callable[[Any], Any]] = {
    **{key: _text_rule(limit) for key, limit in _TEXT_LIMITS.items()},
    "email": _email_clean, "birth_date": _birth_date_clean,
    "registered_at": _registered_at_clean, "gender": _gender_clean,
    "language": _language_clean, "timezone": _timezone_clean, "country": _country_clean,
    "latitude": _latitude_clean, "longitude": _longitude_clean, "status": _status_clean,
}


def phone_clean(value: Any, *, region: Any) -> str:
    """The phone field; `region` is the data's country as given (or the default region)."""
    _text_or_none(value, "a phone number as text")
    raw = (value or "").strip()
    # The cache is for the numbers `parse` reads: one in E.164 costs less than a cache miss.
    return phone_e164(raw) or phone_cached(
        raw, region.upper() if isinstance(region, str) else None)


def location_incomplete(cleaned: Mapping[str, Any]) -> bool:
    """Whether the cleaned fields have one coordinate of a location without the other."""
    return ("latitude" in cleaned) != ("longitude" in cleaned) or (
        (cleaned.get("latitude") is None) != (cleaned.get("longitude") is None))


def member_fields_clean(data: Mapping[str, Any], *,
                        declared: Mapping[str, CustomAttribute] | None = None,
                        default_region: str | None = None) -> dict[str, Any]:
    """Validate and normalize the profile fields present in `data`.

    Returns only the keys given (a partial update stays partial); raises ValidationError with
    every bad field named. Unknown keys are errors, not silently dropped.
    """
    errors: dict[str, Any] = {}
    cleaned: dict[str, Any] = {}
    for key in data:
        if key not in PROFILE_FIELDS:
            errors[key] = "unknown field"
    for key, value in data.items():
        if key not in PROFILE_FIELDS:
            continue
        try:
            if key == "phone":
                cleaned[key] = phone_clean(
                    value, region=data.get("country") or default_region or None)
            elif key == "custom_attributes":
                cleaned[key] = custom_attributes_validate(value, declared=declared)
            else:
                cleaned[key] = FIELD_CLEANERS[key](value)
        except ValidationError as exc:
            errors.update(exc.message_dict)
        except ValueError as exc:
            errors[key] = str(exc)
    if location_incomplete(cleaned):
        errors.setdefault("latitude", "latitude and longitude go together")
    if errors:
        raise ValidationError(errors)
    return cleaned


@transaction.atomic
def member_upsert(*, external_id: str, data: Mapping[str, Any],
                  declared: Mapping[str, CustomAttribute] | None = None
                  ) -> tuple[Member, bool]:
    """Create or update the member with this external id; returns (member, created).

    Custom attributes merge into the stored ones (a null value removes a key). A changed
    email or phone loses its verification: the new address has not been confirmed.
    """
    external_id = (external_id or "").strip()
    if not external_id:
        raise ValidationError({"external_id": "is required"})
    if len(external_id) > 64:
        raise ValidationError({"external_id": "at most 64 characters"})
    cleaned = member_fields_clean(data, declared=declared)
    member = Member.objects.select_for_update().filter(external_id=external_id).first()
    created = member is None
    if member is None:
        member = Member(external_id=external_id)
    elif member.status == Member.Status.ERASED:
        raise ValidationError({"external_id": "this member was erased and cannot be changed"})
    attributes = cleaned.pop("custom_attributes", None)
    if attributes is not None:
        merged = {**member.custom_attributes, **attributes}
        member.custom_attributes = {k: v for k, v in merged.items() if v is not None}
    if "email" in cleaned and cleaned["email"] != member.email:
        member.email_verified_at = None
    if "phone" in cleaned and cleaned["phone"] != member.phone:
        member.phone_verified_at = None
    for key, value in cleaned.items():
        setattr(member, key, value)
    if created and member.registered_at is None:
        member.registered_at = timezone.now()
    member.save()
    hooks.members_changed([member.pk])
    return member, created
