"""Push through Firebase Cloud Messaging HTTP v1.

FCM v1 has no batch endpoint any more (the legacy multicast API is gone): each push is one
`POST /v1/projects/{project}/messages:send`. A batch therefore goes out as `concurrency` requests in
flight at once over one aiohttp session whose keep-alive connections are reused for the whole
batch. aiohttp rather than a thread pool or httpx: on the 2-core machines it costs about 0.2 ms
of CPU per request against 0.5 ms for urllib3 in threads, 1 ms for httpx in threads and 3 ms for
httpx's async client, which is what keeps this adapter well past 2,000 pushes/s with the
provider (or its loopback peer) on the same cores. HTTP/2 would save connections, not CPU: the
pure-Python h2 framing alone costs about 0.23 ms per request, more than aiohttp's whole request.

Settings: `service_account` (the JSON from the Firebase console, as an object or its text; or its
fields project_id, client_email, private_key, token_uri at the top level), `endpoint` (default
https://fcm.googleapis.com), `concurrency` (requests in flight, default 32), `timeout` (seconds
to wait for a reply, default 10) and `connect_timeout` (default 5).

OAuth2: google-auth signs the service-account JWT and exchanges it at the JSON's `token_uri`
(tests point it at a loopback peer). The access token is kept per gateway id for the life of the
process and refreshed only when google-auth counts it stale (a few minutes before it expires) or
when FCM answers 401 to it, so a worker fetches one token an hour, not one per batch.

Results, per message:
- 200: sent, `provider_id` is FCM's message name (`projects/<p>/messages/<id>`).
- 404 UNREGISTERED and 400 INVALID_ARGUMENT about the registration token: permanent, with codes
  `UNREGISTERED` and `INVALID_TOKEN`; both are in TOKEN_INVALID_CODES, on which the caller
  deactivates the device. Any other INVALID_ARGUMENT (a payload over 4 KB, say) is permanent with
  code `INVALID_ARGUMENT` and says nothing about the device.
- 429 QUOTA_EXCEEDED, 500 INTERNAL, 503 UNAVAILABLE: transient, `retry_after` from Retry-After.
- 401 UNAUTHENTICATED: the access token is refreshed once (one refresh for the whole batch) and the
  request repeated.
- No answer after the request went out (read timeout, connection dropped): `in_doubt`, since FCM
  may have accepted the push and v1 has no idempotency key to make a resend safe.
- No connection: transient (`connect_failed`) for the pushes in flight; the rest of the batch
  is not attempted and gets no result, so it goes back to the queue without spending an attempt.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import google.auth.exceptions
import google.auth.transport.requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth.credentials import TokenState
from google.oauth2 import service_account

from communications.gateways.base import (
    BaseGateway,
    GatewayError,
    OutboundMessage,
    SendResult,
    event_loop_new,
    gateway_error_text,
    push_data,
    register,
    send_concurrently,
)
from config.retry_after import retry_after_seconds

FCM_ENDPOINT = "https://fcm.googleapis.com"
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"

# Codes after which the device token will never work again: the caller deactivates the device.
# INVALID_TOKEN is Engage's name for FCM's INVALID_ARGUMENT when FCM says it is the registration
# token that is wrong, as FCM gives the same code for a malformed payload.
TOKEN_INVALID_CODES = frozenset({"UNREGISTERED", "INVALID_TOKEN"})

SERVICE_ACCOUNT_FIELDS = ("project_id", "client_email", "private_key", "token_uri")
DEFAULT_CONCURRENCY = 32
DEFAULT_TIMEOUT = 10.0
DEFAULT_CONNECT_TIMEOUT = 5.0
_FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"


def _service_account(settings: Mapping[str, Any]) -> tuple[Any, str]:
    """The service-account fields and the prefix their setting names carry in error messages.

    Settings hold either the whole JSON under `service_account` (an object or its text) or its
    fields at the top level.
    """
    if "service_account" not in settings:
        return settings, ""
    info = settings["service_account"]
    if isinstance(info, str):
        try:
            info = json.loads(info)
        except ValueError:
            return None, "service_account."
    return info, "service_account."


def _private_key_problem(pem: Any) -> str:
    if not isinstance(pem, str) or not pem.strip():
        return "required: the PEM private key from the service-account JSON"
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        return f"does not parse as a PEM private key ({exc})"
    if not isinstance(key, rsa.RSAPrivateKey):
        return "must be an RSA key, as Google issues for service accounts"
    return ""


def _is_http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 300


@dataclass
class _CachedCredentials:
    fingerprint: str
    credentials: service_account.Credentials
    lock: threading.Lock


# One entry per gateway id for the life of the process, shared by every batch a worker sends.
_CREDENTIALS: dict[int, _CachedCredentials] = {}
_CREDENTIALS_LOCK = threading.Lock()


class _TokenRequest(google.auth.transport.requests.Request):
    """google-auth's requests transport with our timeout instead of its 120 s default."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def __call__(self, url: str, method: str = "GET", body: Any = None,
                 headers: Any = None, timeout: Any = None, **kwargs: Any) -> Any:
        return super().__call__(url, method=method, body=body, headers=headers,
                                timeout=timeout or self._timeout, **kwargs)


def _names_the_token(error: Mapping[str, Any], details: list[Any]) -> bool:
    # FCM says which field is wrong only in the text, sometimes also in a BadRequest detail.
    for detail in details:
        if isinstance(detail, dict) and detail.get("@type") == _BAD_REQUEST_TYPE:
            for violation in detail.get("fieldViolations") or []:
                if isinstance(violation, dict) and violation.get("field") == "message.token":
                    return True
    return "registration token" in str(error.get("message", "")).lower()


def _reply_error(status: int, retry_after: str | None, raw: bytes) -> GatewayError:
    try:
        error = json.loads(raw)["error"]
        if not isinstance(error, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        error = {}
    details = error.get("details") if isinstance(error.get("details"), list) else []
    fcm_code = next((str(d.get("errorCode")) for d in details
                     if isinstance(d, dict) and d.get("@type") == _FCM_ERROR_TYPE
                     and d.get("errorCode")), "")
    rpc_status = str(error.get("status") or "")
    text = str(error.get("message") or raw[:200].decode("utf-8", "replace") or "no reply body")
    code = fcm_code or rpc_status or f"HTTP_{status}"
    if code == "INVALID_ARGUMENT" and _names_the_token(error, details):
        code = "INVALID_TOKEN"
    transient = status == 429 or status >= 500
    return GatewayError(f"{status} {rpc_status or fcm_code}: {text}".replace("  ", " "),
                        code=code, permanent=not transient,
                        retry_after=retry_after_seconds(retry_after) if transient else None)


def _message_json(outbound: OutboundMessage) -> bytes:
    notification = {}
    if outbound.subject:
        notification["title"] = outbound.subject
    if outbound.body:
        notification["body"] = outbound.body
    if outbound.image_url:
        notification["image"] = outbound.image_url
    message: dict[str, Any] = {"token": outbound.address, "data": push_data(outbound)}
    if notification:
        message["notification"] = notification
    return json.dumps({"message": message}, ensure_ascii=False).encode()


@register
class FcmGateway(BaseGateway):
    provider = "fcm"
    channels = frozenset({"push"})
    # The whole service-account JSON when given as one (it holds the private key).
    secret_settings = ("service_account", "private_key")
    dead_address_codes = TOKEN_INVALID_CODES

    @classmethod
    def settings_errors(cls, settings: Mapping[str, Any]) -> dict[str, str]:
        errors: dict[str, str] = {}
        info, prefix = _service_account(settings)
        if prefix and not isinstance(info, dict):
            errors["service_account"] = ("must be the service-account JSON from the Firebase "
                                         "console (Project settings > Service accounts)")
        elif not prefix and not any(key in settings for key in SERVICE_ACCOUNT_FIELDS):
            errors["service_account"] = ("required: the service-account JSON from the Firebase "
                                         "console, or its project_id, client_email and "
                                         "private_key")
        else:
            if not isinstance(info.get("project_id"), str) or not info.get("project_id"):
                errors[f"{prefix}project_id"] = "required: the Firebase project id"
            email = info.get("client_email")
            if not isinstance(email, str) or "@" not in email:
                errors[f"{prefix}client_email"] = "required: the service account's email"
            problem = _private_key_problem(info.get("private_key"))
            if problem:
                errors[f"{prefix}private_key"] = problem
            if "token_uri" in info and not _is_http_url(info["token_uri"]):
                errors[f"{prefix}token_uri"] = "must be an http(s) URL"
        if "endpoint" in settings and not _is_http_url(settings["endpoint"]):
            errors["endpoint"] = "must be an http(s) URL, e.g. https://fcm.googleapis.com"
        concurrency = settings.get("concurrency", DEFAULT_CONCURRENCY)
        if (not isinstance(concurrency, int) or isinstance(concurrency, bool)
                or not 1 <= concurrency <= 1000):
            errors["concurrency"] = "must be a whole number of requests in flight, 1 to 1000"
        for key in ("timeout", "connect_timeout"):
            if key in settings and not _positive_number(settings[key]):
                errors[key] = "must be a number of seconds above 0 and at most 300"
        return errors

    def open(self) -> None:
        settings = self.config.settings
        info, _ = _service_account(settings)
        if not isinstance(info, Mapping):
            raise GatewayError("the service account is not a JSON object", code="settings",
                               permanent=True)
        self._timeout = float(settings.get("timeout", DEFAULT_TIMEOUT))
        self._concurrency = int(settings.get("concurrency", DEFAULT_CONCURRENCY))
        endpoint = str(settings.get("endpoint") or FCM_ENDPOINT).rstrip("/")
        self._url = f"{endpoint}/v1/projects/{info.get('project_id')}/messages:send"
        self._cached = self._credentials(info)
        self._token = self._token_current()
        self._lost: GatewayError | None = None
        self._unreachable = False  # FCM refused to connect: the rest is not attempted
        self._refresh_failure: GatewayError | None = None
        self._loop = event_loop_new()
        self._session = self._loop.run_until_complete(self._session_open(
            float(settings.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT))))

    def health(self) -> tuple[bool, str]:
        """A fresh OAuth token from the token endpoint: the cached one would prove nothing."""
        info, _ = _service_account(self.config.settings)
        if not isinstance(info, Mapping):
            return False, "permanent [settings]: the service account is not a JSON object"
        self._timeout = float(self.config.settings.get("timeout", DEFAULT_TIMEOUT))
        try:
            self._cached = self._credentials(info)
            with self._cached.lock:
                self._refresh()
        except GatewayError as error:
            return False, gateway_error_text(error)
        return True, f"OAuth token issued for {info.get('client_email')}"

    def close(self) -> None:
        loop = getattr(self, "_loop", None)
        if loop is None:
            return
        try:
            loop.run_until_complete(self._session.close())
            loop.run_until_complete(loop.shutdown_default_executor())
        except Exception:  # noqa: BLE001  (closing must not mask the batch result)
            pass
        finally:
            loop.close()
            self._loop = None

    def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        return self._loop.run_until_complete(self._send_batch(batch))

    # --- OAuth2 ----------------------------------------------------------------------------

    def _credentials(self, info: Mapping[str, Any]) -> _CachedCredentials:
        info = {**info, "token_uri": info.get("token_uri") or GOOGLE_TOKEN_URI}
        fingerprint = hashlib.sha256(json.dumps(
            [info.get(key) for key in (*SERVICE_ACCOUNT_FIELDS, "private_key_id")]
        ).encode()).hexdigest()
        with _CREDENTIALS_LOCK:
            cached = _CREDENTIALS.get(self.config.gateway_id)
            if cached is not None and cached.fingerprint == fingerprint:
                return cached
            try:
                credentials = service_account.Credentials.from_service_account_info(
                    info, scopes=[FCM_SCOPE])
            except (ValueError, KeyError, TypeError) as exc:
                raise GatewayError(f"the service account is unusable: {exc}", code="settings",
                                   permanent=True) from exc
            cached = _CachedCredentials(fingerprint, credentials, threading.Lock())
            _CREDENTIALS[self.config.gateway_id] = cached
            return cached

    def _token_current(self) -> str:
        with self._cached.lock:
            if self._cached.credentials.token_state is not TokenState.FRESH:
                self._refresh()
            return self._cached.credentials.token

    def _token_replace(self, rejected: str) -> str:
        """A token FCM will take instead of `rejected`: one refresh however many requests ask,
        and no second try in this batch once the token endpoint has said no."""
        with self._cached.lock:
            if self._refresh_failure is not None:
                raise self._refresh_failure
            if self._cached.credentials.token == rejected:
                try:
                    self._refresh()
                except GatewayError as exc:
                    self._refresh_failure = exc
                    raise
            return self._cached.credentials.token

    def _refresh(self) -> None:
        try:
            self._cached.credentials.refresh(_TokenRequest(self._timeout))
        except google.auth.exceptions.RefreshError as exc:
            raise GatewayError(f"the token endpoint refused the service account: {exc}",
                               code="oauth_refused", permanent=not exc.retryable) from exc
        except google.auth.exceptions.TransportError as exc:
            raise GatewayError(f"cannot reach the token endpoint: {exc}",
                               code="oauth_unreachable", permanent=False) from exc

    # --- sending ---------------------------------------------------------------------------

    async def _session_open(self, connect_timeout: float) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._concurrency),
            # sock_read, not total: a timeout while waiting for the reply is told apart from
            # one while connecting, because only the first can hide an accepted push.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout,
                                          sock_read=self._timeout),
            headers={"Content-Type": "application/json; charset=UTF-8"},
        )

    async def _send_batch(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        return await send_concurrently(batch, self._send_one, concurrency=self._concurrency)

    async def _send_one(self, outbound: OutboundMessage) -> SendResult | None:
        if self._unreachable:
            return None  # not attempted: back to the queue, no attempt spent
        if self._lost is not None:
            return SendResult(outbound.message_id, error=self._lost)
        body = _message_json(outbound)
        token = self._token
        result = await self._post(outbound, body, token)
        if result.error is not None and result.error.code == "UNAUTHENTICATED":
            try:
                self._token = await asyncio.to_thread(self._token_replace, token)
            except GatewayError as exc:
                # Without a token nothing else in the batch can go either.
                self._lost = GatewayError(f"not attempted: {exc.message}", code=exc.code,
                                          permanent=False)
                return SendResult(outbound.message_id, error=exc)
            result = await self._post(outbound, body, self._token)
        return result

    async def _post(self, outbound: OutboundMessage, body: bytes, token: str) -> SendResult:
        try:
            async with self._session.post(
                self._url, data=body, headers={"Authorization": f"Bearer {token}"},
            ) as response:
                raw = await response.read()
                status, retry_after = response.status, response.headers.get("Retry-After")
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # Nothing went out; the rest of the batch would fail the same way, so it is not
            # attempted and keeps its attempts.
            self._unreachable = True
            return SendResult(outbound.message_id, error=GatewayError(
                f"cannot connect to FCM: {exc}", code="connect_failed", permanent=False))
        except (aiohttp.ClientError, TimeoutError) as exc:
            return SendResult(outbound.message_id, error=GatewayError(
                f"no answer from FCM after the push was sent: {exc!r}", code="no_answer",
                permanent=False, in_doubt=True))
        if status != 200:
            return SendResult(outbound.message_id, error=_reply_error(status, retry_after, raw))
        try:
            name = str(json.loads(raw).get("name", ""))
        except (ValueError, AttributeError):
            name = ""  # accepted all the same
        return SendResult(outbound.message_id, provider_id=name,
                          cost=self.config.price_per_message)
