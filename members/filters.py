"""API filters for members and suppressions.

Identifiers are compared the way they are stored (lower-case email, E.164 phone) with an exact
lookup: `iexact` would compare UPPER(column), which no index serves on a million members.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import django_filters
from django import forms
from django.core.exceptions import ValidationError

from members.models import Member, Suppression
from members.services import address_normalize, email_normalize, phone_normalize


def phone_or_none(text: str) -> str | None:
    """`text` in E.164 when it reads as an international phone number, else None."""
    try:
        return phone_normalize(text) or None
    except ValidationError:
        return None


class MemberFilterForm(forms.Form):
    def _normalized(self, field: str, normalize: Callable[[str], str]) -> str:
        try:
            return normalize(self.cleaned_data.get(field) or "")
        except ValidationError as exc:
            raise forms.ValidationError(exc.message_dict.get(field, exc.messages)) from exc

    def clean_email(self) -> str:
        return self._normalized("email", email_normalize)

    def clean_phone(self) -> str:
        return self._normalized("phone", phone_normalize)


class MemberFilter(django_filters.FilterSet):
    external_id = django_filters.CharFilter()
    email = django_filters.CharFilter(help_text="Exact address, any letter case.")
    phone = django_filters.CharFilter(help_text="Exact number in international form.")
    status = django_filters.ChoiceFilter(choices=Member.Status.choices)
    updated_since = django_filters.IsoDateTimeFilter(
        field_name="updated_at", lookup_expr="gte",
        help_text="Members changed at or after this ISO 8601 time.")

    class Meta:
        model = Member
        form = MemberFilterForm
        fields = ["external_id", "email", "phone", "status", "updated_since"]


class SuppressionFilterForm(forms.Form):
    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        address = (cleaned.get("address") or "").strip()
        if not address:
            return cleaned
        channel = cleaned.get("channel")
        if channel:
            try:
                cleaned["address"] = address_normalize(channel=channel, address=address)
            except ValidationError as exc:
                self.add_error("channel" if "channel" in exc.message_dict else "address",
                               exc.messages)
        else:
            cleaned["address"] = phone_or_none(address) or address.lower()
        return cleaned


class SuppressionFilter(django_filters.FilterSet):
    address = django_filters.CharFilter(help_text="Exact email address or phone number.")

    class Meta:
        model = Suppression
        form = SuppressionFilterForm
        fields = ["channel", "reason", "address"]
