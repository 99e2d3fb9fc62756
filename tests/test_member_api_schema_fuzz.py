"""Schemathesis over the member's API (/api/v1/me/...): every operation in the OpenAPI schema,
called with generated data by a signed-in member, never answers a server error. New member
endpoints are covered as soon as the schema lists them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from members.services.sign_in import member_token_issue
from tests.members.factories import MemberFactory

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

# Loaded at collection: drf-spectacular builds the schema without the database.
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application()).include(
    path_regex=r"^/api/v1/me/")


@pytest.fixture
def member_token() -> Iterator[str]:
    member = MemberFactory(email="fuzz@example.com", phone="+4915123450000")
    # As Django's test client does: the WSGI handler would otherwise close the test's database
    # connection at the end of each request, and with it the test's transaction.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield member_token_issue(member=member, name="fuzz")[1]
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_the_member_api_never_answers_a_server_error(case, member_token):
    case.call_and_validate(headers={"Authorization": f"Bearer {member_token}"},
                           checks=[not_a_server_error])
