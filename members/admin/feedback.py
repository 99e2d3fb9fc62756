"""Support agents' feedback screens: the threads to answer, filtered by status and topic and
found by the member's exact external id, email or phone; a thread's page shows its messages in
order with an answer form and a status form, each going through its service
(`feedback_answer`, which also notifies the member, and `feedback_status_change`).
Attachments are served through this admin's own view, never from a public URL."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from members.admin.common import MemberRowSearch, admin_form_wrap
from members.feedback_selectors import (
    feedback_attachment_message,
    feedback_thread_with_messages,
    feedback_threads_listed,
)
from members.feedback_views import feedback_attachment_response
from members.models import FeedbackThread
from members.services.feedback import (
    STAFF_STATUS_CHANGES,
    FeedbackRefused,
    feedback_answer,
    feedback_status_change,
)

Status = FeedbackThread.Status


class FeedbackAnswerForm(forms.Form):
    # Blank text is refused by the service, with the same wording the API gives.
    text = forms.CharField(label="Answer", required=False,
                           widget=forms.Textarea(attrs={"rows": 8, "cols": 80}))
    attachment = forms.FileField(required=False, allow_empty_file=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["attachment"].help_text = (
            "Optional: a JPEG or PNG image or a PDF, up to "
            f"{filesizeformat(settings.ENGAGE_FEEDBACK_ATTACHMENT_MAX_BYTES)}. The member is "
            "notified of the answer by email, or by SMS when they have no email address.")


class FeedbackStatusForm(forms.Form):
    status = forms.ChoiceField(label="Set status to")

    def __init__(self, *args: Any, thread: FeedbackThread, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        allowed = STAFF_STATUS_CHANGES.get(thread.status, set())
        self.fields["status"].choices = [(value, label) for value, label in Status.choices
                                         if value in allowed]


@admin.register(FeedbackThread)
class FeedbackThreadAdmin(MemberRowSearch, admin.ModelAdmin):
    list_display = ["__str__", "member", "topic", "status", "preview", "message_count",
                    "created_at", "last_message_at"]
    list_filter = ["status", "topic"]
    list_select_related = ["member"]
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[FeedbackThread]:
        return feedback_threads_listed(super().get_queryset(request))

    @admin.display(description="first message")
    def preview(self, thread: FeedbackThread) -> str:
        return thread.preview

    @admin.display(description="messages")
    def message_count(self, thread: FeedbackThread) -> int:
        return thread.message_count

    # Threads come from members; they are closed, not deleted (erasure blanks them).
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path("<path:object_id>/attachment/<int:message_id>/",
                 self.admin_site.admin_view(self.attachment_view),
                 name="{}_{}_attachment".format(*info)),
            *super().get_urls(),
        ]

    def _url(self, view: str, *args: Any) -> str:
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_{view}", args=args,
                       current_app=self.admin_site.name)

    def _thread_for(self, request: HttpRequest, object_id: str) -> FeedbackThread:
        object_id = unquote(object_id)
        thread = feedback_thread_with_messages(FeedbackThread.objects.select_related("member"),
                                               int(object_id)) if object_id.isdigit() else None
        if thread is None:
            raise Http404(f"No feedback thread with id {object_id!r}.")
        if not self.has_view_or_change_permission(request, thread):
            raise PermissionDenied
        return thread

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """The thread, its messages in order, and the answer and status forms."""
        thread = self._thread_for(request, object_id)
        posted = request.POST if request.method == "POST" else None
        answer_form = FeedbackAnswerForm(posted if posted and "answer" in posted else None,
                                         request.FILES or None)
        status_form = FeedbackStatusForm(posted if posted and "set_status" in posted else None,
                                         thread=thread)
        if posted is not None:
            if not self.has_change_permission(request, thread):
                raise PermissionDenied
            done = (self._answer(request, thread, answer_form) if answer_form.is_bound
                    else self._status(request, thread, status_form))
            if done:
                return HttpResponseRedirect(self._url("change", thread.pk))
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/members/feedbackthread/thread.html", {
            **self.admin_site.each_context(request), "opts": self.opts, "original": thread,
            "title": f"Feedback {thread}", "thread": thread,
            "thread_messages": thread.messages.all(),
            # Support agents may answer feedback without seeing members' profiles.
            "member_url": reverse("admin:members_member_change", args=[thread.member_id],
                                  current_app=self.admin_site.name)
            if request.user.has_perm("members.view_member") else None,
            "can_change": self.has_change_permission(request, thread),
            "answer_form": admin_form_wrap(answer_form), "answer_form_raw": answer_form,
            "status_form": admin_form_wrap(status_form), "status_form_raw": status_form,
            "attachment_url_name": f"admin:{self.opts.app_label}_{self.opts.model_name}"
                                   f"_attachment",
            **(extra_context or {}),
        })

    def _answer(self, request: HttpRequest, thread: FeedbackThread,
                form: FeedbackAnswerForm) -> bool:
        if not form.is_valid():
            return False
        try:
            feedback_answer(thread=thread, text=form.cleaned_data["text"], by=request.user,
                            attachment=form.cleaned_data["attachment"])
        except FeedbackRefused as refused:
            field = "attachment" if refused.code.startswith("attachment") else (
                "text" if refused.code.startswith("text") else None)
            form.add_error(field, refused.message)
            return False
        self.log_change(request, thread, "Answered.")
        self.message_user(request, "The answer is sent and the member is notified.",
                          messages.SUCCESS)
        return True

    def _status(self, request: HttpRequest, thread: FeedbackThread,
                form: FeedbackStatusForm) -> bool:
        if not form.is_valid():
            return False
        try:
            thread = feedback_status_change(thread=thread, status=form.cleaned_data["status"])
        except FeedbackRefused as refused:
            form.add_error("status", refused.message)
            return False
        self.log_change(request, thread, f"Status set to {thread.get_status_display()}.")
        self.message_user(request, f"The thread is now {thread.get_status_display().lower()}.",
                          messages.SUCCESS)
        return True

    def attachment_view(self, request: HttpRequest, object_id: str,
                        message_id: int) -> HttpResponse:
        thread = self._thread_for(request, object_id)
        message = feedback_attachment_message(threads=FeedbackThread.objects.filter(pk=thread.pk),
                                              thread_id=thread.pk, message_id=message_id)
        if message is None:
            raise Http404("no such attachment")
        return feedback_attachment_response(message)
