"""CSV export of members with their current marketing consents, in the columns the import reads.

An export imported again changes nothing: the same profile columns, one `attr.<key>` column per
declared custom attribute and one `consent.<channel>` column per channel (granted, withdrawn, or
empty when never given). Members are read with a server-side cursor in chunks and their
consents pivoted by subqueries in the same statement, so memory stays flat at any size.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.http import content_disposition_header

from members.imports import ATTRIBUTE_PREFIX, CONSENT_PREFIX, IMPORT_PROFILE_FIELDS
from members.models import AuditEntry, Channel, Consent, CustomAttribute, Member, Purpose
from members.services.audit import audit_record
from members.services.profiles import custom_attributes_declared

CHUNK_SIZE = 2_000


class _Line:
    """The file-like object csv.writer wants: `write` hands the line back instead."""

    def write(self, line: str) -> str:
        return line


def export_columns(declared: Mapping[str, CustomAttribute]) -> list[str]:
    return ["external_id", *IMPORT_PROFILE_FIELDS,
            *(ATTRIBUTE_PREFIX + key for key in sorted(declared)),
            *(CONSENT_PREFIX + channel for channel in Channel.values)]


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):  # as the import reads a yes / no attribute
        return "true" if value else "false"
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def members_export_csv(*, queryset: QuerySet[Member] | None = None,
                       by: AbstractBaseUser | None = None) -> Iterator[str]:
    """The members of `queryset` (all when None) as CSV lines, the header first.

    Erased members are left out: they hold nothing to export, and the import refuses them.
    The export is recorded in the audit log when this is called, with no personal data.
    """
    declared = custom_attributes_declared()
    members = (Member.objects.all() if queryset is None else queryset).exclude(
        status=Member.Status.ERASED)
    consents = {
        f"consent_{channel}": Subquery(
            Consent.objects.filter(member=OuterRef("pk"), channel=channel,
                                   purpose=Purpose.MARKETING, category=None)
            .values("state")[:1])
        for channel in Channel.values
    }
    rows = (members.order_by("pk").annotate(**consents)
            .values_list("external_id", *IMPORT_PROFILE_FIELDS, "custom_attributes", *consents)
            .iterator(chunk_size=CHUNK_SIZE))
    columns = export_columns(declared)
    audit_record(action=AuditEntry.Action.MEMBER_EXPORT, actor=by, detail={
        "scope": "all" if queryset is None else "selection", "columns": columns,
    })
    return _lines(columns, rows, sorted(declared))


def _lines(columns: list[str], rows: Iterator[tuple[Any, ...]],
           keys: list[str]) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow(columns)
    profile = 1 + len(IMPORT_PROFILE_FIELDS)
    for row in rows:
        attributes = row[profile] or {}
        yield writer.writerow([
            *map(_cell, row[:profile]),
            *(_cell(attributes.get(key)) for key in keys),
            *map(_cell, row[profile + 1:]),
        ])


def members_export_response(*, queryset: QuerySet[Member] | None = None,
                            by: AbstractBaseUser | None = None,
                            filename: str | None = None) -> StreamingHttpResponse:
    """The export as a streamed CSV download (see `members_export_csv`)."""
    filename = filename or f"members-{timezone.now():%Y%m%d-%H%M%S}.csv"
    response = StreamingHttpResponse(members_export_csv(queryset=queryset, by=by),
                                     content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return response
