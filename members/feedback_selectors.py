"""Queries that read feedback threads: a member's own, always within their rows (another
member's id finds nothing), and support's."""

from __future__ import annotations

from django.db.models import Count, OuterRef, Prefetch, QuerySet, Subquery
from django.db.models.functions import Substr

from members.models import FeedbackMessage, FeedbackThread, Member

PREVIEW_CHARS = 140


def feedback_threads_listed(threads: QuerySet[FeedbackThread]) -> QuerySet[FeedbackThread]:
    """Threads with what a list shows of each, in the same query: the start of the first
    message (`preview`) and the number of messages (`message_count`)."""
    first_text = (FeedbackMessage.objects.filter(thread=OuterRef("pk")).order_by("id")
                  .values("text")[:1])
    message_count = (FeedbackMessage.objects.filter(thread=OuterRef("pk")).order_by()
                     .values("thread").annotate(n=Count("id")).values("n"))
    return threads.annotate(preview=Substr(Subquery(first_text), 1, PREVIEW_CHARS),
                            message_count=Subquery(message_count))


def member_feedback_threads(*, member: Member) -> QuerySet[FeedbackThread]:
    """The member's threads, newest first, each with its preview and message count."""
    return feedback_threads_listed(
        FeedbackThread.objects.filter(member=member).order_by("-id"))


def feedback_thread_with_messages(threads: QuerySet[FeedbackThread],
                                  thread_id: int) -> FeedbackThread | None:
    """One thread of `threads` with its messages in order (two queries), or None."""
    return (threads.filter(pk=thread_id)
            .prefetch_related(Prefetch("messages", FeedbackMessage.objects.order_by("id")))
            .first())


def member_feedback_thread(*, member: Member, thread_id: int) -> FeedbackThread | None:
    return feedback_thread_with_messages(FeedbackThread.objects.filter(member=member), thread_id)


def feedback_attachment_message(*, threads: QuerySet[FeedbackThread], thread_id: int,
                                message_id: int) -> FeedbackMessage | None:
    """The message of one of `threads` whose attachment is asked for, or None (also when it
    has none)."""
    return (FeedbackMessage.objects
            .filter(pk=message_id, thread_id=thread_id, thread__in=threads)
            .exclude(attachment="").first())


def member_feedback_attachment(*, member: Member, thread_id: int,
                               message_id: int) -> FeedbackMessage | None:
    return feedback_attachment_message(threads=FeedbackThread.objects.filter(member=member),
                                       thread_id=thread_id, message_id=message_id)
