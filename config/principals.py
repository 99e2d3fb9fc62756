"""Who a request acts for when it is not a Django user: a member's app token, an integration
API key."""

from __future__ import annotations

from typing import Any


class Principal:
    """What Django and DRF ask of `request.user`, for a caller that is authenticated but never
    staff and holds no Django permission: every staff endpoint (config.permissions) refuses it."""

    is_authenticated = True
    is_active = True
    is_staff = False
    is_superuser = False
    is_anonymous = False

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return False
