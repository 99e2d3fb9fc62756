"""Staff API for the CSV import and export of members (columns: members/imports/__init__.py).

POST members/import/ (multipart: file, dry_run, skip_bad_rows) answers 200 with the report, or
400 with every bad row when bad rows stopped the import. GET members/export.csv streams the
export.
"""

from __future__ import annotations

import json
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from members.exports import members_export_response
from members.imports import members_import


class MemberImportSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="The CSV file, UTF-8 with a header row.")
    dry_run = serializers.BooleanField(default=False,
                                       help_text="Check every row and count; import nothing.")
    skip_bad_rows = serializers.BooleanField(
        default=False, help_text="Import the good rows; otherwise any bad row stops the import.")


class BadRowSerializer(serializers.Serializer):
    line = serializers.IntegerField(help_text="Line in the file; the header is line 1.")
    column = serializers.CharField()
    reason = serializers.CharField()


class BadRowsSerializer(serializers.Serializer):
    bad_rows = BadRowSerializer(many=True)


class ImportReportSerializer(serializers.Serializer):
    rows = serializers.IntegerField()
    created = serializers.IntegerField(help_text="In a dry run: would be created.")
    updated = serializers.IntegerField(help_text="In a dry run: would be updated.")
    skipped = serializers.IntegerField(help_text="Bad rows left out (skip_bad_rows).")
    consent_events = serializers.IntegerField()
    dry_run = serializers.BooleanField()
    imported = serializers.BooleanField()
    seconds = serializers.FloatField()
    bad_rows = BadRowSerializer(many=True)


class MemberImportView(APIView):
    """Import members with their consents from a CSV file, upserted by external_id."""

    # An import creates members and changes existing ones.
    staff_permissions = {"POST": ["members.add_member", "members.change_member"]}
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request={"multipart/form-data": MemberImportSerializer},
        responses={200: ImportReportSerializer,
                   400: OpenApiResponse(BadRowsSerializer, description=(
                       "Every bad row (line, column, reason); nothing was imported. A missing "
                       "file or option answers with the field instead."))},
    )
    def post(self, request: Request) -> Response:
        payload = MemberImportSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        options = payload.validated_data
        report = members_import(source=options["file"], dry_run=options["dry_run"],
                                skip_bad_rows=options["skip_bad_rows"], by=request.user)
        data = report.as_dict()
        if report.bad_rows and not options["skip_bad_rows"]:
            return Response({"bad_rows": data["bad_rows"]}, status=status.HTTP_400_BAD_REQUEST)
        return Response(data)


class CSVRenderer(BaseRenderer):
    """Lets a client ask for text/csv; the export itself is a streamed Django response, so this
    only ever renders an error (as JSON text)."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None,
               renderer_context: dict[str, Any] | None = None) -> bytes:
        return json.dumps(data).encode()


class MemberExportView(APIView):
    """Every member (erased ones aside) with their current marketing consent per channel, as
    CSV in the columns the import reads. Streamed."""

    staff_permissions = {"GET": ["members.view_member"]}
    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR})
    def get(self, request: Request) -> Any:
        return members_export_response(by=request.user)
