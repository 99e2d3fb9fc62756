"""Use cases that change communications state: mailings (schedule, prepare, pause, resume,
cancel) and their dispatch (claim, send, record results)."""

from communications.services.approvals import mailing_approve
from communications.services.dispatch import (
    MAX_ATTEMPTS,
    mailing_complete_if_done,
    mailing_dispatch_enqueue,
    message_batch_dispatch,
    messages_claim,
    messages_mark_unconfirmed_unknown,
    messages_record_results,
)
from communications.services.mailings import (
    audience_parts_freeze,
    mailing_cancel,
    mailing_pause,
    mailing_prepare,
    mailing_preparing_finish,
    mailing_resume,
    mailing_schedulable_errors,
    mailing_schedule,
    mailing_start_now,
    mailings_tick,
)
from communications.services.sending import (
    gateway_send,
)
from communications.services.test_sends import mailing_test_send, members_by_keys  # noqa: F401

__all__ = [
    "MAX_ATTEMPTS",
    "audience_parts_freeze",
    "gateway_send",
    "mailing_approve",
    "mailing_cancel",
    "mailing_complete_if_done",
    "mailing_dispatch_enqueue",
    "mailing_pause",
    "mailing_prepare",
    "mailing_preparing_finish",
    "mailing_resume",
    "mailing_schedulable_errors",
    "mailing_schedule",
    "mailing_start_now",
    "mailings_tick",
    "message_batch_dispatch",
    "messages_claim",
    "messages_mark_unconfirmed_unknown",
    "messages_record_results",
]
