"""Klaviyo's Events API on loopback (aiohttp): `POST /api/events` as Klaviyo checks it.

- `Authorization: Klaviyo-API-Key <private key>` must name a key in `private_keys`: otherwise
  401 with the JSON:API error `not_authenticated`.
- the `revision` header is required (400 `invalid` without it).
- the body must be a JSON:API event: `data.type` "event"; `attributes.metric.data` of type
  "metric" with a `name`; `attributes.profile.data` of type "profile" with at least one of
  `email`, `phone_number`, `external_id`, `id`; `properties` an object. Otherwise 400 `invalid`
  with the JSON pointer of what is wrong, as Klaviyo answers.
- a good call is 202 Accepted with no body, and recorded in `events`.

Scripted answers (429, 500...) come first: see tests/peers/event_platform.py.
"""

from __future__ import annotations

import json
import secrets
import uuid
from typing import Any

from aiohttp import web

from tests.peers.event_platform import EventPlatformPeer

PROFILE_IDS = ("email", "phone_number", "external_id", "id")


def _error(status: int, code: str, title: str, detail: str, pointer: str = "/data/"
           ) -> web.Response:
    return web.json_response({"errors": [{
        "id": str(uuid.uuid4()), "status": status, "code": code, "title": title,
        "detail": detail, "source": {"pointer": pointer}}]}, status=status,
        content_type="application/vnd.api+json")


def _shape_error(body: Any) -> tuple[str, str] | None:
    """What is wrong with an event document (detail, pointer), or None."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict) or data.get("type") != "event":
        return "'data' must be an object of type 'event'.", "/data/type"
    attributes = data.get("attributes")
    if not isinstance(attributes, dict):
        return "'attributes' is required.", "/data/attributes"
    if not isinstance(attributes.get("properties"), dict):
        return "'properties' must be an object.", "/data/attributes/properties"
    metric = (attributes.get("metric") or {}).get("data") or {}
    if metric.get("type") != "metric" or not (metric.get("attributes") or {}).get("name"):
        return "A metric with a name is required.", "/data/attributes/metric/data"
    profile = (attributes.get("profile") or {}).get("data") or {}
    found = profile.get("attributes") or {}
    if profile.get("type") != "profile" or not any(found.get(key) for key in PROFILE_IDS):
        return ("One of email, phone_number, external_id or id is required to identify the "
                "profile.", "/data/attributes/profile/data/attributes")
    return None


class KlaviyoPeer(EventPlatformPeer):
    name = "klaviyo"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.private_keys = {"pk_" + secrets.token_hex(17)}
        self.events: list[dict[str, Any]] = []

    @property
    def events_url(self) -> str:
        return f"{self.url}/api/events"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/events", self.create_event)
        return app

    async def create_event(self, request: web.Request) -> web.Response:
        call, scripted = await self.call_take(request)
        if scripted is not None:
            return scripted
        scheme, _, key = call.headers.get("authorization", "").partition(" ")
        if scheme != "Klaviyo-API-Key" or key not in self.private_keys:
            return self.answer(call, _error(401, "not_authenticated",
                                            "Authentication credentials were not provided.",
                                            "Missing or invalid private key."))
        if not call.headers.get("revision"):
            return self.answer(call, _error(400, "invalid", "Invalid input.",
                                            "The revision header is required."))
        try:
            body = json.loads(call.body)
        except ValueError:
            return self.answer(call, _error(400, "parse_error", "Malformed JSON.",
                                            "The request body is not valid JSON."))
        wrong = _shape_error(body)
        if wrong is not None:
            return self.answer(call, _error(400, "invalid", "Invalid input.", *wrong))
        with self.lock:
            self.events.append(body["data"]["attributes"])
        return self.answer(call, web.Response(status=202))
