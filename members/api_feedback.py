"""Feedback through the API: the member's conversations with support (/api/v1/me/feedback/,
the mobile app) and support's side of them (/api/v1/feedback/, staff only).

The member's endpoints look threads up within the member's own rows, so another member's
thread or attachment is a 404. A new thread or a reply with an attachment is sent as
multipart/form-data. Refusals answer {"code", "detail"} with a stable code (see
members/services/feedback.py): 409 for thread_closed and status_change, 400 for the rest.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import generics, serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.pagination import NewestFirstCursorPagination
from members.api_me import MemberApiView
from members.authentication import request_member
from members.feedback_selectors import (
    feedback_attachment_message,
    feedback_thread_with_messages,
    feedback_threads_listed,
    member_feedback_attachment,
    member_feedback_thread,
    member_feedback_threads,
)
from members.feedback_views import feedback_attachment_response
from members.models import FeedbackMessage, FeedbackThread
from members.services.feedback import (
    FeedbackRefused,
    feedback_answer,
    feedback_member_reply,
    feedback_request_size_check,
    feedback_status_change,
    feedback_thread_create,
)

CONFLICTS = {"thread_closed", "status_change"}
MEMBER_ATTACHMENT_URL = "v1:me-feedback-attachment"
STAFF_ATTACHMENT_URL = "v1:feedback-attachment"

FeedbackErrorSerializer = inline_serializer("FeedbackError", {
    "code": serializers.CharField(help_text="Stable: text_required, text_too_long, "
                                            "topic_unknown, attachment_too_large, "
                                            "attachment_type, thread_closed, status_change, "
                                            "not_found."),
    "detail": serializers.CharField(),
})
ATTACHMENT_RESPONSES: dict[Any, Any] = {
    (200, "image/jpeg"): OpenApiTypes.BINARY,
    (200, "image/png"): OpenApiTypes.BINARY,
    (200, "application/pdf"): OpenApiTypes.BINARY,
    404: OpenApiResponse(description="No such attachment in the threads the caller may see."),
}
MESSAGE_BODY = ("multipart/form-data for an attachment; application/json or a form for text "
                "only.")
MESSAGE_ERRORS = {400: FeedbackErrorSerializer, 404: FeedbackErrorSerializer,
                  409: FeedbackErrorSerializer}


def refusal_response(refused: FeedbackRefused) -> Response:
    return Response({"code": refused.code, "detail": refused.message},
                    status=status.HTTP_409_CONFLICT if refused.code in CONFLICTS
                    else status.HTTP_400_BAD_REQUEST)


def _not_found(what: str) -> Response:
    return Response({"code": "not_found", "detail": f"no such {what}"},
                    status=status.HTTP_404_NOT_FOUND)


# --- serializers -------------------------------------------------------------------------------


class FeedbackAttachmentSerializer(serializers.Serializer):
    name = serializers.CharField(source="attachment_name")
    content_type = serializers.CharField(source="attachment_type")
    size = serializers.IntegerField(source="attachment_size")
    url = serializers.SerializerMethodField(help_text="Where to download it, with the same "
                                                      "credentials.")

    def get_url(self, message: FeedbackMessage) -> str:
        return reverse(self.context["attachment_url"], args=[message.thread_id, message.pk])


class FeedbackMessageSerializer(serializers.ModelSerializer):
    attachment = serializers.SerializerMethodField()

    class Meta:
        model = FeedbackMessage
        fields = ["id", "sender", "text", "created_at", "attachment"]

    @extend_schema_field(FeedbackAttachmentSerializer(allow_null=True))
    def get_attachment(self, message: FeedbackMessage) -> dict[str, Any] | None:
        if not message.attachment:
            return None
        return FeedbackAttachmentSerializer(message, context=self.context).data


class StaffFeedbackMessageSerializer(FeedbackMessageSerializer):
    author = serializers.StringRelatedField(help_text="The agent who answered.")

    class Meta(FeedbackMessageSerializer.Meta):
        fields = [*FeedbackMessageSerializer.Meta.fields, "author"]


class FeedbackThreadSerializer(serializers.ModelSerializer):
    preview = serializers.CharField(read_only=True, help_text="The start of the first message.")
    message_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = FeedbackThread
        fields = ["id", "topic", "status", "created_at", "last_message_at", "preview",
                  "message_count"]


class FeedbackThreadDetailSerializer(serializers.ModelSerializer):
    messages = FeedbackMessageSerializer(many=True, read_only=True)

    class Meta:
        model = FeedbackThread
        fields = ["id", "topic", "status", "created_at", "last_message_at", "messages"]


class StaffFeedbackThreadSerializer(FeedbackThreadSerializer):
    member = serializers.IntegerField(source="member_id", read_only=True)
    member_external_id = serializers.CharField(source="member.external_id", read_only=True)

    class Meta(FeedbackThreadSerializer.Meta):
        fields = [*FeedbackThreadSerializer.Meta.fields, "member", "member_external_id"]


class StaffFeedbackThreadDetailSerializer(FeedbackThreadDetailSerializer):
    member = serializers.IntegerField(source="member_id", read_only=True)
    member_external_id = serializers.CharField(source="member.external_id", read_only=True)
    messages = StaffFeedbackMessageSerializer(many=True, read_only=True)

    class Meta(FeedbackThreadDetailSerializer.Meta):
        fields = [*FeedbackThreadDetailSerializer.Meta.fields, "member", "member_external_id"]


class FeedbackReplySerializer(serializers.Serializer):
    # Blank and long texts are the service's refusals (text_required, text_too_long), with
    # stable codes rather than field errors.
    text = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    attachment = serializers.FileField(required=False, allow_empty_file=True, use_url=False,
                                       help_text="A JPEG or PNG image or a PDF "
                                                 "(ENGAGE_FEEDBACK_ATTACHMENT_MAX_BYTES, 5 MB "
                                                 "by default).")


class FeedbackCreateSerializer(FeedbackReplySerializer):
    topic = serializers.ChoiceField(choices=FeedbackThread.Topic.choices)


MESSAGE_REQUEST = {"multipart/form-data": FeedbackReplySerializer,
                   "application/json": FeedbackReplySerializer}


class FeedbackStatusSerializer(serializers.Serializer):
    # Every status is a valid value; which change a thread allows is the service's refusal
    # (status_change, 409), as `answered`, which comes only with an answer.
    status = serializers.ChoiceField(
        choices=FeedbackThread.Status.choices,
        help_text="in_progress (take or reopen) or closed; answered comes with an answer.")


class FeedbackThreadFilter(django_filters.FilterSet):
    class Meta:
        model = FeedbackThread
        fields = ["status", "topic"]


class StaffFeedbackThreadFilter(FeedbackThreadFilter):
    member = django_filters.CharFilter(field_name="member__external_id",
                                       help_text="The member's external id.")

    class Meta(FeedbackThreadFilter.Meta):
        fields = ["status", "topic", "member"]


class FeedbackCursorPagination(NewestFirstCursorPagination):
    page_size = 20


def _message_input(request: Request, serializer_class: type[serializers.Serializer]
                   ) -> dict[str, Any]:
    feedback_request_size_check(content_length=request.META.get("CONTENT_LENGTH"))
    body = serializer_class(data=request.data)
    body.is_valid(raise_exception=True)
    return dict(body.validated_data)


# --- the member's endpoints ----------------------------------------------------------------------


class FeedbackThreadListView(MemberApiView, generics.GenericAPIView):
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    pagination_class = FeedbackCursorPagination
    filterset_class = FeedbackThreadFilter
    serializer_class = FeedbackThreadSerializer

    def get_queryset(self) -> QuerySet[FeedbackThread]:
        if getattr(self, "swagger_fake_view", False):  # the schema is built without a member
            return FeedbackThread.objects.none()
        return member_feedback_threads(member=request_member(self.request))

    @extend_schema(responses=FeedbackThreadSerializer(many=True),
                   description="The member's conversations with support, newest first.")
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        request={"multipart/form-data": FeedbackCreateSerializer,
                 "application/json": FeedbackCreateSerializer},
        responses={201: FeedbackThreadDetailSerializer, 400: FeedbackErrorSerializer},
        description=f"Write to support: a new thread with its first message. {MESSAGE_BODY}")
    def post(self, request: Request) -> Response:
        member = request_member(request)
        try:
            data = _message_input(request, FeedbackCreateSerializer)
            thread = feedback_thread_create(member=member, topic=data["topic"],
                                            text=data.get("text"),
                                            attachment=data.get("attachment"))
        except FeedbackRefused as refused:
            return refusal_response(refused)
        thread = member_feedback_thread(member=member, thread_id=thread.pk)
        return Response(FeedbackThreadDetailSerializer(
            thread, context={"attachment_url": MEMBER_ATTACHMENT_URL}).data,
            status=status.HTTP_201_CREATED)


class FeedbackThreadDetailView(MemberApiView):
    @extend_schema(responses={200: FeedbackThreadDetailSerializer, 404: FeedbackErrorSerializer},
                   description="One of the member's threads with its messages in order.")
    def get(self, request: Request, thread_id: int) -> Response:
        thread = member_feedback_thread(member=request_member(request), thread_id=thread_id)
        if thread is None:
            return _not_found("thread")
        return Response(FeedbackThreadDetailSerializer(
            thread, context={"attachment_url": MEMBER_ATTACHMENT_URL}).data)


class FeedbackReplyView(MemberApiView):
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @extend_schema(
        request=MESSAGE_REQUEST,
        responses={201: FeedbackMessageSerializer, **MESSAGE_ERRORS},
        description="The member's reply in one of their threads; a reply to an answer puts "
                    f"the thread back in progress. A closed thread refuses it. {MESSAGE_BODY}")
    def post(self, request: Request, thread_id: int) -> Response:
        thread = member_feedback_thread(member=request_member(request), thread_id=thread_id)
        if thread is None:
            return _not_found("thread")
        try:
            data = _message_input(request, FeedbackReplySerializer)
            message = feedback_member_reply(thread=thread, text=data.get("text"),
                                            attachment=data.get("attachment"))
        except FeedbackRefused as refused:
            return refusal_response(refused)
        return Response(FeedbackMessageSerializer(
            message, context={"attachment_url": MEMBER_ATTACHMENT_URL}).data,
            status=status.HTTP_201_CREATED)


class FeedbackAttachmentView(MemberApiView):
    @extend_schema(responses=ATTACHMENT_RESPONSES,
                   description="Download an attachment of one of the member's threads.")
    def get(self, request: Request, thread_id: int, message_id: int) -> Any:
        message = member_feedback_attachment(member=request_member(request),
                                             thread_id=thread_id, message_id=message_id)
        if message is None:
            return _not_found("attachment")
        return feedback_attachment_response(message)


# --- support's endpoints (staff) -----------------------------------------------------------------


class StaffFeedbackThreadListView(generics.ListAPIView):
    pagination_class = FeedbackCursorPagination
    filterset_class = StaffFeedbackThreadFilter
    serializer_class = StaffFeedbackThreadSerializer

    def get_queryset(self) -> QuerySet[FeedbackThread]:
        return feedback_threads_listed(
            FeedbackThread.objects.select_related("member").order_by("-id"))

    @extend_schema(description="Every member's feedback threads, newest first; filter by "
                               "status, topic or the member's external id.")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


def _staff_thread(thread_id: int) -> FeedbackThread | None:
    return feedback_thread_with_messages(
        FeedbackThread.objects.select_related("member"), thread_id)


def _staff_detail(thread: FeedbackThread) -> dict[str, Any]:
    return StaffFeedbackThreadDetailSerializer(
        thread, context={"attachment_url": STAFF_ATTACHMENT_URL}).data


class StaffFeedbackThreadDetailView(APIView):
    staff_permissions = {"GET": ["members.view_feedbackthread"]}

    @extend_schema(responses={200: StaffFeedbackThreadDetailSerializer,
                              404: FeedbackErrorSerializer},
                   description="A thread with its messages in order.")
    def get(self, request: Request, thread_id: int) -> Response:
        thread = _staff_thread(thread_id)
        if thread is None:
            return _not_found("thread")
        return Response(_staff_detail(thread))


class StaffFeedbackAnswerView(APIView):
    # As in the admin: answering is a change of the thread.
    staff_permissions = {"POST": ["members.change_feedbackthread"]}

    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @extend_schema(
        request=MESSAGE_REQUEST,
        responses={201: StaffFeedbackThreadDetailSerializer, **MESSAGE_ERRORS},
        description="Answer the member as the signed-in agent: the thread becomes answered "
                    f"and the member is notified (email, else SMS). {MESSAGE_BODY}")
    def post(self, request: Request, thread_id: int) -> Response:
        thread = _staff_thread(thread_id)
        if thread is None:
            return _not_found("thread")
        try:
            data = _message_input(request, FeedbackReplySerializer)
            feedback_answer(thread=thread, text=data.get("text"), by=request.user,
                            attachment=data.get("attachment"))
        except FeedbackRefused as refused:
            return refusal_response(refused)
        return Response(_staff_detail(_staff_thread(thread_id)), status=status.HTTP_201_CREATED)


class StaffFeedbackStatusView(APIView):
    staff_permissions = {"POST": ["members.change_feedbackthread"]}

    @extend_schema(request=FeedbackStatusSerializer,
                   responses={200: StaffFeedbackThreadDetailSerializer,
                              404: FeedbackErrorSerializer, 409: FeedbackErrorSerializer},
                   description="Take (in_progress), close or reopen a thread.")
    def post(self, request: Request, thread_id: int) -> Response:
        thread = _staff_thread(thread_id)
        if thread is None:
            return _not_found("thread")
        body = FeedbackStatusSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            feedback_status_change(thread=thread, status=body.validated_data["status"])
        except FeedbackRefused as refused:
            return refusal_response(refused)
        return Response(_staff_detail(_staff_thread(thread_id)))


class StaffFeedbackAttachmentView(APIView):
    staff_permissions = {"GET": ["members.view_feedbackthread"]}

    @extend_schema(responses=ATTACHMENT_RESPONSES, description="Download an attachment.")
    def get(self, request: Request, thread_id: int, message_id: int) -> Any:
        message = feedback_attachment_message(threads=FeedbackThread.objects.all(),
                                              thread_id=thread_id, message_id=message_id)
        if message is None:
            return _not_found("attachment")
        return feedback_attachment_response(message)
