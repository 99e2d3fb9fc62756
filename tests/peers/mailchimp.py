"""Mailchimp's Marketing API member events on loopback (aiohttp):
`POST /{dc}/3.0/lists/{list_id}/members/{subscriber_hash}/events`, the data center in the
path standing for Mailchimp's `<dc>.api.mailchimp.com` (the adapter's URL template is
`{peer}/{dc}/3.0`).

- HTTP basic auth, any user name, the password an API key in `api_keys` whose `-<dc>` suffix
  is the path's data center: otherwise 401 "API Key Invalid" (problem+json, as Mailchimp).
- the list must be `list_id` and the subscriber hash the MD5 of a lower-cased email in
  `audience`: otherwise 404 "Resource Not Found".
- the body: `name` matching ^[A-Za-z0-9_-]{2,30}$, `properties` (optional) an object of string
  values, `occurred_at` (optional) a string: otherwise 400 "Invalid Resource" with the field
  errors.
- a good call is 204 No Content, and recorded in `events` (with the email it was for).

Scripted answers (429, 500...) come first: see tests/peers/event_platform.py.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
from typing import Any

from aiohttp import web

from tests.peers.event_platform import EventPlatformPeer

NAME = re.compile(r"^[A-Za-z0-9_-]{2,30}$")


def _problem(status: int, title: str, detail: str, **extra: Any) -> web.Response:
    return web.json_response({
        "type": "https://mailchimp.com/developer/marketing/docs/errors/", "title": title,
        "status": status, "detail": detail, "instance": secrets.token_hex(8), **extra},
        status=status, content_type="application/problem+json")


def _field_errors(body: Any) -> list[dict[str, str]]:
    if not isinstance(body, dict):
        return [{"field": "", "message": "The body must be an object."}]
    errors = []
    if not isinstance(body.get("name"), str) or not NAME.match(body["name"]):
        errors.append({"field": "name", "message": "Event name must be 2-30 letters, numbers, "
                                                   "underscores or dashes."})
    properties = body.get("properties", {})
    if not isinstance(properties, dict) or not all(isinstance(v, str)
                                                   for v in properties.values()):
        errors.append({"field": "properties", "message": "Properties must be an object of "
                                                         "string values."})
    if "occurred_at" in body and not isinstance(body["occurred_at"], str):
        errors.append({"field": "occurred_at", "message": "Must be an ISO 8601 time."})
    return errors


class MailchimpPeer(EventPlatformPeer):
    name = "mailchimp"

    def __init__(self, *, dc: str = "us21", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api_keys = {f"{secrets.token_hex(16)}-{dc}"}
        self.list_id = secrets.token_hex(5)
        self.audience: set[str] = set()
        self.events: list[dict[str, Any]] = []

    @property
    def url_template(self) -> str:
        return f"{self.url}/{{dc}}/3.0"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{dc}/3.0/lists/{list_id}/members/{subscriber_hash}/events",
                            self.member_event)
        return app

    def _api_key(self, header: str) -> str:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return ""
        try:
            return base64.b64decode(encoded).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return ""

    async def member_event(self, request: web.Request) -> web.Response:
        call, scripted = await self.call_take(request)
        if scripted is not None:
            return scripted
        key = self._api_key(call.headers.get("authorization", ""))
        if key not in self.api_keys or not key.endswith("-" + request.match_info["dc"]):
            return self.answer(call, _problem(
                401, "API Key Invalid", "Your API key may be invalid, or you've attempted to "
                                        "access the wrong datacenter."))
        with self.lock:
            emails = {hashlib.md5(e.lower().encode()).hexdigest(): e  # noqa: S324
                      for e in self.audience}
        email = emails.get(request.match_info["subscriber_hash"])
        if request.match_info["list_id"] != self.list_id or email is None:
            return self.answer(call, _problem(404, "Resource Not Found",
                                              "The requested resource could not be found."))
        try:
            body = json.loads(call.body)
        except ValueError:
            return self.answer(call, _problem(400, "JSON Schema Validation Failed",
                                              "The body is not valid JSON."))
        errors = _field_errors(body)
        if errors:
            return self.answer(call, _problem(
                400, "Invalid Resource", "The resource submitted could not be validated.",
                errors=errors))
        with self.lock:
            self.events.append({"email": email, **body})
        return self.answer(call, web.Response(status=204))
