"""The member's inbox in the app, under /api/v1/me/messages/: what they received on every
channel, newest first, and read receipts for app messages (communications.selectors.inbox,
communications.services.inbox).

Only the signed-in member's own received messages are reachable: any other id is a 404.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any

import django_filters
from django.db.models import QuerySet
from django.urls import reverse
from django_filters.utils import translate_validation
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from communications.models import Message
from communications.selectors.inbox import (
    TEXT_SENT,
    TEXT_TEMPLATE,
    UNREAD,
    InboxPosition,
    inbox_entries,
    inbox_page,
)
from communications.services.inbox import MessageReadRefused, member_message_read
from config.api import FlatRepresentation
from members.api_me import ErrorSerializer, MemberApiView
from members.authentication import request_member
from members.models import Channel


class InboxPagination(CursorPagination):
    """Newest first, in the order of message_inbox_idx; a cursor stays valid as new messages
    arrive.

    Keyset pages: a cursor holds the (sent_at, id) of the message its page continues from, and
    the page is `inbox_page`'s one statement from there, so no offset is ever needed (the pair
    is unique) and no queryset is compiled per call. The cursors look like DRF's own."""

    ordering = ("-sent_at", "-id")
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100

    def paginate_inbox(self, request: Request,
                       fetch: Callable[..., list[Message]]) -> list[Message]:
        """The page the request's cursor asks for; `fetch(older_than=, newer_than=, limit=)`
        reads it (inbox_page with the member and filters bound)."""
        self.request = request
        self.base_url = request.build_absolute_uri()
        self.page_size = self.get_page_size(request)
        cursor = self.decode_cursor(request)
        position = _position_decode(cursor.position) if cursor and cursor.position else None
        self._next = self._previous = None
        if cursor is not None and cursor.reverse and position is not None:
            rows = fetch(newer_than=position, limit=self.page_size + 1)
            if rows:
                page = rows[:self.page_size][::-1]
                self._next = Cursor(offset=0, reverse=False, position=_position_encode(page[-1]))
                if len(rows) > self.page_size:
                    self._previous = Cursor(offset=0, reverse=True,
                                            position=_position_encode(page[0]))
                return page
            position = None  # everything newer is gone since: start again from the newest
        rows = fetch(older_than=position, limit=self.page_size + 1)
        page = rows[:self.page_size]
        if len(rows) > self.page_size:
            self._next = Cursor(offset=0, reverse=False, position=_position_encode(page[-1]))
        if position is not None and page:
            self._previous = Cursor(offset=0, reverse=True, position=_position_encode(page[0]))
        return page

    def get_next_link(self) -> str | None:
        return self.encode_cursor(self._next) if self._next else None

    def get_previous_link(self) -> str | None:
        return self.encode_cursor(self._previous) if self._previous else None


def _position_encode(message: Message) -> str:
    return f"{message.sent_at.isoformat()}|{message.pk}"


def _position_decode(position: str) -> InboxPosition:
    sent_at, _, pk = position.partition("|")
    try:
        return InboxPosition(sent_at=datetime.fromisoformat(sent_at), id=int(pk))
    except ValueError:
        raise NotFound(InboxPagination.invalid_cursor_message) from None


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


# A page of entries is represented field by field (config.api.FlatRepresentation).
_ENTRY_REPRESENTATION = FlatRepresentation(InboxMessageSerializer())


class MessageReadSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    read = serializers.BooleanField()
    read_at = serializers.DateTimeField(allow_null=True)


class MessageListView(MemberApiView, generics.ListAPIView):
    pagination_class = InboxPagination
    filterset_class = InboxFilter
    serializer_class = InboxMessageSerializer

    def get_queryset(self) -> QuerySet[Message]:
        # Read by the schema generator only: `list` pages with inbox_page.
        return Message.objects.none()

    @extend_schema(
        parameters=[OpenApiParameter("unread", bool, description=InboxFilter.UNREAD_HELP)],
        description="The messages the member received on every channel, newest first (cursor "
                    "pages). Test sends and sign-in codes are not listed.")
    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        return self.list(request)

    def list(self, request: Request, *args: object, **kwargs: object) -> Response:
        member = request_member(request)
        filters = inbox_filters(request)
        page = self.paginator.paginate_inbox(
            request, functools.partial(inbox_page, member_id=member.pk, **filters))
        entries = inbox_entries(
            page, member=member,
            unsubscribe_url=request.build_absolute_uri(reverse("account:preferences")))
        return self.get_paginated_response(
            [_ENTRY_REPRESENTATION(entry) for entry in entries])


def inbox_filters(request: Request) -> dict[str, Any]:
    """The request's inbox filters (inbox_page's keywords), checked by InboxFilter's form; a
    bad value is a 400 naming it, as DjangoFilterBackend answers."""
    if not InboxFilter.base_filters.keys() & request.query_params.keys():
        return {}
    filterset = InboxFilter(request.query_params, queryset=Message.objects.none(),
                            request=request)
    if not filterset.is_valid():
        raise translate_validation(filterset.errors)
    chosen = filterset.form.cleaned_data
    return {"channel": chosen.get("channel") or None, "unread": chosen.get("unread")}


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
