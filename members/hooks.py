"""Extension points other apps plug into, so `members` never imports them.

`members` is the base of the dependency graph (DESIGN.md); when a member-side change needs a
message sent or another app's data handled, the owning app registers a handler here in its
`AppConfig.ready()`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.db import transaction

# (member_id) -> None: send the double opt-in confirmation email (communications).
EMAIL_CONFIRMATION_REQUESTED: list[Callable[[int], None]] = []
# (member, channel, address, code) -> None: send a sign-in code as a transactional message
# (communications), after the code's row commits.
SIGN_IN_CODE_REQUESTED: list[Callable[[Any, str, str, str], None]] = []
# (thread, message) -> None: a support agent answered the member's feedback thread; tell the
# member as a transactional message (communications), recorded in the answer's transaction.
FEEDBACK_ANSWERED: list[Callable[[Any, Any], None]] = []
# The member's account pages other apps add (offers, favorite products, inbox, feedback...):
# (position, url name, label); the navigation lists them by position (offers 10, favorite
# products 20, messages 30, preferences 40, support 50), whatever order the apps load in.
ACCOUNT_SECTIONS: list[tuple[int, str, Any]] = []
# (member, placement) -> {key: data}: what another app adds to the app's home call (GET
# /api/v1/me/home/, placement "app") and the account's home page ("account"), e.g. active
# offers or the unread count. Must be cheap: the home call is the app's most frequent request.
ACCOUNT_HOME: list[Callable[[Any, str], dict[str, Any]]] = []
# Templates the account's home page includes, in order, each given `home` (what the
# ACCOUNT_HOME handlers returned, merged) and `account_member`.
ACCOUNT_HOME_TEMPLATES: list[str] = []
# (member) -> {section: data}: the member's data another app holds, for a privacy export.
MEMBER_EXPORT: list[Callable[[Any], dict[str, Any]]] = []
# (member) -> {what: count} or None: anonymize what another app holds about the member, inside
# erasure's transaction; the counts go into the audit entry.
MEMBER_ERASE: list[Callable[[Any], dict[str, int] | None]] = []
# (consent events) -> None: grants or withdrawals were recorded; called inside their transaction,
# so what a handler writes (loyalty's CONSENT_CHANGED events) commits or rolls back with them.
CONSENTS_CHANGED: list[Callable[[list[Any]], None]] = []
# (member_ids or None) -> None: these members' data changed (None: too many to list, e.g. an
# import), so what depends on it (watched target groups) is brought up to date after commit.
MEMBERS_CHANGED: list[Callable[[list[int] | None], None]] = []


def members_changed(member_ids: Iterable[int] | None) -> None:
    """Tell the MEMBERS_CHANGED handlers, once the current transaction commits."""
    ids = None if member_ids is None else sorted(set(member_ids))
    if ids == []:
        return
    for handler in MEMBERS_CHANGED:
        transaction.on_commit(lambda handler=handler: handler(ids))
