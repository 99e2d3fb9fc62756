"""The back office's audit log: who changed what, and when, kept by django-auditlog.

Which models are logged, and which of their fields are masked or left out, is settled in one
place: `AUDITLOG_INCLUDE_TRACKING_MODELS` in config/settings.py. This module holds what the
library needs from Engage besides that: its app config (which also keeps Celery tasks out of
the log and puts the admin screen of config/audit_admin.py in place), the middleware that
names the actor, and the mask that hides sealed secrets whole.

Imported while the app registry loads (INSTALLED_APPS names `AuditlogConfig`), so nothing here
imports a model at module level.
"""

from __future__ import annotations

from contextvars import Token
from typing import Any

from auditlog.apps import AuditlogConfig as LibraryAuditlogConfig
from auditlog.context import auditlog_disabled
from auditlog.middleware import AuditlogMiddleware
from django.http import HttpRequest, HttpResponse

# Paths that never carry a staff user and never change a logged model: the member API
# (issue 7's hot path), the integration API's ingest (API keys of shops and tills), the open
# pixel and click redirect, providers' callbacks, the health probe. With DEBUG off this
# middleware costs 33-40 µs a request (the library's own, 46-84 µs): it connects and
# disconnects a pre_save receiver each time, which also empties pre_save's receiver cache for
# the saves that follow. Skipping costs under 1 µs.
UNAUDITED_PATH_PREFIXES = ("/api/v1/me/", "/api/v1/integration/", "/t/", "/hooks/",
                           "/healthz")

MASK = "••••••"


def secret_mask(value: str) -> str:
    """Hides a masked field whole; the library's default shows half of it, which for a
    Fernet token is half the ciphertext. An entry still says whether the secret was set,
    changed or removed."""
    return MASK if value and value != "None" else ""


class AuditMiddleware(AuditlogMiddleware):
    """django-auditlog's middleware (the request's user and address on every entry written
    while the request runs), skipped on the paths above."""

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(UNAUDITED_PATH_PREFIXES):
            return self.get_response(request)
        return super().__call__(request)

    def get_extra_data(self, request: HttpRequest) -> dict[str, Any]:
        # The actor is looked up when an entry is written, not when the request comes in:
        # an API call's user is only known once DRF has authenticated it inside the view
        # (basic auth, a token), and most requests write no entry at all. The library fills
        # any LogEntry attribute from a callable of its context.
        return {
            # As everywhere in Engage (members.api_me.client_ip): REMOTE_ADDR as the proxy in
            # front set it; the library would take the first X-Forwarded-For entry, which is
            # whatever the client chose to send.
            "remote_addr": request.META.get("REMOTE_ADDR") or None,
            "remote_port": None,
            "actor_id": lambda: getattr(_request_staff_user(request), "pk", None),
            "actor_email": lambda: getattr(_request_staff_user(request), "email", None),
        }


def _request_staff_user(request: HttpRequest) -> Any | None:
    from django.contrib.auth import get_user_model

    user = getattr(request, "user", None)
    if isinstance(user, get_user_model()) and user.is_authenticated:
        return user
    return None


# A Celery task is the pipeline at work (freezing an audience, sending, the scheduler tick,
# a webhook given up on), never a person: the outcome stays on the rows themselves (a
# mailing's state and failure reason, a subscription's disabled reason), and the log keeps
# to people's changes. It also spares every save in a worker the library's read of the row.
_task_tokens: dict[str, Token[bool]] = {}


def _task_log_off(task_id: str | None = None, **kwargs: Any) -> None:
    if task_id is not None:
        _task_tokens[task_id] = auditlog_disabled.set(True)


def _task_log_on(task_id: str | None = None, **kwargs: Any) -> None:
    token = _task_tokens.pop(task_id, None) if task_id is not None else None
    if token is not None:
        try:
            auditlog_disabled.reset(token)
        except ValueError:  # set in another context (a thread pool's other thread)
            auditlog_disabled.set(False)


class AuditlogConfig(LibraryAuditlogConfig):
    """django-auditlog's app, with Engage's admin screen and the Celery hooks above."""

    def ready(self) -> None:
        from celery.signals import task_postrun, task_prerun

        super().ready()
        task_prerun.connect(_task_log_off, weak=False, dispatch_uid="engage-audit-task-off")
        task_postrun.connect(_task_log_on, weak=False, dispatch_uid="engage-audit-task-on")
        from config.audit_admin import audit_admin_install

        audit_admin_install()

