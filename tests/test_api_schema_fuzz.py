"""Schemathesis over the whole OpenAPI schema: every operation, called with generated data by
whoever may call it (a signed-in member on /api/v1/me/, an API key with every scope on the
integration API, a superuser on the staff API), never answers a server error. New endpoints
are covered as soon as the schema lists them."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from loyalty.integration.keys import api_key_create
from loyalty.integration.models import ApiKey
from members.services.sign_in import member_token_issue
from tests.members.factories import MemberFactory

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

# Loaded at collection: drf-spectacular builds the schema without the database.
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())
MEMBER = r"^/api/v1/me/"
INTEGRATION = r"^/api/v1/integration/"
fuzzed = settings(max_examples=10, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.function_scoped_fixture,
                                         HealthCheck.too_slow, HealthCheck.filter_too_much])
STAFF_PASSWORD = "fuzz-the-staff-api-9"


@pytest.fixture(autouse=True)
def requests_keep_the_test_transaction() -> Iterator[None]:
    # As Django's test client does: the WSGI handler would otherwise close the test's database
    # connection at the end of each request, and with it the test's transaction.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def member_token() -> str:
    member = MemberFactory(email="fuzz@example.com", phone="+4915123450000")
    return member_token_issue(member=member, name="fuzz")[1]


@pytest.fixture
def api_key() -> str:
    return api_key_create(name="fuzz", scopes=ApiKey.Scope.values, by=None)[1]


@pytest.fixture
def superuser_basic_auth(django_user_model, settings) -> str:
    # Basic auth checks the password on every call: PBKDF2's deliberate slowness would be most
    # of the run's time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    django_user_model.objects.create_superuser("fuzz-admin", "admin@example.com", STAFF_PASSWORD)
    return "Basic " + base64.b64encode(f"fuzz-admin:{STAFF_PASSWORD}".encode()).decode()


@schema.include(path_regex=MEMBER).parametrize()
@fuzzed
def test_the_member_api_never_answers_a_server_error(case, member_token):
    case.call_and_validate(headers={"Authorization": f"Bearer {member_token}"},
                           checks=[not_a_server_error])


@schema.include(path_regex=INTEGRATION).parametrize()
@fuzzed
def test_the_integration_api_never_answers_a_server_error(case, api_key):
    case.call_and_validate(headers={"Authorization": f"Api-Key {api_key}"},
                           checks=[not_a_server_error])


@schema.exclude(path_regex=MEMBER).exclude(path_regex=INTEGRATION).parametrize()
# Half the examples: its ~90 operations would otherwise add minutes to the suite.
@settings(fuzzed, max_examples=5)
def test_the_staff_api_never_answers_a_server_error(case, superuser_basic_auth):
    case.call_and_validate(headers={"Authorization": superuser_basic_auth},
                           checks=[not_a_server_error])
