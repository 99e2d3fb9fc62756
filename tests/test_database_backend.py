"""config.postgresql: Django's backend with the connection health check at most once a second,
on real connections that the server cuts."""

from __future__ import annotations

import time

import pytest
from django.db import OperationalError, connection, connections

from config.postgresql import base as backend

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def wrapper():
    """A connection of its own, as a web worker's thread holds one between requests."""
    own = connections.create_connection("default")
    yield own
    own.close()


def _request(wrapper) -> int:
    """One request's work on the connection: its backend's pid, then the end of the request."""
    wrapper.close_if_unusable_or_obsolete()  # request_started
    try:
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return cursor.fetchone()[0]
    finally:
        wrapper.close_if_unusable_or_obsolete()  # request_finished


def _server_cuts(pid: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_the_settings_use_the_engage_backend():
    assert isinstance(connections["default"], backend.DatabaseWrapper)


def test_a_connection_idle_past_the_interval_is_checked_and_replaced_when_dead(
        wrapper, monkeypatch):
    monkeypatch.setattr(backend, "HEALTH_CHECK_INTERVAL_S", 0.05)
    first = _request(wrapper)
    _server_cuts(first)
    time.sleep(0.1)

    assert _request(wrapper) != first


def test_a_connection_checked_within_the_interval_is_not_checked_again(wrapper, monkeypatch):
    monkeypatch.setattr(backend, "HEALTH_CHECK_INTERVAL_S", 60)
    first = _request(wrapper)
    _server_cuts(first)

    with pytest.raises(OperationalError):
        _request(wrapper)


def test_the_request_after_a_failed_query_gets_a_new_connection(wrapper, monkeypatch):
    monkeypatch.setattr(backend, "HEALTH_CHECK_INTERVAL_S", 60)
    first = _request(wrapper)
    _server_cuts(first)
    with pytest.raises(OperationalError):
        _request(wrapper)

    assert _request(wrapper) != first
