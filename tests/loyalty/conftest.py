"""Fixtures of the loyalty tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from loyalty.integration.keys import api_key_create

ALL_SCOPES = ["members:write", "orders:write", "vouchers:write", "events:write", "events:read"]


class IntegrationClient:
    """The test client, calling the integration API with an API key."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.client = Client()

    def post(self, path: str, body: Any, *, idempotency_key: str | None = None) -> Any:
        headers = {"Authorization": f"Api-Key {self.key}"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return self.client.post(f"/api/v1/integration/{path}", json.dumps(body),
                                content_type="application/json", headers=headers)


@pytest.fixture
def integration_client_with(db) -> Callable[..., IntegrationClient]:
    def make(*scopes: str) -> IntegrationClient:
        _, key = api_key_create(name="POS", scopes=scopes or ALL_SCOPES, by=None)
        return IntegrationClient(key)
    return make


@pytest.fixture
def integration(integration_client_with) -> IntegrationClient:
    return integration_client_with()
