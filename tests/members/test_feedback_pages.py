"""Feedback in the member's account pages (/account/feedback/) and in support's admin."""

from __future__ import annotations

import pytest
from django.urls import reverse

from communications.models import Message
from members.models import FeedbackThread
from members.services.feedback import feedback_answer, feedback_status_change
from tests.members.factories import MemberFactory
from tests.members.feedback_samples import (
    EXE_BYTES,
    PDF_BYTES,
    png_bytes,
    thread_of,
    upload,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("feedback_storage")]
PAGE = "/account/feedback/"


@pytest.fixture
def ann():
    return MemberFactory(email="ann@example.com", first_name="Ann", language="en")


@pytest.fixture
def ann_pages(ann, account_client):
    return account_client(ann)


@pytest.fixture
def agent_client(client, support_agent):
    client.force_login(support_agent)
    return client


def _admin_thread_url(thread: FeedbackThread) -> str:
    return reverse("admin:members_feedbackthread_change", args=[thread.pk])


# --- the member's pages --------------------------------------------------------------------------


def test_the_navigation_leads_to_support(ann_pages):
    page = ann_pages.get("/account/").content.decode()

    assert f'href="{PAGE}"' in page and ">Support</a>" in page


def test_the_support_page_lists_the_members_own_threads(ann, ann_pages):
    thread_of(ann, text="Where are my points?")
    thread_of(MemberFactory(), text="Someone else's question")

    page = ann_pages.get(PAGE)

    text = page.content.decode()
    assert page.status_code == 200
    assert "Where are my points?" in text and "Someone else" not in text
    assert page["Cache-Control"] == "private, no-store"


def test_writing_to_support_opens_the_new_thread(ann, ann_pages):
    reply = ann_pages.post(PAGE, {"topic": "order", "text": "Parcel never came",
                                  "attachment": upload("label.pdf", PDF_BYTES)})

    thread = FeedbackThread.objects.get(member=ann)
    assert reply.status_code == 302 and reply["Location"] == f"{PAGE}{thread.pk}/"
    page = ann_pages.get(reply["Location"]).content.decode()
    assert "Parcel never came" in page and "label.pdf" in page
    assert "Your message was sent to support." in page


def test_a_blank_message_is_announced_on_the_text_field(ann_pages):
    page = ann_pages.post(PAGE, {"topic": "order", "text": ""})

    text = page.content.decode()
    assert page.status_code == 400
    assert 'role="alert"' in text and "Please write your message." in text
    assert 'aria-invalid="true" aria-describedby="feedback-text-error"' in text
    assert not FeedbackThread.objects.exists()


def test_a_disguised_executable_is_announced_on_the_file_field(ann_pages):
    page = ann_pages.post(PAGE, {"topic": "order", "text": "See file",
                                 "attachment": upload("photo.png", EXE_BYTES)})

    text = page.content.decode()
    assert page.status_code == 400
    assert "Attach a JPEG or PNG image or a PDF document." in text
    assert 'id="feedback-attachment-error"' in text
    assert not FeedbackThread.objects.exists()


def test_a_member_replies_from_the_thread_page(ann, ann_pages, support_agent):
    thread = thread_of(ann)
    feedback_answer(thread=thread, text="Points are back.", by=support_agent)

    reply = ann_pages.post(f"{PAGE}{thread.pk}/", {"text": "Thanks, all good."})

    assert reply.status_code == 302
    thread.refresh_from_db()
    assert thread.status == "in_progress"
    assert [m.text for m in thread.messages.all()][-1] == "Thanks, all good."


def test_a_closed_thread_shows_no_reply_form(ann, ann_pages):
    thread = feedback_status_change(thread=thread_of(ann), status="closed")

    page = ann_pages.get(f"{PAGE}{thread.pk}/").content.decode()

    assert "This conversation is closed." in page and "Send reply" not in page


def test_another_members_thread_page_is_404_and_takes_no_reply(ann_pages):
    bobs = thread_of(MemberFactory())

    assert ann_pages.get(f"{PAGE}{bobs.pk}/").status_code == 404
    assert ann_pages.post(f"{PAGE}{bobs.pk}/", {"text": "Hijack"}).status_code == 404
    assert bobs.messages.count() == 1


def test_another_members_attachment_is_404_on_the_account_pages(ann_pages):
    bobs = thread_of(MemberFactory(), attachment=upload("id.png", png_bytes()))
    message = bobs.messages.get()

    reply = ann_pages.get(f"{PAGE}{bobs.pk}/messages/{message.pk}/attachment/")

    assert reply.status_code == 404


def test_a_member_downloads_their_attachment_from_the_thread_page(ann, ann_pages):
    thread = thread_of(ann, attachment=upload("id.png", png_bytes()))
    message = thread.messages.get()

    reply = ann_pages.get(f"{PAGE}{thread.pk}/messages/{message.pk}/attachment/")

    assert reply.status_code == 200 and reply["Content-Type"] == "image/png"
    assert b"".join(reply.streaming_content) == png_bytes()


def test_a_stranger_is_sent_to_sign_in(client):
    reply = client.get(PAGE)

    assert reply.status_code == 302 and reply["Location"].startswith("/account/sign-in/")


def test_the_support_page_costs_the_same_few_queries_for_many_threads(
        ann, ann_pages, django_assert_max_num_queries):
    for n in range(30):
        thread_of(ann, text=f"Question {n}")

    with django_assert_max_num_queries(4):  # session, member, threads, session save
        page = ann_pages.get(PAGE)

    assert page.content.decode().count('class="feedback-preview"') == 20


def test_the_support_page_is_in_the_members_language(account_client):
    olga = MemberFactory(language="ru")

    page = account_client(olga).get(PAGE).content.decode()

    assert "Написать в поддержку" in page and "Тема" in page


# --- support's admin -----------------------------------------------------------------------------


def test_an_agent_sees_the_thread_with_its_messages_in_order(ann, agent_client, support_agent):
    thread = thread_of(ann, text="First: where are my points?")
    feedback_answer(thread=thread, text="Second: on their way.", by=support_agent)

    page = agent_client.get(_admin_thread_url(thread)).content.decode()

    assert page.index("First: where are my points?") < page.index("Second: on their way.")
    assert "Send answer" in page


def test_an_agent_answers_in_the_admin_and_the_member_is_notified(ann, agent_client):
    thread = thread_of(ann)

    reply = agent_client.post(_admin_thread_url(thread),
                              {"answer": "1", "text": "Your points are back."})

    assert reply.status_code == 302 and reply["Location"] == _admin_thread_url(thread)
    thread.refresh_from_db()
    assert thread.status == "answered"
    assert thread.messages.last().text == "Your points are back."
    assert Message.objects.filter(member=ann, content__kind="feedback_answered").count() == 1


def test_an_agents_answer_may_carry_an_attachment(ann, agent_client):
    thread = thread_of(ann)

    agent_client.post(_admin_thread_url(thread), {
        "answer": "1", "text": "The statement", "attachment": upload("st.pdf", PDF_BYTES)})

    assert thread.messages.last().attachment_type == "application/pdf"


def test_a_blank_answer_is_shown_as_an_error_and_notifies_nobody(ann, agent_client):
    thread = thread_of(ann)

    page = agent_client.post(_admin_thread_url(thread), {"answer": "1", "text": " "})

    assert page.status_code == 200 and "write your message" in page.content.decode()
    assert not Message.objects.filter(content__kind="feedback_answered").exists()


def test_an_agent_closes_a_thread_in_the_admin(ann, agent_client):
    thread = thread_of(ann)

    agent_client.post(_admin_thread_url(thread), {"set_status": "1", "status": "closed"})

    thread.refresh_from_db()
    assert thread.status == "closed"


def test_the_admin_list_filters_by_status_and_topic(ann, agent_client):
    wanted = thread_of(ann, topic="order")
    thread_of(ann, topic="points")
    feedback_status_change(thread=thread_of(ann, topic="order"), status="closed")

    page = agent_client.get(reverse("admin:members_feedbackthread_changelist"),
                            {"status__exact": "new", "topic__exact": "order"})

    assert list(page.context["cl"].result_list) == [wanted]


def test_the_admin_list_finds_threads_by_the_members_email(ann, agent_client):
    wanted = thread_of(ann)
    thread_of(MemberFactory())

    page = agent_client.get(reverse("admin:members_feedbackthread_changelist"),
                            {"q": "Ann@Example.com"})

    assert list(page.context["cl"].result_list) == [wanted]


def test_an_agent_downloads_an_attachment_in_the_admin(ann, agent_client):
    thread = thread_of(ann, attachment=upload("id.png", png_bytes()))
    message = thread.messages.get()

    reply = agent_client.get(reverse("admin:members_feedbackthread_attachment",
                                     args=[thread.pk, message.pk]))

    assert reply.status_code == 200 and b"".join(reply.streaming_content) == png_bytes()


def test_the_admin_attachment_view_refuses_a_member_session(ann, ann_pages):
    thread = thread_of(ann, attachment=upload("id.png", png_bytes()))
    message = thread.messages.get()

    reply = ann_pages.get(reverse("admin:members_feedbackthread_attachment",
                                  args=[thread.pk, message.pk]))

    assert reply.status_code == 302 and "/admin/login/" in reply["Location"]


def test_a_staff_user_without_the_feedback_permission_cannot_open_a_thread(
        ann, client, django_user_model):
    clerk = django_user_model.objects.create_user(username="clerk", password="x" * 20,
                                                  is_staff=True)
    client.force_login(clerk)
    thread = thread_of(ann)

    assert client.get(_admin_thread_url(thread)).status_code == 403
