"""What the member admin screens share: error mapping, read-only screens, identifier search."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from members.filters import phone_or_none
from members.models import (
    Member,
)

ERASED = Member.Status.ERASED


def form_errors_add(form: forms.BaseForm, error: ValidationError,
                    rename: dict[str, str] | None = None) -> None:
    """Put a service's ValidationError on the form fields it names, the rest above the form.

    A key such as `custom_attributes.size` lands on `custom_attributes`, naming the attribute;
    `rename` maps a service's key to the form's field.
    """
    if not hasattr(error, "error_dict"):
        form.add_error(None, error.messages)
        return
    for key, texts in error.message_dict.items():
        field, _, part = (rename or {}).get(key, key).partition(".")
        if field in form.fields:
            form.add_error(field, [f"{part}: {text}" for text in texts] if part else texts)
        elif key == NON_FIELD_ERRORS:
            form.add_error(None, texts)
        else:
            form.add_error(None, [f"{key}: {text}" for text in texts])


def saved_adopt(obj: models.Model, saved: models.Model) -> None:
    """The admin goes on with the form's instance (inlines, history, redirect) after
    `save_model`; make it the row the service saved."""
    for field in saved._meta.concrete_fields:
        setattr(obj, field.attname, getattr(saved, field.attname))
    obj._state.adding = False
    obj._state.db = saved._state.db


def admin_form_wrap(form: forms.Form) -> helpers.AdminForm:
    """A plain form laid out like the admin's own forms (admin/includes/fieldset.html)."""
    return helpers.AdminForm(form, [(None, {"fields": list(form.fields)})], {})


def identifier_q(term: str, prefix: str = "") -> Q | None:
    """Exact lookups the indexes serve, for a term that looks like an identifier.

    None for a term that reads as a name. Identifiers are compared as stored (lower-case email,
    E.164 phone): the admin's `=field` search would use iexact, which no index serves.
    """
    if "@" in term:
        return Q(**{f"{prefix}email": term.lower()}) | Q(**{f"{prefix}external_id": term})
    if any(char.isdigit() for char in term):
        lookup = Q(**{f"{prefix}external_id": term})
        if phone := phone_or_none(term):
            lookup |= Q(**{f"{prefix}phone": phone})
        return lookup
    return None


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by their service (the ledger, the audit log): shown, never edited."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MemberRowSearch:
    """Search rows of one member by the member's exact external id, email or phone."""

    search_fields = ["member__external_id"]
    search_help_text = "Exact external id, email or phone of the member."

    def get_search_results(self, request: HttpRequest, queryset: QuerySet,
                           search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(
            identifier_q(term, "member__") or Q(member__external_id=term)), False


# --- members --------------------------------------------------------------------------------


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}),
                             help_text="Kept in the audit log.")
