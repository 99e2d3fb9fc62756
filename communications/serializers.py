from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from communications.models import Mailing, Message
from communications.selectors import mailing_counts_from_annotations, mailing_status_counts

# Messages per status, one field per status of the state machine.
MailingStatusCountsSerializer = type("MailingStatusCountsSerializer", (serializers.Serializer,), {
    "total": serializers.IntegerField(),
    **{status: serializers.IntegerField() for status in Message.Status.values},
    "skipped_by_reason": serializers.DictField(child=serializers.IntegerField()),
})


class MailingSerializer(serializers.ModelSerializer):
    channel = serializers.CharField(read_only=True, allow_null=True)
    status_counts = serializers.SerializerMethodField()

    class Meta:
        model = Mailing
        fields = [
            "id", "name", "state", "channel", "campaign", "target_group", "template", "gateway",
            "scheduled_at", "priority", "defer_capped", "message_lifetime", "started_at",
            "completed_at", "failure_reason", "created_at", "status_counts",
        ]
        read_only_fields = fields

    @extend_schema_field(MailingStatusCountsSerializer)
    def get_status_counts(self, mailing: Mailing) -> dict[str, Any]:
        if hasattr(mailing, "count_queued"):
            return mailing_counts_from_annotations(mailing)
        return mailing_status_counts(mailing=mailing)


class MailingScheduleSerializer(serializers.Serializer):
    scheduled_at = serializers.DateTimeField(required=False)
