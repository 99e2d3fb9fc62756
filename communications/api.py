from __future__ import annotations

import django_filters
from rest_framework import viewsets

from communications.models import Mailing
from communications.selectors import mailings_with_counts
from communications.serializers import MailingSerializer


class MailingFilter(django_filters.FilterSet):
    class Meta:
        model = Mailing
        fields = ["state", "campaign", "target_group", "gateway"]


class MailingViewSet(viewsets.ReadOnlyModelViewSet):
    """Mailings with their message counters per status (read-only for now)."""

    serializer_class = MailingSerializer
    filterset_class = MailingFilter

    def get_queryset(self):
        return mailings_with_counts()
