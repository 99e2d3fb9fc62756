"""Push to browsers through Web Push (RFC 8030), the payload encrypted for the subscription
(RFC 8291, aes128gcm) and the sender identified by VAPID (RFC 8292, py_vapid).

Address: the browser's subscription as `PushSubscription.toJSON()` gives it, stored as a
web-push Device's token: `{"endpoint": "https://fcm.googleapis.com/fcm/send/...", "keys":
{"p256dh": "<the browser's P-256 public key>", "auth": "<16-byte secret>"}}` (base64url). The
endpoint belongs to the browser's push service (Google's for Chrome, Mozilla's for Firefox,
Apple's for Safari, Microsoft's for Edge), so one batch goes to several hosts.
`webpush_subscription_errors` is the rule a subscription must pass, here and where the app
registers it: an https endpoint (http only on a loopback host, where a push service can only be
a local test or development one), a p256dh that is a point of P-256 and an auth of 16 bytes.
A subscription that breaks it fails its message with code `invalid_subscription`, which
deactivates the device.

Send: `POST <endpoint>` with `Content-Encoding: aes128gcm`, `TTL` (seconds the push service
keeps the message for an offline browser), `Urgency`, optionally `Topic` (a newer message with
the same topic replaces one not yet delivered) and `Authorization: vapid t=<JWT>, k=<public
key>`. The encrypted JSON is what the site's service worker reads in its `push` event:
`{"title", "body", "image"?, "link"?, "data": push_data()}`, the data carrying Engage's message
id with which the page reports the push read. The push service, not Engage, decides how big a
payload may be (RFC 8030 asks every one to take 4096 bytes of encrypted body, about 3,990 of
JSON), so nothing is cut or refused before it answers.

The encryption and VAPID signing, and what they cost, are in webpush_crypto.py.

Results, per message:
- 201 Created (any 2xx): sent, `provider_id` the push message's URL from `Location` (what
  RFC 8030 gives to follow or cancel it), or Engage's message id when there is none.
- 404 Not Found, 410 Gone: the subscription expired or was withdrawn (the browser unsubscribed,
  the site's permission revoked): permanent, codes `subscription_not_found` and
  `subscription_gone`, in DEAD_SUBSCRIPTION_CODES: the device is deactivated.
- 413 Payload Too Large: permanent (`payload_too_large`); the device stays.
- 401: the push service refused the VAPID JWT (signature, `aud`, `exp` or `sub`): the gateway's
  configuration, the same answer for every message to that push service. Transient
  (`vapid_refused`: once the key or subject is fixed the messages can go), the rest of the batch
  to that push service is not attempted, and the JWT is signed anew for the next batch.
- 403: the push service refuses this application server key for the subscription (FCM's answer
  when the subscription was made with another `applicationServerKey`, Apple's for a JWT it will
  not take): permanent (`vapid_forbidden`), but the device stays: after a key change by mistake
  every subscription would say so, and deactivating them all could not be undone.
- 400 and any other 4xx: permanent (`bad_request`, `HTTP_<status>`).
- 408, 429 and 5xx: transient, `retry_after` from Retry-After (a 429 without one waits
  `throttle_retry_after`, default 1 s). A 429 stays with its message: push services throttle per
  subscription as well as per sender.
- no connection: transient, and the rest of the batch to that push service is not attempted
  (no result: back to the queue, no attempt spent); no answer after the request went out (read
  timeout, dropped connection): in doubt, never resent.

Settings: `vapid_private_key` (secret: a PEM EC P-256 private key, or the raw 32-byte key in
base64url as `web-push generate-vapid-keys` prints it), `vapid_subject` (a `mailto:` address or an
`https:` URL where the push service's operator can reach the sender, required by RFC 8292),
`ttl` (seconds, default 86400), `urgency` (very-low, low, normal, high; default normal), `topic`
(optional, up to 32 URL-safe base64 characters) and the transport's `concurrency`, `timeout`,
`connect_timeout`, `throttle_retry_after`.

Health: there is no push service to probe without a subscription (each belongs to a browser),
so the probe proves what the gateway holds: the key signs a VAPID JWT that its public key
verifies, and it shows that public key, the `applicationServerKey` the site's
`pushManager.subscribe()` must be given (`vapid_application_server_key`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings as django_settings
from py_vapid import Vapid02, VapidException

from communications.gateways.base import (
    GatewayError,
    OutboundMessage,
    SendResult,
    gateway_error_text,
    push_data,
    register,
)
from communications.gateways.http_sms import (
    HttpBatchGateway,
    ProviderReply,
    ProviderRequest,
    transport_settings_errors,
)
from communications.gateways.webpush_crypto import (
    VAPID_LIFETIME,
    aes128gcm_encrypt,
    vapid_application_server_key,
    vapid_authorization,
    vapid_forget,
    vapid_private_key,
    vapid_signer,
    vapid_subject_problem,
)
from config.ssrf import PublicAddressResolver
from members.services.devices import BrowserKeys, webpush_subscription_read

# Codes after which the subscription will never work again: the device is deactivated.
DEAD_SUBSCRIPTION_CODES = frozenset({
    "subscription_gone", "subscription_not_found", "invalid_subscription"})
STATUS_CODES = {400: "bad_request", 401: "vapid_refused", 403: "vapid_forbidden",
                404: "subscription_not_found", 410: "subscription_gone",
                413: "payload_too_large", 429: "too_many_requests"}

DEFAULT_TTL = 86400
MAX_TTL = 28 * 86400  # FCM's and Apple's longest; RFC 8030 sets none
URGENCIES = ("very-low", "low", "normal", "high")
DEFAULT_URGENCY = "normal"
MAX_SUBSCRIPTION = 1024  # Message.address
_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


# --- the subscription ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Subscription:
    endpoint: str
    origin: str  # scheme://host[:port], the `aud` of its VAPID JWT
    keys: BrowserKeys


def _subscription_read(token: str) -> tuple[Subscription | None, dict[str, str]]:
    if len(token) > MAX_SUBSCRIPTION:
        return None, {"subscription": f"at most {MAX_SUBSCRIPTION} characters"}
    try:
        data = json.loads(token)
    except ValueError:
        data = None
    keys, errors = webpush_subscription_read(data)
    if keys is None:
        return None, errors
    endpoint = data["endpoint"]
    parts = urlsplit(endpoint)
    return Subscription(endpoint, f"{parts.scheme}://{parts.netloc}", keys), {}


def webpush_subscription_errors(token: str) -> dict[str, str]:
    """What is wrong with a browser's push subscription (its PushSubscription.toJSON() as
    text), keyed by field (`subscription`, `endpoint`, `keys.p256dh`, `keys.auth`); {} when
    it can be sent to."""
    return _subscription_read(token)[1]


def _origin(token: str) -> str:
    """The push service's origin of a subscription, "" for no subscription; only that: the
    whole rule is _subscription_read's (and costs a P-256 point check)."""
    try:
        parts = urlsplit(json.loads(token)["endpoint"])
    except (ValueError, TypeError, KeyError, AttributeError):
        return ""
    return f"{parts.scheme}://{parts.netloc}"


# --- the adapter --------------------------------------------------------------------------------

def _payload(outbound: OutboundMessage) -> bytes:
    payload: dict[str, Any] = {"title": outbound.subject, "body": outbound.body}
    if outbound.image_url:
        payload["image"] = outbound.image_url
    if outbound.link_url:
        payload["link"] = outbound.link_url
    payload["data"] = push_data(outbound)
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _int_in(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


@register
class WebPushGateway(HttpBatchGateway):
    provider = "webpush"
    channels = frozenset({"push"})
    provider_label = "the push service"
    secret_settings = ("vapid_private_key",)
    dead_address_codes = DEAD_SUBSCRIPTION_CODES

    @classmethod
    def settings_errors(cls, settings: Mapping[str, Any]) -> dict[str, str]:
        errors = transport_settings_errors(settings)
        try:
            vapid_private_key(settings.get("vapid_private_key"))
        except ValueError as exc:
            errors["vapid_private_key"] = str(exc)
        problem = vapid_subject_problem(settings.get("vapid_subject"))
        if problem:
            errors["vapid_subject"] = problem
        if "ttl" in settings and not _int_in(settings["ttl"], 0, MAX_TTL):
            errors["ttl"] = f"must be a whole number of seconds, 0 to {MAX_TTL} (28 days)"
        if "urgency" in settings and settings["urgency"] not in URGENCIES:
            errors["urgency"] = f"must be one of {', '.join(URGENCIES)}"
        if "topic" in settings and settings["topic"] != "" and not (
                isinstance(settings["topic"], str) and _TOPIC.match(settings["topic"])):
            errors["topic"] = "must be at most 32 URL-safe base64 characters (A-Z a-z 0-9 - _)"
        return errors

    def open(self) -> None:
        super().open()  # refuses bad settings before the key is read
        s = self.config.settings
        self._vapid = vapid_signer(s)
        self._public_key = vapid_application_server_key(s)
        self._subject = str(s["vapid_subject"])
        self._headers = {"Content-Encoding": "aes128gcm",
                         "Content-Type": "application/octet-stream",
                         "TTL": str(s.get("ttl", DEFAULT_TTL)),
                         "Urgency": str(s.get("urgency") or DEFAULT_URGENCY)}
        if s.get("topic"):
            self._headers["Topic"] = str(s["topic"])
        self._read: dict[str, tuple[Subscription | None, dict[str, str]]] = {}

    def health(self) -> tuple[bool, str]:
        """The key signs a VAPID JWT its public key verifies; no request is made, as a push
        service can only be reached through a browser's subscription."""
        problem = self._settings_problem()
        if problem is not None:
            return False, gateway_error_text(problem)
        s = self.config.settings
        try:
            headers = vapid_signer(s).sign({"aud": "https://push.example.invalid",
                                      "sub": s["vapid_subject"],
                                      "exp": int(time.time()) + VAPID_LIFETIME})
            verified = Vapid02.verify(headers["Authorization"])
        except (VapidException, ValueError, KeyError) as exc:
            return False, f"the VAPID key does not sign: {exc!r}"
        if not verified:
            return False, "the VAPID JWT does not verify with the key's own public half"
        return True, (f"VAPID key signs for {s['vapid_subject']}; applicationServerKey "
                      f"{vapid_application_server_key(s)}")

    def _resolver(self) -> PublicAddressResolver | None:
        # A member's browser chose the endpoint, so only public push services are called
        # (SSRF); a host written as an address is refused by webpush_subscription_read.
        return None if django_settings.ENGAGE_PUSH_ALLOW_LOOPBACK else PublicAddressResolver()

    def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        # address -> what _subscription_read made of it, for this batch's messages only
        self._read = {}
        return super().send(batch)

    def _subscription(self, address: str) -> Subscription:
        read = self._read.get(address)
        if read is None:
            read = self._read[address] = _subscription_read(address)
        subscription, errors = read
        if subscription is None:
            raise GatewayError("not a usable web-push subscription: " + "; ".join(
                f"{field}: {text}" for field, text in sorted(errors.items())),
                code="invalid_subscription", permanent=True)
        return subscription

    def _halt_scope(self, outbound: OutboundMessage) -> str:
        try:
            return self._subscription(outbound.address).origin
        except GatewayError:
            return _origin(outbound.address)

    def _request(self, outbound: OutboundMessage) -> ProviderRequest:
        subscription = self._subscription(outbound.address)
        keys = subscription.keys
        body = aes128gcm_encrypt(_payload(outbound), p256dh=keys.p256dh, auth=keys.auth,
                                 browser_key=keys.public_key)
        try:
            authorization = vapid_authorization(
                self._vapid, public_key=self._public_key, subject=self._subject,
                origin=subscription.origin)
        except VapidException as exc:
            # py_vapid names only scheme://host[:port] as `aud`, which _endpoint_problem
            # already asks of every endpoint: kept so that a gap between the two fails one
            # message, not the batch.
            raise GatewayError(f"cannot sign VAPID for {subscription.origin}: {exc}",
                               code="vapid_unsigned", permanent=True) from exc
        return ProviderRequest("POST", subscription.endpoint, body,
                               {**self._headers, "Authorization": authorization})

    def _result(self, outbound: OutboundMessage, reply: ProviderReply) -> SendResult:
        status = reply.status
        if 200 <= status < 300:
            # The column holds 200 characters; a push message's URL ends in its id.
            location = reply.headers.get("Location") or str(outbound.message_id)
            return SendResult(outbound.message_id, provider_id=location[-200:],
                              cost=self.config.price_per_message)
        origin = self._halt_scope(outbound)
        code = STATUS_CODES.get(status, f"HTTP_{status}")
        text = f"{status} from {origin}: {reply.snippet()}"
        if status == 401:
            # Signed anew for the next batch: a JWT the push service stopped taking (a clock
            # ahead of ours) must not stay cached for hours.
            vapid_forget(public_key=self._public_key, subject=self._subject, origin=origin)
            return SendResult(outbound.message_id, error=GatewayError(
                text, code=code, permanent=False))
        if status in (408, 429) or status >= 500:
            return SendResult(outbound.message_id, error=GatewayError(
                text, code=code, permanent=False, retry_after=self._throttled(reply)))
        return SendResult(outbound.message_id, error=GatewayError(text, code=code,
                                                                  permanent=True))
