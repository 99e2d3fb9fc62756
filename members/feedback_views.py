"""The member's support pages (/account/feedback/): their conversations with support, a form to
write a new one, each thread with a reply form, and the attachments, served only to their
member (and to staff through the admin): never from a public media URL."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext, gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods

from members.account_views import account_context, member_required
from members.feedback_selectors import (
    member_feedback_attachment,
    member_feedback_thread,
    member_feedback_threads,
)
from members.models import FeedbackMessage, FeedbackThread
from members.services.feedback import (
    TEXT_MAX_CHARS,
    FeedbackRefused,
    feedback_member_reply,
    feedback_storage,
    feedback_thread_create,
)

PAGE_SIZE = 20
# Which form field a refusal is about; the rest are shown above the form.
REFUSAL_FIELDS = {"text_required": "text", "text_too_long": "text", "topic_unknown": "topic",
                  "attachment_too_large": "attachment", "attachment_type": "attachment"}


class FeedbackReplyForm(forms.Form):
    # Not required here: the service refuses a blank text with its own code and wording.
    text = forms.CharField(label=gettext_lazy("Your message"), required=False,
                           widget=forms.Textarea)
    attachment = forms.FileField(label=gettext_lazy("Attachment (optional)"), required=False,
                                 allow_empty_file=True)


class FeedbackNewForm(FeedbackReplyForm):
    topic = forms.ChoiceField(label=gettext_lazy("Topic"), choices=FeedbackThread.Topic.choices,
                              error_messages={"required": gettext_lazy("Choose a topic."),
                                              "invalid_choice": gettext_lazy("Choose a topic.")})

    field_order = ["topic", "text", "attachment"]


def refusal_text(refused: FeedbackRefused) -> str:
    """What the member reads for a refusal, in their language."""
    limit = filesizeformat(settings.ENGAGE_FEEDBACK_ATTACHMENT_MAX_BYTES)
    texts = {
        "text_required": gettext("Please write your message."),
        "text_too_long": gettext("Your message is too long: at most %(max)s characters.")
        % {"max": TEXT_MAX_CHARS},
        "topic_unknown": gettext("Choose a topic."),
        "attachment_too_large": gettext("The file is too large: at most %(limit)s.")
        % {"limit": limit},
        "attachment_type": gettext("Attach a JPEG or PNG image or a PDF document."),
        "thread_closed": gettext("This conversation is closed. Please start a new one."),
    }
    return texts.get(refused.code, refused.message)


def _refusal_add(form: forms.Form, refused: FeedbackRefused) -> None:
    form.add_error(REFUSAL_FIELDS.get(refused.code), refusal_text(refused))


def feedback_attachment_response(message: FeedbackMessage) -> FileResponse:
    """A message's attachment as a download, whoever's view found it for whom: the caller
    checks access."""
    try:
        handle = feedback_storage().open(message.attachment, "rb")
    except FileNotFoundError as exc:
        raise Http404("the attachment's file is missing") from exc
    response = FileResponse(handle, as_attachment=True, filename=message.attachment_name,
                            content_type=message.attachment_type)
    response["Cache-Control"] = "private, no-store"
    # Opened in a tab anyway, a file can run nothing and load nothing.
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


def _before(request: HttpRequest) -> int | None:
    raw = request.GET.get("before", "")
    return int(raw) if raw.isdigit() else None


@member_required
@require_http_methods(["GET", "POST"])
def feedback_list(request: HttpRequest) -> HttpResponse:
    form = FeedbackNewForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            thread = feedback_thread_create(member=request.member, topic=data["topic"],
                                            text=data["text"], attachment=data["attachment"])
        except FeedbackRefused as refused:
            _refusal_add(form, refused)
        else:
            messages.success(request, gettext("Thank you! Your message was sent to support."))
            return redirect("account:feedback-thread", thread_id=thread.pk)
    threads = member_feedback_threads(member=request.member)
    before = _before(request)
    if before is not None:
        threads = threads.filter(pk__lt=before)
    page = list(threads[:PAGE_SIZE + 1])
    return render(request, "account/feedback_list.html", account_context(
        request, form=form, threads=page[:PAGE_SIZE],
        older=page[PAGE_SIZE - 1].pk if len(page) > PAGE_SIZE else None,
        max_size=settings.ENGAGE_FEEDBACK_ATTACHMENT_MAX_BYTES, text_max=TEXT_MAX_CHARS,
    ), status=400 if form.errors else 200)


@member_required
@require_http_methods(["GET", "POST"])
def feedback_thread(request: HttpRequest, thread_id: int) -> HttpResponse:
    thread = member_feedback_thread(member=request.member, thread_id=thread_id)
    if thread is None:
        raise Http404("no such conversation")
    form = FeedbackReplyForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            feedback_member_reply(thread=thread, text=form.cleaned_data["text"],
                                  attachment=form.cleaned_data["attachment"])
        except FeedbackRefused as refused:
            _refusal_add(form, refused)
        else:
            messages.success(request, gettext("Your reply was sent."))
            return redirect("account:feedback-thread", thread_id=thread.pk)
    return render(request, "account/feedback_thread.html", account_context(
        request, thread=thread, thread_messages=thread.messages.all(), form=form,
        max_size=settings.ENGAGE_FEEDBACK_ATTACHMENT_MAX_BYTES, text_max=TEXT_MAX_CHARS,
    ), status=400 if form.errors else 200)


@member_required
@require_GET
def feedback_attachment(request: HttpRequest, thread_id: int, message_id: int) -> HttpResponse:
    message = member_feedback_attachment(member=request.member, thread_id=thread_id,
                                         message_id=message_id)
    if message is None:
        raise Http404("no such attachment")
    return feedback_attachment_response(message)
