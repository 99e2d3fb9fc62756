"""Feedback: a member writes to support, support agents answer in the admin.

A thread has a topic and messages in order. Its status moves

    new ──agent takes it──▶ in progress ──agent answers──▶ answered ──agent closes──▶ closed

An agent's answer makes any open thread `answered` and tells the member: the
`hooks.FEEDBACK_ANSWERED` handlers (communications records a transactional message) run inside
the answer's transaction, so an answer and its notice are written together or not at all. The
member's reply to an answered thread puts it back `in progress`; a reply to a new or
in-progress thread leaves the status as it is. A closed thread takes no messages from anyone
(`thread_closed`); an agent may reopen it (back to in progress).

Attachments: at most one per message, a JPEG or PNG image or a PDF as read from the file's own
first bytes (the name and the content type a client sends are not trusted), of at most
ENGAGE_FEEDBACK_ATTACHMENT_MAX_BYTES. A file is saved under a random name in the private
`feedback` storage (settings.STORAGES) and served only by views that find its message within
the asking member's own threads, or to staff; its download name always ends in the extension
of the type it was read as, so a PDF named `x.html` is not opened as a page.

Every refusal is a FeedbackRefused with a stable `code`: text_required, text_too_long,
topic_unknown, attachment_too_large, attachment_type, thread_closed, status_change.
"""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import PurePath
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files import File
from django.core.files.storage import Storage, storages
from django.db import transaction
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone

from members import hooks
from members.models import FeedbackMessage, FeedbackThread, Member

Status = FeedbackThread.Status
STORAGE_ALIAS = "feedback"
TEXT_MAX_CHARS = 5000
# Leading bytes of each type we accept: (magic, content type, extension).
ATTACHMENT_TYPES = (
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
    (b"%PDF-", "application/pdf", "pdf"),
)
# What a multipart body carries besides the file: the text (4 bytes a character at most),
# the other fields and the part headers.
_FORM_OVERHEAD_BYTES = 4 * TEXT_MAX_CHARS + 64 * 1024
# Status changes an agent makes by hand; `answered` comes only with an answer.
STAFF_STATUS_CHANGES: dict[str, set[str]] = {
    Status.NEW: {Status.IN_PROGRESS, Status.CLOSED},
    Status.IN_PROGRESS: {Status.CLOSED},
    Status.ANSWERED: {Status.IN_PROGRESS, Status.CLOSED},
    Status.CLOSED: {Status.IN_PROGRESS},
}


class FeedbackRefused(Exception):
    """A feedback step refused, with a stable code (see the module docstring)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def feedback_storage() -> Storage:
    return storages[STORAGE_ALIAS]


def feedback_thread_url(*, thread: FeedbackThread) -> str:
    """The thread's page in the member's account, as a link for a message."""
    path = reverse("account:feedback-thread", args=[thread.pk])
    return f"{settings.ENGAGE_PUBLIC_URL}{path}"


def feedback_request_size_check(*, content_length: str | int | None) -> None:
    """Refuse a request whose body is larger than any acceptable message before it is read:
    Django would otherwise spool a huge upload to disk only for us to refuse it."""
    try:
        length = int(content_length or 0)
    except (TypeError, ValueError):
        return
    if length > settings.ENGAGE_FEEDBACK_ATTACHMENT_MAX_BYTES + _FORM_OVERHEAD_BYTES:
        raise _too_large()


def _too_large() -> FeedbackRefused:
    limit = settings.ENGAGE_FEEDBACK_ATTACHMENT_MAX_BYTES
    return FeedbackRefused("attachment_too_large",
                           f"the attachment may be at most {limit // 1024} KB")


def feedback_attachment_check(*, upload: File) -> tuple[str, str]:
    """The content type and extension the file's first bytes show; FeedbackRefused when it is
    too large or not a JPEG, PNG or PDF."""
    if upload.size is not None and upload.size > settings.ENGAGE_FEEDBACK_ATTACHMENT_MAX_BYTES:
        raise _too_large()
    upload.seek(0)
    head = upload.read(16)
    upload.seek(0)
    for magic, content_type, extension in ATTACHMENT_TYPES:
        if head.startswith(magic):
            return content_type, extension
    raise FeedbackRefused("attachment_type", "attach a JPEG or PNG image or a PDF document")


def _download_name(raw: str | None, extension: str) -> str:
    # No directories, no control characters (they would break the Content-Disposition
    # header), and the extension of the type the file really is.
    name = PurePath((raw or "").replace("\\", "/")).name
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip(" .")
    stem = PurePath(name).stem if "." in name else name
    return f"{(stem or 'attachment')[:200]}.{extension}"


@contextmanager
def _attachment_saved(upload: File | None) -> Iterator[dict[str, Any]]:
    """The message's attachment fields, the file saved; deleted again when what the block
    writes fails, so a refused or rolled-back message leaves no file behind."""
    if upload is None:
        yield {}
        return
    content_type, extension = feedback_attachment_check(upload=upload)
    storage = feedback_storage()
    # Spread over month folders: one directory of millions of files is slow to work with.
    name = storage.save(f"{timezone.now():%Y/%m}/{secrets.token_urlsafe(24)}.{extension}",
                        upload)
    try:
        yield {"attachment": name, "attachment_name": _download_name(upload.name, extension),
               "attachment_type": content_type, "attachment_size": upload.size}
    except BaseException:
        storage.delete(name)
        raise


def _text_clean(text: str | None) -> str:
    text = (text or "").strip()
    if not text:
        raise FeedbackRefused("text_required", "write your message")
    if len(text) > TEXT_MAX_CHARS:
        raise FeedbackRefused("text_too_long",
                              f"the message may be at most {TEXT_MAX_CHARS} characters long")
    return text


def _locked_open(thread: FeedbackThread) -> FeedbackThread:
    thread = FeedbackThread.objects.select_for_update().get(pk=thread.pk)
    if thread.status == Status.CLOSED:
        raise FeedbackRefused("thread_closed", "this conversation is closed; start a new one")
    return thread


def feedback_thread_create(*, member: Member, topic: str, text: str | None,
                           attachment: File | None = None) -> FeedbackThread:
    """A member's new thread with its first message (status new)."""
    if topic not in FeedbackThread.Topic.values:
        raise FeedbackRefused("topic_unknown",
                              f"the topic is one of {', '.join(FeedbackThread.Topic.values)}")
    text = _text_clean(text)
    now = timezone.now()
    with transaction.atomic(), _attachment_saved(attachment) as files:
        thread = FeedbackThread.objects.create(member=member, topic=topic, status=Status.NEW,
                                               created_at=now, last_message_at=now)
        FeedbackMessage.objects.create(thread=thread, sender=FeedbackMessage.Sender.MEMBER,
                                       text=text, created_at=now, **files)
    return thread


# How a new message moves its thread: the member's reply to an answer reopens the work, an
# agent's answer makes any open thread answered; other statuses stay.
_AFTER_MEMBER_MESSAGE = {Status.ANSWERED: Status.IN_PROGRESS}
_AFTER_ANSWER = {Status.NEW: Status.ANSWERED, Status.IN_PROGRESS: Status.ANSWERED}


def _message_add(*, thread: FeedbackThread, sender: str, text: str | None,
                 attachment: File | None, status_after: dict[str, str],
                 author: AbstractBaseUser | None = None,
                 then: Callable[[FeedbackThread, FeedbackMessage], None] | None = None,
                 ) -> FeedbackMessage:
    """Add a message to an open thread and move its status; `then` runs in the same
    transaction, so what it writes stands or falls with the message (and its file)."""
    with transaction.atomic():
        thread = _locked_open(thread)
        text = _text_clean(text)
        now = timezone.now()
        with _attachment_saved(attachment) as files:
            message = FeedbackMessage.objects.create(thread=thread, sender=sender, author=author,
                                                     text=text, created_at=now, **files)
            thread.status = status_after.get(thread.status, thread.status)
            thread.last_message_at = now
            thread.save(update_fields=["status", "last_message_at"])
            if then is not None:
                then(thread, message)
    return message


def feedback_member_reply(*, thread: FeedbackThread, text: str | None,
                          attachment: File | None = None) -> FeedbackMessage:
    """The member's reply in their own thread (the caller found it among the member's rows).
    A reply to an answer puts the thread back in progress."""
    return _message_add(thread=thread, sender=FeedbackMessage.Sender.MEMBER, text=text,
                        attachment=attachment, status_after=_AFTER_MEMBER_MESSAGE)


def _answered_notify(thread: FeedbackThread, message: FeedbackMessage) -> None:
    for handler in hooks.FEEDBACK_ANSWERED:
        handler(thread, message)


def feedback_answer(*, thread: FeedbackThread, text: str | None, by: AbstractBaseUser,
                    attachment: File | None = None) -> FeedbackMessage:
    """A support agent's answer: the thread becomes answered and the member is told."""
    return _message_add(thread=thread, sender=FeedbackMessage.Sender.SUPPORT, text=text,
                        attachment=attachment, status_after=_AFTER_ANSWER, author=by,
                        then=_answered_notify)


def feedback_status_change(*, thread: FeedbackThread, status: str) -> FeedbackThread:
    """An agent takes, closes or reopens a thread (see STAFF_STATUS_CHANGES)."""
    with transaction.atomic():
        thread = FeedbackThread.objects.select_for_update().get(pk=thread.pk)
        if status not in STAFF_STATUS_CHANGES.get(thread.status, set()):
            allowed = ", ".join(sorted(STAFF_STATUS_CHANGES.get(thread.status, set())))
            raise FeedbackRefused(
                "status_change",
                f"a {thread.status} thread can be set to {allowed} (answered comes with an "
                f"answer)")
        thread.status = status
        thread.save(update_fields=["status"])
    return thread


# --- privacy (members.hooks.MEMBER_EXPORT / MEMBER_ERASE) --------------------------------------


def feedback_member_export(member: Member) -> dict[str, Any]:
    """The member's feedback threads and messages, for a privacy export (two queries)."""
    threads = list(FeedbackThread.objects.filter(member=member).order_by("id")
                   .values("id", "topic", "status", "created_at", "last_message_at"))
    messages: dict[int, list[dict[str, Any]]] = {}
    for row in (FeedbackMessage.objects.filter(thread__member=member).order_by("id")
                .values("thread_id", "sender", "text", "attachment_name", "created_at")):
        messages.setdefault(row.pop("thread_id"), []).append(row)
    for thread in threads:
        thread["messages"] = messages.get(thread.pop("id"), [])
    return {"feedback": threads}


def feedback_member_erase(member: Member) -> dict[str, int]:
    """Blank what the member wrote and drop every attachment of their threads; the threads stay
    (topic, status, dates) so support's counts still add up. Files go once erasure commits."""
    messages: QuerySet[FeedbackMessage] = FeedbackMessage.objects.filter(thread__member=member)
    files = list(messages.exclude(attachment="").values_list("attachment", flat=True))
    blanked = messages.filter(sender=FeedbackMessage.Sender.MEMBER).update(text="")
    messages.exclude(attachment="").update(attachment="", attachment_name="",
                                           attachment_type="", attachment_size=None)

    def delete_files() -> None:
        storage = feedback_storage()
        for name in files:
            storage.delete(name)

    transaction.on_commit(delete_files)
    return {"feedback_messages_blanked": blanked, "feedback_attachments_deleted": len(files)}
