"""Feedback through the API: the member's threads (/api/v1/me/feedback/), support's side
(/api/v1/feedback/), and who may reach which."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from communications.models import Message
from members.models import FeedbackMessage, FeedbackThread
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
ME = "/api/v1/me/feedback/"
STAFF = "/api/v1/feedback/"


@pytest.fixture
def ann():
    return MemberFactory(email="ann@example.com", language="en")


@pytest.fixture
def bob():
    return MemberFactory(email="bob@example.com", language="en")


@pytest.fixture
def ann_api(ann, member_api_client) -> APIClient:
    return member_api_client(ann)


@pytest.fixture
def agent_api(support_agent) -> APIClient:
    client = APIClient()
    client.force_login(support_agent)
    return client


def _with_attachment(ann) -> tuple[FeedbackThread, FeedbackMessage]:
    thread = thread_of(ann, attachment=upload("receipt.pdf", PDF_BYTES, "application/pdf"))
    return thread, thread.messages.get()


# --- the member's endpoints --------------------------------------------------------------------


def test_a_member_writes_to_support_with_an_attachment(ann, ann_api):
    reply = ann_api.post(ME, {"topic": "order", "text": "Broken on arrival",
                              "attachment": upload("photo.png", png_bytes())},
                         format="multipart")

    assert reply.status_code == 201
    body = reply.json()
    thread = FeedbackThread.objects.get(member=ann)
    assert (body["id"], body["topic"], body["status"]) == (thread.pk, "order", "new")
    [message] = body["messages"]
    assert message["sender"] == "member" and message["text"] == "Broken on arrival"
    assert message["attachment"]["content_type"] == "image/png"
    assert message["attachment"]["url"] == (
        f"{ME}{thread.pk}/messages/{message['id']}/attachment/")


def test_a_member_writes_to_support_in_json_without_an_attachment(ann_api):
    reply = ann_api.post(ME, {"topic": "points", "text": "Points missing"}, format="json")

    assert reply.status_code == 201
    assert reply.json()["messages"][0]["attachment"] is None


def test_a_blank_message_is_refused_with_a_stable_code(ann_api):
    reply = ann_api.post(ME, {"topic": "points", "text": "  "}, format="json")

    assert reply.status_code == 400 and reply.json()["code"] == "text_required"
    assert not FeedbackThread.objects.exists()


def test_an_unknown_topic_is_a_field_error(ann_api):
    reply = ann_api.post(ME, {"topic": "lottery", "text": "Hi"}, format="json")

    assert reply.status_code == 400 and "topic" in reply.json()


def test_an_oversized_attachment_is_refused_with_attachment_too_large(ann_api, settings):
    settings.ENGAGE_FEEDBACK_ATTACHMENT_MAX_BYTES = 2000
    big = png_bytes() + b"\x00" * 2000

    reply = ann_api.post(ME, {"topic": "order", "text": "Photo",
                              "attachment": upload("photo.png", big)}, format="multipart")

    assert reply.status_code == 400 and reply.json()["code"] == "attachment_too_large"
    assert not FeedbackThread.objects.exists()


def test_a_body_announced_far_over_the_limit_is_refused_before_it_is_read(ann_api):
    # The small body is never read: its announced length alone is refused.
    reply = ann_api.post(ME, {"topic": "order", "text": "Photo"}, format="multipart",
                         CONTENT_LENGTH=str(1024 ** 3))

    assert reply.status_code == 400 and reply.json()["code"] == "attachment_too_large"
    assert not FeedbackThread.objects.exists()


def test_an_exe_renamed_png_is_refused_with_attachment_type(ann_api):
    reply = ann_api.post(ME, {"topic": "order", "text": "Photo",
                              "attachment": upload("photo.png", EXE_BYTES)}, format="multipart")

    assert reply.status_code == 400 and reply.json()["code"] == "attachment_type"
    assert not FeedbackThread.objects.exists()


def test_a_member_lists_their_threads_newest_first_with_a_preview(ann, bob, ann_api):
    first = thread_of(ann, text="First question")
    second = thread_of(ann, text="Second question " + "x" * 300, topic="offer")
    thread_of(bob, text="Bob's question")

    body = ann_api.get(ME).json()

    assert [row["id"] for row in body["results"]] == [second.pk, first.pk]
    assert body["results"][0]["preview"] == ("Second question " + "x" * 300)[:140]
    assert body["results"][0]["message_count"] == 1


def test_the_list_filters_by_status(ann, ann_api, support_agent):
    answered = thread_of(ann)
    feedback_answer(thread=answered, text="Done", by=support_agent)
    thread_of(ann)

    body = ann_api.get(ME, {"status": "answered"}).json()

    assert [row["id"] for row in body["results"]] == [answered.pk]


def test_the_list_pages_with_a_cursor(ann, ann_api):
    threads = [thread_of(ann, text=f"Question {n}") for n in range(3)]

    first = ann_api.get(ME, {"page_size": 2}).json()
    second = ann_api.get(first["next"]).json()

    assert [row["id"] for row in first["results"] + second["results"]] == [
        thread.pk for thread in reversed(threads)]


def test_the_list_costs_the_same_few_queries_for_many_threads(
        ann, ann_api, django_assert_max_num_queries):
    for n in range(30):
        thread_of(ann, text=f"Question {n}")

    with django_assert_max_num_queries(3):  # the token, its member, the page
        reply = ann_api.get(ME)

    assert len(reply.json()["results"]) == 20


def test_a_member_reads_a_thread_with_its_messages_in_order(ann, ann_api, support_agent):
    thread = thread_of(ann, text="Question")
    feedback_answer(thread=thread, text="Answer", by=support_agent)

    body = ann_api.get(f"{ME}{thread.pk}/").json()

    assert body["status"] == "answered"
    assert [(m["sender"], m["text"]) for m in body["messages"]] == [
        ("member", "Question"), ("support", "Answer")]
    assert "author" not in body["messages"][1]


def test_a_members_reply_to_an_answer_puts_the_thread_back_in_progress(
        ann, ann_api, support_agent):
    thread = thread_of(ann)
    feedback_answer(thread=thread, text="Answer", by=support_agent)

    reply = ann_api.post(f"{ME}{thread.pk}/messages/", {"text": "Still missing"},
                         format="json")

    assert reply.status_code == 201 and reply.json()["sender"] == "member"
    thread.refresh_from_db()
    assert thread.status == "in_progress"


def test_a_reply_to_a_closed_thread_is_refused_with_thread_closed(ann, ann_api):
    thread = feedback_status_change(thread=thread_of(ann), status="closed")

    reply = ann_api.post(f"{ME}{thread.pk}/messages/", {"text": "Hello?"}, format="json")

    assert reply.status_code == 409 and reply.json()["code"] == "thread_closed"
    assert thread.messages.count() == 1


def test_a_member_downloads_their_attachment(ann, ann_api):
    thread, message = _with_attachment(ann)

    reply = ann_api.get(f"{ME}{thread.pk}/messages/{message.pk}/attachment/")

    assert reply.status_code == 200
    assert b"".join(reply.streaming_content) == PDF_BYTES
    assert reply["Content-Type"] == "application/pdf"
    assert reply["Content-Disposition"] == 'attachment; filename="receipt.pdf"'
    assert reply["Cache-Control"] == "private, no-store"


# --- access --------------------------------------------------------------------------------------


def test_another_members_thread_is_404(bob, ann_api):
    bobs = thread_of(bob)

    assert ann_api.get(f"{ME}{bobs.pk}/").status_code == 404


def test_replying_in_another_members_thread_is_404_and_adds_nothing(bob, ann_api):
    bobs = thread_of(bob)

    reply = ann_api.post(f"{ME}{bobs.pk}/messages/", {"text": "Hijack"}, format="json")

    assert reply.status_code == 404
    assert bobs.messages.count() == 1


def test_another_members_attachment_is_404(bob, ann_api):
    thread, message = _with_attachment(bob)

    reply = ann_api.get(f"{ME}{thread.pk}/messages/{message.pk}/attachment/")

    assert reply.status_code == 404


def test_an_attachment_asked_for_under_the_members_own_thread_id_is_still_404(
        ann, bob, ann_api):
    own = thread_of(ann)
    _, bobs_message = _with_attachment(bob)

    reply = ann_api.get(f"{ME}{own.pk}/messages/{bobs_message.pk}/attachment/")

    assert reply.status_code == 404


def test_another_members_threads_are_not_listed(bob, ann_api):
    thread_of(bob)

    assert ann_api.get(ME).json()["results"] == []


def _member_urls(thread: FeedbackThread, message: FeedbackMessage) -> list[tuple[str, str]]:
    return [("get", ME), ("post", ME), ("get", f"{ME}{thread.pk}/"),
            ("post", f"{ME}{thread.pk}/messages/"),
            ("get", f"{ME}{thread.pk}/messages/{message.pk}/attachment/")]


def test_anonymous_callers_get_401_on_every_member_feedback_endpoint(ann):
    thread, message = _with_attachment(ann)
    client = APIClient()

    codes = {url: getattr(client, verb)(url, {"text": "x", "topic": "points"}).status_code
             for verb, url in _member_urls(thread, message)}

    assert set(codes.values()) == {401}
    assert FeedbackMessage.objects.count() == 1


def test_a_staff_session_gets_401_on_member_feedback_endpoints(ann, agent_api):
    thread, message = _with_attachment(ann)

    codes = {url: getattr(agent_api, verb)(url, {"text": "x", "topic": "points"}).status_code
             for verb, url in _member_urls(thread, message)}

    assert set(codes.values()) == {401}


def test_a_member_token_gets_403_on_every_staff_feedback_endpoint(ann, ann_api):
    thread, message = _with_attachment(ann)
    urls = [("get", STAFF), ("get", f"{STAFF}{thread.pk}/"),
            ("post", f"{STAFF}{thread.pk}/answer/"), ("post", f"{STAFF}{thread.pk}/status/"),
            ("get", f"{STAFF}{thread.pk}/messages/{message.pk}/attachment/")]

    codes = {url: getattr(ann_api, verb)(url, {"text": "x", "status": "closed"}).status_code
             for verb, url in urls}

    assert set(codes.values()) == {403}
    thread.refresh_from_db()
    assert (thread.status, thread.messages.count()) == ("new", 1)


# --- support's endpoints -------------------------------------------------------------------------


def test_an_agent_answers_through_the_api_and_the_member_is_notified(ann, agent_api,
                                                                     support_agent):
    thread = thread_of(ann)

    reply = agent_api.post(f"{STAFF}{thread.pk}/answer/", {"text": "Fixed it."}, format="json")

    assert reply.status_code == 201
    body = reply.json()
    assert body["status"] == "answered" and body["member_external_id"] == ann.external_id
    assert body["messages"][-1]["author"] == support_agent.username
    assert Message.objects.filter(member=ann, content__kind="feedback_answered").count() == 1


def test_support_lists_threads_of_one_member_by_status(ann, bob, agent_api):
    wanted = thread_of(ann)
    feedback_status_change(thread=thread_of(ann), status="closed")
    thread_of(bob)

    body = agent_api.get(STAFF, {"member": ann.external_id, "status": "new"}).json()

    assert [row["id"] for row in body["results"]] == [wanted.pk]


def test_support_setting_answered_by_hand_is_409(ann, agent_api):
    thread = thread_of(ann)

    reply = agent_api.post(f"{STAFF}{thread.pk}/status/", {"status": "answered"}, format="json")

    assert reply.status_code == 409 and reply.json()["code"] == "status_change"


def test_support_downloads_any_members_attachment(ann, agent_api):
    thread, message = _with_attachment(ann)

    reply = agent_api.get(f"{STAFF}{thread.pk}/messages/{message.pk}/attachment/")

    assert reply.status_code == 200 and b"".join(reply.streaming_content) == PDF_BYTES
