"""Extension points other apps plug into, so `members` never imports them.

`members` is the base of the dependency graph (DESIGN.md); when a member-side change needs a
message sent or another app's data handled, the owning app registers a handler here in its
`AppConfig.ready()`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# (member_id) -> None: send the double opt-in confirmation email (communications).
EMAIL_CONFIRMATION_REQUESTED: list[Callable[[int], None]] = []
# (member) -> {section: data}: the member's data another app holds, for a privacy export.
MEMBER_EXPORT: list[Callable[[Any], dict[str, Any]]] = []
# (member) -> {what: count} or None: anonymize what another app holds about the member, inside
# erasure's transaction; the counts go into the audit entry.
MEMBER_ERASE: list[Callable[[Any], dict[str, int] | None]] = []
