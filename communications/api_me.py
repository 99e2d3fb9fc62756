"""The member's inbox in the app, under /api/v1/me/messages/: what they received on every
channel, newest first, and read receipts for app messages (communications.selectors.inbox,
communications.services.inbox).

Only the signed-in member's own received messages are reachable: any other id is a 404.
"""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from communications.models import Message
from communications.selectors.inbox import (
    TEXT_SENT,
    TEXT_TEMPLATE,
    UNREAD,
    inbox_entries,
    member_inbox,
)
from communications.services.inbox import MessageReadRefused, member_message_read
from members.api_me import ErrorSerializer, MemberApiView
from members.authentication import request_member
from members.models import Channel


class InboxPagination(CursorPagination):
    """Newest first, in the order of message_inbox_idx; a cursor stays valid as new messages
    arrive."""

    ordering = ("-sent_at", "-id")
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100


class InboxFilter(django_filters.FilterSet):
    channel = django_filters.ChoiceFilter(choices=Channel.choices)
    UNREAD_HELP = "true: only app messages not read yet; false: everything else."
    unread = django_filters.BooleanFilter(method="filter_unread", help_text=UNREAD_HELP)

    class Meta:
        model = Message
        fields = ["channel", "unread"]

    @extend_schema_field(OpenApiTypes.BOOL)
    def filter_unread(self, queryset: QuerySet[Message], name: str,
                      value: bool | None) -> QuerySet[Message]:
        if value is None:
            return queryset
        return queryset.filter(UNREAD) if value else queryset.exclude(UNREAD)


class InboxMessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    channel = serializers.ChoiceField(Channel.choices)
    subject = serializers.CharField(help_text="The subject, or the title of an app message; "
                                              "empty for SMS and messengers.")
    body = serializers.CharField(help_text="The text (of an email: its plain-text part).")
    image_url = serializers.CharField(help_text="App and Viber messages: the image shown.")
    link_url = serializers.CharField(help_text="App and Viber messages: what a tap opens.")
    sent_at = serializers.DateTimeField()
    read = serializers.BooleanField(allow_null=True,
                                    help_text="App messages: read or not; null for the other "
                                              "channels, which keep no read state.")
    read_at = serializers.DateTimeField(allow_null=True)
    text_source = serializers.ChoiceField(
        [TEXT_SENT, TEXT_TEMPLATE],
        help_text="sent: the text as it was sent; template: rendered again from the "
                  "mailing's template with the member's current profile (the text sent, "
                  "unless either changed since).")


class MessageReadSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    read = serializers.BooleanField()
    read_at = serializers.DateTimeField(allow_null=True)


class MessageListView(MemberApiView, generics.ListAPIView):
    pagination_class = InboxPagination
    filterset_class = InboxFilter
    serializer_class = InboxMessageSerializer

    def get_queryset(self) -> QuerySet[Message]:
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no member
            return Message.objects.none()
        return member_inbox(member_id=request_member(self.request).pk)

    @extend_schema(
        parameters=[OpenApiParameter("unread", bool, description=InboxFilter.UNREAD_HELP)],
        description="The messages the member received on every channel, newest first (cursor "
                    "pages). Test sends and sign-in codes are not listed.")
    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        return self.list(request)

    def list(self, request: Request, *args: object, **kwargs: object) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        entries = inbox_entries(
            page, member=request_member(request),
            unsubscribe_url=request.build_absolute_uri(reverse("account:preferences")))
        return self.get_paginated_response(InboxMessageSerializer(entries, many=True).data)


class MessageReadView(MemberApiView):
    @extend_schema(
        request=None,
        responses={200: MessageReadSerializer, 400: ErrorSerializer, 404: ErrorSerializer},
        description="The app shows the member this app message (its push data carries "
                    "engage_message_id): it is marked read, counted as opened in the "
                    "mailing's report. Repeating it changes nothing. 400 `not_an_app_message` "
                    "for another channel's message, 404 for any id not in the member's inbox.")
    def post(self, request: Request, message_id: int) -> Response:
        try:
            message = member_message_read(member_id=request_member(request).pk,
                                          message_id=message_id)
        except Message.DoesNotExist:
            return Response({"code": "not_found", "detail": "no such message in your inbox"},
                            status=status.HTTP_404_NOT_FOUND)
        except MessageReadRefused as refused:
            return Response({"code": refused.code, "detail": refused.message},
                            status=status.HTTP_400_BAD_REQUEST)
        return Response({"id": message.pk, "read": True, "read_at": message.opened_at})
