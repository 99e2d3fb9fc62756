"""A request that lost its database connection (PostgreSQL restarted, a failover, the backend
terminated) is answered 503 with Retry-After instead of a 500: the fault is the service's
availability, not the request, and the client should come back (issue 10, scenario db_outage).

Django closes the broken connection at the end of the request (close_if_unusable_or_obsolete),
so the next request connects afresh.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 5


class DatabaseOutageMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.warning("database unavailable during %s %s: %s", request.method, request.path,
                       exception)
        response = JsonResponse({"code": "database_unavailable",
                                 "detail": "The service is briefly unavailable; retry shortly."},
                                status=503)
        response["Retry-After"] = str(RETRY_AFTER_S)
        return response
