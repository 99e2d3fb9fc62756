"""SMS through Twilio's Programmable Messaging REST API.

Each SMS is one `POST {base_url}/2010-04-01/Accounts/{account_sid}/Messages.json`, form-encoded
(To, From or MessagingServiceSid, Body, StatusCallback), with HTTP basic auth of the account
SID and auth token. Twilio has no batch endpoint, so a batch goes out as `concurrency` requests
in flight over one aiohttp session (http_sms.HttpBatchGateway).

Settings: `account_sid` (AC...), `auth_token`, optionally `messaging_service_sid` (MG...: Twilio
then picks the sender from the service's pool; otherwise `from`, else the gateway's sender id, is
the From), `base_url` (default https://api.twilio.com), `status_callback_url` (where Twilio posts
status callbacks: by default ENGAGE_PUBLIC_URL + hooks/twilio/<gateway id>/status; "" sends none,
leaving the messaging service's own callback), `concurrency` (default 16), `timeout` (default
10), `connect_timeout` (default 5), `throttle_retry_after` (default 1).

Results, per message:
- 201: sent, `provider_id` the message SID (SM...), cost the gateway price per segment Twilio
  counted (`num_segments`).
- 400 with a Twilio error code (21211 invalid To, 21610 the member replied STOP to the sender,
  21614 not a mobile number, ...): permanent, `code` Twilio's number.
- 429 (20429) and the queue-full code 21611: transient, `retry_after` from Retry-After (or
  `throttle_retry_after`).
- 5xx and no connection: transient. 401 (20003, wrong SID or token): transient, and the rest of
  the batch is not attempted.
- no answer after the request went out: in doubt (the Messages API has no idempotency key, so
  a resend could deliver twice).

Status callbacks (communications.webhooks_http_sms.twilio_status) are signed by Twilio with the
auth token (X-Twilio-Signature, checked with the `twilio` package's RequestValidator) and mapped
by `status_callback_receipt`: delivered, undelivered (with Twilio's ErrorCode, 30003 unreachable
handset and so on), failed (Twilio could not send it: rejected) and read (WhatsApp: opened);
accepted, queued, sending and sent say nothing Engage has not recorded at send.

The health probe fetches the account resource: it proves the SID and token and that the account
is active, and sends nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from django.conf import settings as django_settings
from django.urls import reverse
from twilio.request_validator import RequestValidator

from communications.gateways.base import (
    GatewayError,
    OutboundMessage,
    Receipt,
    SendResult,
    gateway_error_text,
    register,
)
from communications.gateways.http_sms import (
    HttpBatchGateway,
    ProviderReply,
    ProviderRequest,
    basic_authorization,
    is_http_url,
    scalar_text,
    transport_settings_errors,
)
from communications.sms_encoding import sms_parts

TWILIO_BASE_URL = "https://api.twilio.com"
SIGNATURE_HEADER = "X-Twilio-Signature"
_SID = {"account_sid": re.compile(r"^AC[0-9a-fA-F]{32}$"),
        "messaging_service_sid": re.compile(r"^MG[0-9a-fA-F]{32}$")}

# Twilio error codes the Messages API answers at send, and what they mean. Any 4xx code not in
# TRANSIENT_CODES is permanent; this table names the usual ones for the marketer.
PERMANENT_CODES: dict[str, str] = {
    "21211": "invalid 'To' phone number",
    "21212": "invalid 'From' phone number",
    "21408": "sending to this region is not enabled on the account",
    "21602": "message body is required",
    "21606": "the 'From' number cannot send SMS",
    "21610": "the member replied STOP to this sender",
    "21612": "the 'To' number cannot be reached from this sender",
    "21614": "the 'To' number is not a mobile number",
    "21617": "message body over 1600 characters",
    "21659": "the 'From' number is not a Twilio number of this account",
}
# The member replied STOP to the sender's number: Twilio blocks it, and so must Engage.
OPTED_OUT_CODES = frozenset({"21610"})
TRANSIENT_CODES: dict[str, str] = {
    "20429": "too many requests",
    "21611": "the sender's queue of messages is full",
    "20500": "Twilio internal error",
    "20503": "Twilio service unavailable",
}
AUTH_CODE = "20003"

# MessageStatus in a status callback -> Engage's status; the others (accepted, queued, sending,
# sent, canceled, ...) change nothing.
CALLBACK_STATUSES: dict[str, str] = {
    "delivered": "delivered",
    "undelivered": "undelivered",
    "failed": "rejected",
    "read": "opened",
}
# ErrorCode on undelivered / failed callbacks.
DELIVERY_ERRORS: dict[str, str] = {
    "30001": "queue overflow",
    "30002": "account suspended",
    "30003": "unreachable destination handset",
    "30004": "message blocked by the recipient or carrier",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
    "30007": "filtered by the carrier as spam",
    "30008": "unknown error from the carrier",
    "30034": "sender not registered for A2P 10DLC",
}


def status_callback_url(*, gateway_id: int, settings: Mapping[str, Any]) -> str:
    """The StatusCallback sent with each message; Twilio signs its callbacks over this URL."""
    configured = settings.get("status_callback_url")
    if configured is not None:
        return str(configured)
    path = reverse("twilio-status", args=[gateway_id])
    return f"{django_settings.ENGAGE_PUBLIC_URL}{path}"


def status_callback_signed(*, auth_token: str, urls: Sequence[str], params: Any,
                           signature: str) -> bool:
    """Whether Twilio signed this callback: with the auth token, over one of `urls` (the URL
    the message named, or the one this request came in on) and the posted fields."""
    if not auth_token or not signature:
        return False
    validator = RequestValidator(auth_token)
    return any(validator.validate(url, params, signature) for url in urls if url)


def status_callback_receipt(params: Mapping[str, str], *, received_at: datetime
                            ) -> Receipt | None:
    """The receipt in a status callback, None for a state that is not news (queued, sent).
    Raises ValueError when the callback names no message or no status."""
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    state = (params.get("MessageStatus") or params.get("SmsStatus") or "").lower()
    if not sid or not state:
        raise ValueError("a status callback needs MessageSid and MessageStatus")
    status = CALLBACK_STATUSES.get(state)
    if status is None:
        return None
    error_code = params.get("ErrorCode") or ""
    detail = DELIVERY_ERRORS.get(error_code, "")
    detail = f"Twilio {state}" + (f" ({error_code}: {detail})" if detail else
                                  f" ({error_code})" if error_code else "")
    return Receipt(provider_id=sid, status=status, occurred_at=received_at,
                   code=error_code or state, detail=detail)


def _twilio_error(reply: ProviderReply, retry_after: float | None) -> GatewayError:
    data = reply.json()
    data = data if isinstance(data, dict) else {}
    code = scalar_text(data.get("code")) or ""
    text = scalar_text(data.get("message")) or reply.snippet()
    label = f"{reply.status} {code}".strip()
    if reply.status == 401 or code == AUTH_CODE:
        return GatewayError(f"{label}: Twilio refused the account SID or auth token: {text}",
                            code=code or AUTH_CODE, permanent=False)
    if reply.status == 429 or reply.status >= 500 or code in TRANSIENT_CODES:
        return GatewayError(f"{label}: {text}", code=code or f"HTTP_{reply.status}",
                            permanent=False, retry_after=retry_after)
    meaning = PERMANENT_CODES.get(code)
    return GatewayError(f"{label}: {text}" + (f" ({meaning})" if meaning else ""),
                        code=code or f"HTTP_{reply.status}", permanent=True,
                        opted_out=code in OPTED_OUT_CODES)


@register
class TwilioGateway(HttpBatchGateway):
    provider = "twilio"
    channels = frozenset({"sms"})
    provider_label = "Twilio"
    secret_settings = ("auth_token",)

    @classmethod
    def settings_errors(cls, settings: Mapping[str, Any]) -> dict[str, str]:
        errors = transport_settings_errors(settings)
        if not isinstance(settings.get("account_sid"), str) or \
                not _SID["account_sid"].match(settings["account_sid"]):
            errors["account_sid"] = ("required: the account SID from the Twilio console, AC "
                                     "and 32 hex digits")
        if not isinstance(settings.get("auth_token"), str) or not settings["auth_token"]:
            errors["auth_token"] = "required: the account's auth token from the Twilio console"
        if "messaging_service_sid" in settings and (
                not isinstance(settings["messaging_service_sid"], str)
                or not _SID["messaging_service_sid"].match(settings["messaging_service_sid"])):
            errors["messaging_service_sid"] = ("must be a messaging service SID, MG and 32 "
                                               "hex digits")
        if "from" in settings and (not isinstance(settings["from"], str) or not settings["from"]):
            errors["from"] = "must be a Twilio number in E.164 (+1...) or an alphanumeric sender id"
        if "base_url" in settings and not is_http_url(settings["base_url"]):
            errors["base_url"] = "must be an http(s) URL, e.g. https://api.twilio.com"
        callback = settings.get("status_callback_url")
        if callback not in (None, "") and not is_http_url(callback):
            errors["status_callback_url"] = ("must be the public http(s) URL of "
                                             "hooks/twilio/<gateway id>/status, or \"\" for none")
        return errors

    def open(self) -> None:
        s = self.config.settings
        problem = self._settings_problem()
        if problem is not None:
            raise problem
        self._sender = {"MessagingServiceSid": s["messaging_service_sid"]} \
            if s.get("messaging_service_sid") else {"From": s.get("from") or self.config.sender}
        if not any(self._sender.values()):
            raise GatewayError("the gateway has no sender: set its sender id, `from` or "
                               "`messaging_service_sid`", code="settings", permanent=True)
        base = str(s.get("base_url") or TWILIO_BASE_URL).rstrip("/")
        self._account_url = f"{base}/2010-04-01/Accounts/{quote(s['account_sid'])}.json"
        self._url = f"{base}/2010-04-01/Accounts/{quote(s['account_sid'])}/Messages.json"
        self._callback = status_callback_url(gateway_id=self.config.gateway_id, settings=s)
        self._headers = {"Authorization": basic_authorization(s["account_sid"], s["auth_token"]),
                         "Content-Type": "application/x-www-form-urlencoded",
                         "Accept": "application/json"}
        super().open()

    def _request(self, outbound: OutboundMessage) -> ProviderRequest:
        form = {"To": outbound.address, **self._sender, "Body": outbound.body}
        if self._callback:
            form["StatusCallback"] = self._callback
        return ProviderRequest("POST", self._url, urlencode(form).encode(), self._headers)

    def _result(self, outbound: OutboundMessage, reply: ProviderReply) -> SendResult:
        if reply.status in (200, 201):
            data = reply.json()
            sid = scalar_text(data.get("sid")) if isinstance(data, dict) else None
            if not sid:
                return SendResult(outbound.message_id, error=GatewayError(
                    f"{reply.status}: Twilio answered without a message SID: {reply.snippet()}",
                    code="no_provider_id", permanent=False, in_doubt=True))
            segments = scalar_text(data.get("num_segments"))
            count = int(segments) if segments and segments.isdigit() and int(segments) > 0 \
                else max(1, sms_parts(outbound.body).segments)
            return SendResult(outbound.message_id, provider_id=sid,
                              cost=self.config.price_per_message * count)
        return SendResult(outbound.message_id, error=_twilio_error(reply, self._throttled(reply)))

    def health(self) -> tuple[bool, str]:
        """Fetch the account with the gateway's SID and token: proves the credentials, and
        that the account is active, without sending anything."""
        try:
            self.open()
        except GatewayError as error:
            return False, gateway_error_text(error)
        try:
            reply = self._loop.run_until_complete(self._exchange(ProviderRequest(
                "GET", self._account_url, None,
                {name: value for name, value in self._headers.items() if name != "Content-Type"})))
        except (aiohttp.ClientError, TimeoutError) as exc:
            return False, f"cannot reach Twilio: {exc!r}"
        finally:
            self.close()
        if reply.status != 200:
            return False, gateway_error_text(_twilio_error(reply, None))
        data = reply.json()
        data = data if isinstance(data, dict) else {}
        status, name = data.get("status"), data.get("friendly_name") or data.get("sid")
        if status != "active":
            return False, f"the Twilio account {name} is {status}"
        return True, f"the Twilio account {name} is active"
