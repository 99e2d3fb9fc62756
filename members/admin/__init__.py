"""Marketer and support screens for members, consents, suppressions and the audit log.

Every state change goes through its service, as in the API: the member form saves through
`member_upsert`, a consent changes only through `consent_record` (source "support", with the
agent and a reason), and suppressions through `suppression_add` / `suppression_remove`.
Feedback threads are answered and their status changed through `members.services.feedback`.
"""

from members.admin import feedback, ledger, member, staff  # noqa: F401  (register the screens)
