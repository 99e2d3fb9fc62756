"""Marketer and support screens for members, consents, suppressions and the audit log.

Every state change goes through its service, as in the API: the member form saves through
`member_upsert`, a consent changes only through `consent_record` (source "support", with the
agent and a reason), and suppressions through `suppression_add` / `suppression_remove`.
"""

from members.admin import ledger, member  # noqa: F401  (register the screens)
