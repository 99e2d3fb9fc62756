"""A real Firebase Cloud Messaging HTTP v1 server on loopback (aiohttp), with its own OAuth2
token endpoint, that records every push it accepts.

It speaks what the adapter meets in production:
- `POST /token`: the service-account JWT-bearer grant. The assertion's RS256 signature is checked
  against the public half of the key generated at start, with its `kid`, issuer, audience, scope
  and lifetime, and answered with an access token and `expires_in`, or `invalid_grant`.
- `POST /v1/projects/{project}/messages:send`: the bearer token checked (401 UNAUTHENTICATED when
  it is unknown or expired), then 200 `{"name": "projects/<p>/messages/<id>"}`, or an error in
  FCM's shape for the device tokens a test lists in `unregistered` (404 UNREGISTERED), `invalid`
  (400 INVALID_ARGUMENT, the registration token), `throttled` (429 QUOTA_EXCEEDED with
  Retry-After), `unavailable` (503 UNAVAILABLE) or `stalled` (accepted and recorded, the reply held
  back past the client's timeout). A payload over FCM's 4096-byte limit is 400 INVALID_ARGUMENT.
  `script.refuse_grants` makes the token endpoint refuse a valid assertion.
  `script.recover_after` makes a throttled or unavailable token accepted once it has been
  answered with its error that many times (a quota window or an outage that ends), and
  `script.unavailable_retry_after` puts a Retry-After on the 503s. `requests` lists every send
  request with its token, arrival time and the status answered, accepted or not.
- `GET /_peer/stats`: counters, for a benchmark that runs the peer in another process.

`FcmPeer().start()` serves from a thread (tests); `python -m tests.peers.fcm --settings-out F`
serves from its own process and writes the gateway settings to F once it listens (benchmarks,
where sharing the client's GIL would measure the wrong thing).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.peers.aiohttp_peer import ThreadedAiohttpPeer, serve_main

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# google-auth signs the assertion for Google's endpoint whatever `token_uri` says, as Google
# itself expects; the peer accepts that audience and its own URL.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
FCM_PAYLOAD_LIMIT = 4096
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


@dataclass(frozen=True)
class Pushed:
    token: str
    title: str | None
    body: str | None
    data: dict[str, str]
    name: str
    image: str | None = None


@dataclass(frozen=True)
class Requested:
    """One send request as the peer answered it (`at` is `time.monotonic()` on arrival)."""

    token: str
    at: float
    status: int


@dataclass
class Scripted:
    """Device tokens the peer answers with an error instead of accepting the push."""

    unregistered: set[str] = field(default_factory=set)
    invalid: set[str] = field(default_factory=set)
    throttled: dict[str, int] = field(default_factory=dict)  # token -> Retry-After seconds
    unavailable: set[str] = field(default_factory=set)
    stalled: set[str] = field(default_factory=set)
    stall_seconds: float = 5.0
    # The token endpoint refuses every grant, as it does once the service account is deleted.
    refuse_grants: bool = False
    # None: throttled and unavailable tokens fail forever; n: each is accepted after n errors.
    recover_after: int | None = None
    # Seconds sent as Retry-After with the 503s of `unavailable` tokens (None: no header).
    unavailable_retry_after: int | None = None


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _fcm_error(status: int, rpc_status: str, message: str, error_code: str | None = None,
               headers: dict[str, str] | None = None) -> web.Response:
    error: dict[str, Any] = {"code": status, "message": message, "status": rpc_status}
    if error_code:
        error["details"] = [{"@type": FCM_ERROR_TYPE, "errorCode": error_code}]
    return web.json_response({"error": error}, status=status, headers=headers)


class FcmPeer(ThreadedAiohttpPeer):
    name = "fcm"

    def __init__(self, *, project_id: str = "engage-test", host: str = "127.0.0.1",
                 port: int = 0, access_token_lifetime: int = 3600) -> None:
        super().__init__(host=host, port=port)
        self.project_id = project_id
        self.access_token_lifetime = access_token_lifetime
        self.script = Scripted()
        self.client_email = f"engage-push@{project_id}.iam.gserviceaccount.com"
        self.private_key_id = secrets.token_hex(20)
        self._private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._public_key = self._private_key.public_key()
        self._access_tokens: dict[str, float] = {}  # token -> monotonic expiry
        self._received: list[Pushed] = []
        self._requests: list[Requested] = []
        self._errors_answered: dict[str, int] = {}
        self._connections: set[tuple[str, int]] = set()
        self._ids = itertools.count(1)
        self.token_grants = 0
        self.token_refusals = 0

    # --- what tests read and set -----------------------------------------------------------

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    @property
    def received(self) -> list[Pushed]:
        with self.lock:
            return list(self._received)

    @property
    def requests(self) -> list[Requested]:
        with self.lock:
            return list(self._requests)

    @property
    def connections(self) -> int:
        """Distinct client connections that sent a push (keep-alive reuse shows here)."""
        with self.lock:
            return len(self._connections)

    def expire_access_tokens(self) -> None:
        """Forget every access token issued so far, as if their hour had passed."""
        with self.lock:
            self._access_tokens.clear()

    def service_account_info(self) -> dict[str, str]:
        """The service-account JSON a Firebase console would hand out, pointing at this peer."""
        pem = self._private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.private_key_id,
            "private_key": pem,
            "client_email": self.client_email,
            "client_id": "100000000000000000001",
            "token_uri": self.token_uri,
        }

    def gateway_settings(self, **overrides: Any) -> dict[str, Any]:
        return {"service_account": self.service_account_info(), "endpoint": self.url,
                "timeout": 5, "connect_timeout": 2, **overrides}

    # --- serving ---------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_post("/v1/projects/{project}/messages:send", self._send)
        app.router.add_get("/_peer/stats", self._stats)
        return app

    # --- handlers --------------------------------------------------------------------------

    async def _stats(self, request: web.Request) -> web.Response:
        with self.lock:
            stats = {"accepted": len(self._received), "token_grants": self.token_grants,
                     "connections": len(self._connections)}
        return web.json_response(stats)

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != JWT_BEARER:
            return web.json_response({"error": "unsupported_grant_type",
                                      "error_description": "Invalid grant_type."}, status=400)
        problem = self._assertion_problem(str(form.get("assertion", "")))
        if not problem and self.script.refuse_grants:
            problem = "Invalid grant: account not found"
        if problem:
            with self.lock:
                self.token_refusals += 1
            return web.json_response({"error": "invalid_grant", "error_description": problem},
                                     status=400)
        access_token = f"ya29.peer-{secrets.token_urlsafe(24)}"
        with self.lock:
            self._access_tokens[access_token] = time.monotonic() + self.access_token_lifetime
            self.token_grants += 1
        return web.json_response({"access_token": access_token,
                                  "expires_in": self.access_token_lifetime,
                                  "token_type": "Bearer"})

    def _assertion_problem(self, assertion: str) -> str:
        try:
            header_part, claims_part, signature_part = assertion.split(".")
            header = json.loads(_b64url_decode(header_part))
            self._public_key.verify(
                _b64url_decode(signature_part), f"{header_part}.{claims_part}".encode(),
                padding.PKCS1v15(), hashes.SHA256(),
            )
            claims = json.loads(_b64url_decode(claims_part))
        except (ValueError, binascii.Error, InvalidSignature):
            return "Invalid JWT Signature."
        now = time.time()
        if header.get("alg") != "RS256" or header.get("kid") not in (None, self.private_key_id):
            return "Invalid JWT Signature."
        if claims.get("iss") != self.client_email:
            return "Invalid JWT: unknown issuer."
        if claims.get("aud") not in (self.token_uri, GOOGLE_TOKEN_AUDIENCE):
            return "Invalid JWT: Failed audience check."
        if FCM_SCOPE not in str(claims.get("scope", "")).split():
            return "Invalid JWT: missing the firebase.messaging scope."
        issued, expires = claims.get("iat"), claims.get("exp")
        if (not isinstance(issued, int | float) or not isinstance(expires, int | float)
                or issued > now + 60 or expires < now - 60 or expires - issued > 3600):
            return ("Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                    "reasonable timeframe.")
        return ""

    def _bearer_valid(self, authorization: str) -> bool:
        scheme, _, token = authorization.partition(" ")
        with self.lock:
            expiry = self._access_tokens.get(token)
        return scheme == "Bearer" and expiry is not None and expiry > time.monotonic()

    async def _send(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        if request.match_info["project"] != self.project_id:
            return _fcm_error(403, "PERMISSION_DENIED", "Permission 'cloudmessaging.messages."
                              "create' denied on resource (or it may not exist).")
        if not self._bearer_valid(request.headers.get("Authorization", "")):
            return _fcm_error(401, "UNAUTHENTICATED", "Request had invalid authentication "
                              "credentials. Expected OAuth 2 access token, login cookie or "
                              "other valid authentication credential.")
        try:
            message = json.loads(await request.read())["message"]
            token = message["token"]
            notification = message.get("notification") or {}
            data = message.get("data") or {}
            valid = (isinstance(token, str) and token and isinstance(notification, dict)
                     and isinstance(data, dict)
                     and all(isinstance(v, str) for v in data.values()))
        except (ValueError, KeyError, TypeError):
            valid = False
        if not valid:
            return _fcm_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.",
                              "INVALID_ARGUMENT")
        response = self._scripted_error(token)
        if response is None:
            response = self._too_big(notification, data)
        if response is not None:
            self._requested(token, arrived, response.status)
            return response
        return await self._accept(request, token, notification, data, arrived)

    def _requested(self, token: str, arrived: float, status: int) -> None:
        with self.lock:
            self._requests.append(Requested(token, arrived, status))

    def _scripted_error(self, token: str) -> web.Response | None:
        script = self.script
        if token in script.invalid:
            return _fcm_error(400, "INVALID_ARGUMENT", "The registration token is not a valid "
                              "FCM registration token", "INVALID_ARGUMENT")
        if token in script.unregistered:
            return _fcm_error(404, "NOT_FOUND", "Requested entity was not found.",
                              "UNREGISTERED")
        if token in script.throttled or token in script.unavailable:
            with self.lock:
                answered = self._errors_answered.get(token, 0)
                if script.recover_after is not None and answered >= script.recover_after:
                    return None
                self._errors_answered[token] = answered + 1
        if token in script.throttled:
            return _fcm_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric "
                              "'Send requests'.", "QUOTA_EXCEEDED",
                              headers={"Retry-After": str(script.throttled[token])})
        if token in script.unavailable:
            headers = ({"Retry-After": str(script.unavailable_retry_after)}
                       if script.unavailable_retry_after is not None else None)
            return _fcm_error(503, "UNAVAILABLE", "The service is currently unavailable.",
                              "UNAVAILABLE", headers=headers)
        return None

    @staticmethod
    def _too_big(notification: dict[str, Any], data: dict[str, str]) -> web.Response | None:
        size = len(json.dumps({"notification": notification, "data": data},
                              ensure_ascii=False).encode())
        if size > FCM_PAYLOAD_LIMIT:
            return _fcm_error(400, "INVALID_ARGUMENT", "Android message is too big",
                              "INVALID_ARGUMENT")
        return None

    async def _accept(self, request: web.Request, token: str, notification: dict[str, Any],
                      data: dict[str, str], arrived: float) -> web.Response:
        script = self.script
        self._requested(token, arrived, 200)
        name = f"projects/{self.project_id}/messages/{next(self._ids)}"
        peer = request.transport.get_extra_info("peername") if request.transport else None
        with self.lock:
            self._received.append(Pushed(token, notification.get("title"),
                                         notification.get("body"), data, name,
                                         notification.get("image")))
            if peer:
                self._connections.add(peer[:2])
        if token in script.stalled:
            await asyncio.sleep(script.stall_seconds)
        return web.json_response({"name": name})


def main() -> None:
    serve_main(lambda host, port: FcmPeer(project_id="engage-bench", host=host, port=port),
               __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
