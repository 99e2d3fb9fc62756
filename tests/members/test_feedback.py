"""Feedback threads: statuses, limits on text and attachments, the member told of an answer,
and the member's feedback in privacy requests."""

from __future__ import annotations

import pytest

from communications.models import Message
from communications.transactional import transactional_message_send
from members.models import FeedbackMessage, FeedbackThread
from members.services import member_data_export, member_erase
from members.services.feedback import (
    TEXT_MAX_CHARS,
    FeedbackRefused,
    feedback_answer,
    feedback_member_reply,
    feedback_status_change,
)
from tests.communications.factories import GatewayFactory
from tests.members.factories import MemberFactory
from tests.members.feedback_samples import (
    EXE_BYTES,
    PDF_BYTES,
    png_bytes,
    stored_files,
    thread_of,
    upload,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("feedback_storage")]
Status = FeedbackThread.Status


@pytest.fixture
def ann():
    return MemberFactory(email="ann@example.com", first_name="Ann", language="en")


def _refused(call) -> FeedbackRefused:
    with pytest.raises(FeedbackRefused) as refused:
        call()
    return refused.value


# --- statuses --------------------------------------------------------------------------------


def test_a_new_thread_is_new_with_the_members_message(ann):
    thread = thread_of(ann, text="  Where are my points?  ")

    [message] = thread.messages.all()
    assert (thread.status, thread.topic) == (Status.NEW, "points")
    assert (message.sender, message.text) == ("member", "Where are my points?")


def test_an_agents_answer_makes_the_thread_answered(ann, support_agent):
    thread = thread_of(ann)

    message = feedback_answer(thread=thread, text="They arrive tomorrow.", by=support_agent)

    thread.refresh_from_db()
    assert thread.status == Status.ANSWERED
    assert (message.sender, message.author) == ("support", support_agent)
    assert thread.last_message_at == message.created_at


def test_a_members_reply_to_an_answer_puts_the_thread_back_in_progress(ann, support_agent):
    thread = thread_of(ann)
    feedback_answer(thread=thread, text="They arrive tomorrow.", by=support_agent)

    feedback_member_reply(thread=thread, text="They did not.")

    thread.refresh_from_db()
    assert thread.status == Status.IN_PROGRESS


def test_a_members_second_message_leaves_a_new_thread_new(ann):
    thread = thread_of(ann)

    feedback_member_reply(thread=thread, text="Also: my card number is 123.")

    thread.refresh_from_db()
    assert thread.status == Status.NEW
    assert thread.messages.count() == 2


def test_an_agent_takes_a_new_thread_in_progress(ann):
    thread = feedback_status_change(thread=thread_of(ann), status=Status.IN_PROGRESS)

    assert thread.status == Status.IN_PROGRESS


def test_a_closed_thread_refuses_the_members_reply(ann):
    thread = feedback_status_change(thread=thread_of(ann), status=Status.CLOSED)

    refused = _refused(lambda: feedback_member_reply(thread=thread, text="Hello?"))

    assert refused.code == "thread_closed"
    assert thread.messages.count() == 1


def test_a_closed_thread_refuses_an_answer_and_nobody_is_notified(ann, support_agent):
    thread = feedback_status_change(thread=thread_of(ann), status=Status.CLOSED)

    refused = _refused(lambda: feedback_answer(thread=thread, text="Late", by=support_agent))

    assert refused.code == "thread_closed"
    assert not Message.objects.filter(content__kind="feedback_answered").exists()


def test_an_agent_reopens_a_closed_thread(ann):
    thread = feedback_status_change(thread=thread_of(ann), status=Status.CLOSED)

    thread = feedback_status_change(thread=thread, status=Status.IN_PROGRESS)

    assert thread.status == Status.IN_PROGRESS


def test_answered_is_not_a_status_an_agent_sets_by_hand(ann):
    thread = thread_of(ann)

    refused = _refused(lambda: feedback_status_change(thread=thread, status=Status.ANSWERED))

    assert refused.code == "status_change"
    thread.refresh_from_db()
    assert thread.status == Status.NEW


# --- limits ----------------------------------------------------------------------------------


def test_a_blank_message_is_refused_with_text_required(ann):
    refused = _refused(lambda: thread_of(ann, text=" \n "))

    assert refused.code == "text_required"
    assert not FeedbackThread.objects.exists()


def test_a_message_over_the_length_limit_is_refused(ann):
    refused = _refused(lambda: thread_of(ann, text="x" * (TEXT_MAX_CHARS + 1)))

    assert refused.code == "text_too_long"


def test_an_unknown_topic_is_refused(ann):
    refused = _refused(lambda: thread_of(ann, topic="lottery"))

    assert refused.code == "topic_unknown"


def test_an_attachment_over_the_size_setting_is_refused_and_nothing_is_kept(
        ann, settings, feedback_storage):
    settings.ENGAGE_FEEDBACK_ATTACHMENT_MAX_BYTES = 1000
    big = png_bytes() + b"\x00" * (1001 - len(png_bytes()))

    refused = _refused(lambda: thread_of(ann, attachment=upload("receipt.png", big)))

    assert refused.code == "attachment_too_large"
    assert not FeedbackThread.objects.exists()
    assert stored_files(feedback_storage) == []


def test_an_attachment_of_exactly_the_size_setting_is_accepted(ann, settings):
    settings.ENGAGE_FEEDBACK_ATTACHMENT_MAX_BYTES = 1000
    exact = png_bytes() + b"\x00" * (1000 - len(png_bytes()))

    thread = thread_of(ann, attachment=upload("receipt.png", exact))

    assert thread.messages.get().attachment_size == 1000


def test_an_exe_renamed_png_is_refused_by_its_first_bytes(ann, feedback_storage):
    disguised = upload("receipt.png", EXE_BYTES, content_type="image/png")

    refused = _refused(lambda: thread_of(ann, attachment=disguised))

    assert refused.code == "attachment_type"
    assert stored_files(feedback_storage) == []


def test_an_empty_file_is_refused_as_of_no_accepted_type(ann):
    refused = _refused(lambda: thread_of(ann, attachment=upload("empty.pdf", b"")))

    assert refused.code == "attachment_type"


def test_a_pdf_is_kept_under_a_random_name_with_the_type_its_bytes_show(ann, feedback_storage):
    thread = thread_of(ann, attachment=upload("My Receipt.pdf", PDF_BYTES,
                                              content_type="application/octet-stream"))

    message = thread.messages.get()
    [kept] = stored_files(feedback_storage)
    assert "Receipt" not in message.attachment and message.attachment.endswith(".pdf")
    assert kept.read_bytes() == PDF_BYTES
    assert (message.attachment_name, message.attachment_type, message.attachment_size) == (
        "My Receipt.pdf", "application/pdf", len(PDF_BYTES))


def test_the_download_name_ends_in_the_extension_of_what_the_file_is(ann):
    thread = thread_of(ann, attachment=upload("../../invoice.html", png_bytes(), "text/html"))

    assert thread.messages.get().attachment_name == "invoice.png"


def test_a_reply_refused_after_its_file_was_checked_leaves_no_file(ann, feedback_storage):
    thread = feedback_status_change(thread=thread_of(ann), status=Status.CLOSED)

    _refused(lambda: feedback_member_reply(thread=thread, text="Look",
                                           attachment=upload("a.png", png_bytes())))

    assert stored_files(feedback_storage) == []


# --- the member told of an answer ------------------------------------------------------------


def test_an_answer_records_a_feedback_answered_email_linking_to_the_thread(ann, support_agent):
    thread = thread_of(ann, topic="order")

    feedback_answer(thread=thread, text="Your order ships today.", by=support_agent)

    notice = Message.objects.get(member=ann, content__kind="feedback_answered")
    assert (notice.channel, notice.address, notice.mailing_id) == ("email", "ann@example.com",
                                                                    None)
    assert notice.content["subject"] == "Support has answered your message"
    assert f"/account/feedback/{thread.pk}/" in notice.content["body"]
    assert "Order" in notice.content["body"]


def test_a_member_without_email_is_told_by_sms(support_agent):
    member = MemberFactory(email="", phone="+4915123456789")
    thread = thread_of(member)

    feedback_answer(thread=thread, text="Done.", by=support_agent)

    notice = Message.objects.get(member=member, content__kind="feedback_answered")
    assert (notice.channel, notice.address, notice.content["subject"]) == (
        "sms", "+4915123456789", "")
    assert len(notice.content["body"]) < 200


def test_the_notice_is_in_the_members_language(support_agent):
    member = MemberFactory(email="olga@example.com", language="ru")
    thread = thread_of(member, topic="account")

    feedback_answer(thread=thread, text="Готово.", by=support_agent)

    notice = Message.objects.get(member=member, content__kind="feedback_answered")
    assert notice.content["subject"] == "Служба поддержки ответила на ваше сообщение"
    assert "«Личный кабинет»" in notice.content["body"]


def test_the_notice_reaches_the_member_through_the_email_gateway(
        ann, support_agent, smtp_peer, django_capture_on_commit_callbacks):
    GatewayFactory(name="Mail", channel="email", provider="smtp",
                   settings=smtp_peer.gateway_settings())
    thread = thread_of(ann)
    with django_capture_on_commit_callbacks(execute=False):
        feedback_answer(thread=thread, text="Done.", by=support_agent)
    notice = Message.objects.get(member=ann, content__kind="feedback_answered")

    transactional_message_send(message_id=notice.pk)

    [received] = smtp_peer.received
    assert received.rcpt_tos == ["ann@example.com"]
    assert f"/account/feedback/{thread.pk}/" in received.message.get_body().get_content()


def test_a_members_own_reply_notifies_nobody(ann):
    feedback_member_reply(thread=thread_of(ann), text="More details.")

    assert not Message.objects.filter(content__kind="feedback_answered").exists()


# --- privacy -----------------------------------------------------------------------------------


def test_a_privacy_export_holds_the_members_threads_and_messages(ann, support_agent):
    thread = thread_of(ann, attachment=upload("receipt.png", png_bytes()))
    feedback_answer(thread=thread, text="Thanks, fixed.", by=support_agent)

    export = member_data_export(member=ann, by=None)

    [exported] = export["feedback"]
    assert (exported["topic"], exported["status"]) == ("points", "answered")
    assert [(m["sender"], m["text"], m["attachment_name"]) for m in exported["messages"]] == [
        ("member", "Where are my points?", "receipt.png"), ("support", "Thanks, fixed.", "")]


def test_erasure_blanks_what_the_member_wrote_and_deletes_their_files(
        ann, feedback_storage, django_capture_on_commit_callbacks):
    thread = thread_of(ann, attachment=upload("receipt.png", png_bytes()))
    other = thread_of(MemberFactory(), text="Keep me")

    with django_capture_on_commit_callbacks(execute=True):
        member_erase(member=ann, by=None, reason="ticket 1")

    message = thread.messages.get()
    assert (message.text, message.attachment, message.attachment_name) == ("", "", "")
    assert stored_files(feedback_storage) == []
    assert FeedbackMessage.objects.get(thread=other).text == "Keep me"
    assert FeedbackThread.objects.filter(pk=thread.pk).exists()

