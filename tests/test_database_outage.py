"""A view that loses its database connection answers 503 with Retry-After, not 500."""

from __future__ import annotations

from django.db import InterfaceError, OperationalError
from django.test import RequestFactory

from config.database_outage import RETRY_AFTER_S, DatabaseOutageMiddleware


def _middleware() -> DatabaseOutageMiddleware:
    return DatabaseOutageMiddleware(lambda request: None)


def test_lost_database_connection_is_answered_503_with_retry_after():
    request = RequestFactory().get("/api/v1/me/home/")
    response = _middleware().process_exception(
        request, OperationalError("terminating connection due to administrator command"))
    assert response.status_code == 503
    assert response["Retry-After"] == str(RETRY_AFTER_S)


def test_closed_connection_interface_error_is_answered_503():
    request = RequestFactory().get("/api/v1/me/home/")
    response = _middleware().process_exception(request, InterfaceError("connection closed"))
    assert response.status_code == 503


def test_other_exceptions_are_left_to_django():
    request = RequestFactory().get("/api/v1/me/home/")
    assert _middleware().process_exception(request, ValueError("a bug")) is None
