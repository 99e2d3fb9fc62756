"""Email through an email service's HTTP API (Postmark, Mailgun, SendGrid, ...) by django-anymail.

Settings: `esp`, the anymail backend's module name (`postmark`, `mailgun`, `sendgrid`,
`amazon_ses`, `brevo`, `sparkpost`, ...: the backend is `anymail.backends.<esp>.EmailBackend`);
the ESP's credentials and options under anymail's own names, handed to the backend as they are
(Postmark `server_token`, `message_stream`; Mailgun `api_key`, `sender_domain`; SendGrid
`api_key`; ...) with `api_url` to point it elsewhere (a region, or the test peer); `timeout`
(seconds waiting for a reply, default 10) and `connect_timeout` (default 5); `concurrency`
(API calls in flight, each on a connection of its own, 1 to 100, default 16);
`throttle_retry_after` (seconds to slow down after a 429 that names no Retry-After, default 1);
`batch_size` (Postmark: messages per `/email/batch` call, 1 to 500, default 500); optional `tag`,
`track_opens`, `track_clicks`.

Postmark: a batch goes out through `POST /email/batch`, up to `batch_size` distinct messages in
one call (each its own To, Subject, bodies, Headers and Metadata), answered with one entry per
message in the order sent. Each message's JSON is built by anymail's own Postmark payload, so
anymail still normalizes addresses, headers, tags and tracking; only the call is ours. Every
other ESP, and Postmark with anymail's `use_bulk_api`: every message is its own API call through
the anymail backend. (Why: a request per message through requests and anymail cost ~1.4 ms of
CPU, more than the message itself; one call per 500 takes that cost once, leaving anymail's
payload, ~0.2 ms a message.)

A batch is cut into calls (one per message, or per `batch_size` messages for Postmark). The
calling thread prepares each call in turn (for Postmark, its messages' payloads: the CPU) and
hands it to the next free connection of up to `concurrency`, each an anymail backend of its own
(a `requests.Session`, which threads must not share) posting on a thread of its own, so the
next call is prepared while the last waits for the ESP; results come back in batch order.
Backends are opened as a batch needs them and kept until `close()`. Threads only overlap
waiting: the default of 16 is for the per-message path against a distant ESP; a batch of
Engage's usual 500 is one Postmark call, posted on the calling thread. Each message
carries a Message-ID and anymail `metadata` {"engage_message_id": id} that map it back to our
Message row, and the message's List-Unsubscribe headers. `provider_id` is the ESP's own message
id: its tracking webhooks (`communications.anymail_tracking`) name the message by it.

Results, per message (anymail's `anymail_status`, or the message's entry in a batch reply):
- sent / queued / scheduled (batch: ErrorCode 0): sent, with the ESP's message id.
- rejected / invalid (Postmark ErrorCode 406 inactive recipient, 300 invalid address, or any
  other ErrorCode in a batch entry): permanent, with the ESP's code and text; in a batch, only
  that message fails.
A Postmark call that fails as a whole (below: an HTTP status, no connection, no answer) gives
its error to every message of the call.
- HTTP 429: transient with `retry_after` (Retry-After, else `throttle_retry_after`); the rest of
  the batch is not attempted (it would be refused the same way).
- HTTP 5xx and 408: transient, `retry_after` from Retry-After when the ESP sends one.
- HTTP 401 / 403 (a revoked or wrong key): transient, so the messages wait for the operator to
  fix the gateway instead of failing for good; the rest of the batch is not attempted.
- Any other HTTP 4xx: permanent.
- Cannot connect (refused, DNS, TLS, connect timeout): transient, the rest not attempted.
- No answer after the request went out (read timeout, connection dropped), or a batch reply
  that cannot be read: in doubt, since the ESP may have accepted it; the rest of the batch is
  not attempted.
"The rest not attempted": the calls not yet handed to a connection get no result after a
lost connection (they go back to the queue, no attempt spent), and after a throttle or refused
credentials a transient "not attempted" error with the same code and wait (never in doubt);
those already on their way keep their own answers.
(Anymail's pre_send / post_send signals fire on the per-message path only; Engage connects
none.)
"""

from __future__ import annotations

import importlib.util
import queue
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import requests
from anymail.exceptions import (
    AnymailAPIError,
    AnymailConfigurationError,
    AnymailError,
)
from django.core.mail import EmailMultiAlternatives, get_connection
from urllib3.exceptions import NewConnectionError

from communications.gateways.base import (
    BaseGateway,
    GatewayError,
    OutboundMessage,
    SendResult,
    gateway_error_text,
    register,
)
from communications.gateways.email_message import email_message_build
from communications.gateways.postmark_batch import (
    GIVE_BACK,
    POSTMARK_BATCH_LIMIT,
    PostmarkBatch,
    refused_before_sending,
)
from config.retry_after import retry_after_seconds

PROVIDER = "anymail"
# Settings Engage reads itself; every other key is an anymail backend option.
OWN_SETTINGS = frozenset({
    "esp", "timeout", "connect_timeout", "throttle_retry_after", "tag", "track_opens",
    "track_clicks", "message_id_domain", "rate_per_second", "inbound_secret", "concurrency",
    "batch_size",
})
# Modules of anymail.backends that are not an ESP: the bases, and anymail's own test and
# console backends (Engage's file_sink and console gateways are the development sinks).
NOT_AN_ESP = frozenset({"base", "base_requests", "test", "console"})
SENT_STATUSES = frozenset({"sent", "queued", "scheduled", "unknown"})
DEFAULT_TIMEOUT = 10.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_THROTTLE_RETRY_AFTER = 1.0
DEFAULT_CONCURRENCY = 16
# Each is a thread with a connection of its own, not a task on an event loop.
MAX_CONCURRENCY = 100
_ESP_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_MISSING_SETTING = re.compile(r"ANYMAIL = \{'([A-Z0-9_]+)'")


def esp_backend_path(esp: str) -> str:
    return f"anymail.backends.{esp}.EmailBackend"


def esp_key(esp_name: str) -> str:
    """The `esp` setting for anymail's display name of an ESP ("Amazon SES" -> amazon_ses)."""
    return esp_name.strip().lower().replace(" ", "_")


def _esp_problem(esp: Any) -> str:
    if not isinstance(esp, str) or not _ESP_NAME.match(esp):
        return "required: the anymail backend of the email service, e.g. postmark or mailgun"
    if esp in NOT_AN_ESP or importlib.util.find_spec(f"anymail.backends.{esp}") is None:
        return f"anymail has no email service backend {esp!r} (anymail.backends.{esp})"
    return ""


def _number_problem(value: Any, *, low: float, high: float) -> bool:
    return (isinstance(value, bool) or not isinstance(value, int | float)
            or not low <= value <= high)


def _backend_options(settings: Mapping[str, Any]) -> dict[str, Any]:
    options = {key: value for key, value in settings.items() if key not in OWN_SETTINGS}
    options["timeout"] = (float(settings.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT)),
                          float(settings.get("timeout", DEFAULT_TIMEOUT)))
    # Recipients refused by the ESP are read from anymail_status, message by message.
    options["ignore_recipient_status"] = True
    return options


def _backend(settings: Mapping[str, Any]) -> Any:
    """The anymail backend for these settings, or GatewayError(code="settings") naming what is
    missing in our setting names (anymail's own message speaks of ANYMAIL settings)."""
    esp = str(settings.get("esp", ""))
    try:
        return get_connection(esp_backend_path(esp), fail_silently=False,
                              **_backend_options(settings))
    except AnymailConfigurationError as exc:
        missing = _MISSING_SETTING.search(str(exc))
        if missing:
            prefix = f"{esp.upper()}_"
            name = missing.group(1).removeprefix(prefix).lower()
            raise GatewayError(f"{name}: required by {esp} (anymail's {missing.group(1)})",
                               code="settings", permanent=True) from exc
        raise GatewayError(f"esp: {exc}", code="settings", permanent=True) from exc
    except (ImportError, TypeError, ValueError) as exc:
        raise GatewayError(f"esp: the {esp} backend cannot start: {exc}", code="settings",
                           permanent=True) from exc


def _reply(response: Any) -> tuple[str, str]:
    """The ESP's own error code and text from a JSON reply (Postmark: ErrorCode / Message)."""
    if response is None:
        return "", ""
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return "", (getattr(response, "text", "") or "")[:300]
    code = next((str(data[key]) for key in ("ErrorCode", "code", "error_code")
                 if data.get(key) not in (None, "")), "")
    text = next((str(data[key]) for key in ("Message", "message", "error", "detail")
                 if data.get(key)), "")
    return code, text[:500]


def _nothing_sent(cause: BaseException | None) -> bool:
    """True when the request failed before any of it reached the ESP."""
    if isinstance(cause, requests.ConnectTimeout | requests.exceptions.SSLError
                  | requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
        return True
    if isinstance(cause, requests.ConnectionError) and cause.args:
        return isinstance(getattr(cause.args[0], "reason", None), NewConnectionError)
    return False


@register
class AnymailGateway(PostmarkBatch, BaseGateway):
    provider = PROVIDER
    channels = frozenset({"email"})
    # Anymail's names for ESP credentials (Postmark server_token; Mailgun, SendGrid, Brevo,
    # SparkPost ... api_key; MailerSend, Mailtrap api_token; Mailjet secret_key; Amazon SES
    # boto3 session_params / client_params, which may hold the AWS keys).
    secret_settings = ("server_token", "api_key", "api_token", "secret_key", "password",
                       "session_params", "client_params")

    @classmethod
    def settings_errors(cls, settings: Mapping[str, Any]) -> dict[str, str]:
        errors: dict[str, str] = {}
        problem = _esp_problem(settings.get("esp"))
        if problem:
            errors["esp"] = problem
        api_url = settings.get("api_url")
        if api_url is not None and (not isinstance(api_url, str)
                                    or urlsplit(api_url).scheme not in ("http", "https")
                                    or not urlsplit(api_url).netloc):
            errors["api_url"] = "must be an http(s) URL, e.g. https://api.postmarkapp.com/"
        for key in ("timeout", "connect_timeout"):
            if key in settings and _number_problem(settings[key], low=0.1, high=300):
                errors[key] = "must be a number of seconds from 0.1 to 300"
        if ("throttle_retry_after" in settings
                and _number_problem(settings["throttle_retry_after"], low=0, high=3600)):
            errors["throttle_retry_after"] = "must be a number of seconds from 0 to 3600"
        concurrency = settings.get("concurrency", DEFAULT_CONCURRENCY)
        if (not isinstance(concurrency, int) or isinstance(concurrency, bool)
                or not 1 <= concurrency <= MAX_CONCURRENCY):
            errors["concurrency"] = (f"must be a whole number of messages in flight, 1 to "
                                     f"{MAX_CONCURRENCY}")
        batch_size = settings.get("batch_size", POSTMARK_BATCH_LIMIT)
        if (not isinstance(batch_size, int) or isinstance(batch_size, bool)
                or not 1 <= batch_size <= POSTMARK_BATCH_LIMIT):
            errors["batch_size"] = (f"must be a whole number of messages per call, 1 to "
                                    f"{POSTMARK_BATCH_LIMIT}")
        if "tag" in settings and not isinstance(settings["tag"], str):
            errors["tag"] = "must be text"
        for key in ("track_opens", "track_clicks"):
            if key in settings and not isinstance(settings[key], bool):
                errors[key] = "must be true or false"
        if not errors:
            # Anymail itself knows what each ESP requires: build the backend (no network).
            try:
                _backend(settings)
            except GatewayError as exc:
                name, _, text = exc.message.partition(": ")
                errors[name] = text
        return errors

    def open(self) -> None:
        self._esp = str(self.config.settings.get("esp"))
        self._concurrency = int(self.config.settings.get("concurrency", DEFAULT_CONCURRENCY))
        self._backends: list[Any] = []
        self._backend = self._backend_open()
        # Anymail's bulk API sends one message to many; Engage's messages are each their own.
        self._batch_size = (int(self.config.settings.get("batch_size", POSTMARK_BATCH_LIMIT))
                            if self._esp == "postmark" and not self._backend.use_bulk_api
                            else 0)

    def _backend_open(self) -> Any:
        backend = _backend(self.config.settings)
        try:
            backend.open()
        except Exception as exc:  # noqa: BLE001  (whatever the ESP's client raises on start)
            raise GatewayError(f"cannot open a session to {self._esp}: {exc}",
                               code="connect_failed", permanent=False) from exc
        self._backends.append(backend)
        return backend

    def close(self) -> None:
        for backend in getattr(self, "_backends", ()):
            try:
                backend.close()
            except Exception:  # noqa: BLE001  (closing must not mask the batch result)
                pass
        self._backends = []

    def health(self) -> tuple[bool, str]:
        """Ask the ESP's API who we are with these credentials (Postmark GET /server, Mailgun
        GET /domains/<sender_domain>); for another ESP, only that anymail accepts the
        settings."""
        try:
            self.open()
        except GatewayError as error:
            return False, gateway_error_text(error)
        probe = HEALTH_PROBES.get(self._esp)
        if probe is None:
            self.close()
            return True, f"settings accepted by anymail's {self._esp} backend (no API probe)"
        try:
            path, request_options = probe(self._backend)
            response = self._backend.session.get(
                self._backend.api_url + path, timeout=_backend_options(
                    self.config.settings)["timeout"], **request_options)
        except requests.RequestException as exc:
            return False, f"transient [connect_failed]: cannot reach {self._esp}: {exc}"
        finally:
            self.close()
        if response.status_code == 200:
            return True, f"connected: {self._esp} accepted the credentials"
        status = response.status_code
        code, text = _reply(response)
        kind = "transient" if status in (401, 403, 408, 429) or status >= 500 else "permanent"
        return False, f"{kind} [{code or status}]: {self._esp} answered {status}: {text}"

    def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        size = self._batch_size or 1
        calls = [range(first, min(first + size, len(batch)))
                 for first in range(0, len(batch), size)]
        threads = max(1, min(self._concurrency, len(calls)))
        while len(self._backends) < threads:
            self._backend_open()
        free: queue.SimpleQueue[Any] = queue.SimpleQueue()  # backends with no call on them
        for backend in self._backends[:threads]:
            free.put(backend)
        results: list[SendResult | None] = [None] * len(batch)
        lock = threading.Lock()
        halt: list[GatewayError] = []  # the error of every message not yet taken, once set

        def halted(call: range) -> bool:
            with lock:
                stop = halt[0] if halt else None
            if stop is not None and stop is not GIVE_BACK:
                for index in call:
                    results[index] = SendResult(batch[index].message_id, error=stop)
            return stop is not None

        def post(backend: Any, call: range, prepared: Any) -> None:
            try:
                results[call.start:call.stop], stop = self._post(backend, prepared)
                if stop is not None:
                    with lock:
                        if not halt:
                            halt.append(stop)
            except BaseException:
                # The batch raises once every call on its way is done: meanwhile no other
                # call starts, as none would after a sequential batch raised.
                with lock:
                    halt[:] = [GatewayError("not attempted: the batch was aborted",
                                            code="not_attempted", permanent=False)]
                raise
            finally:
                # Only now may the next call take this connection: after any halt is set.
                free.put(backend)

        # The calling thread prepares each call (for Postmark, anymail's payloads: the CPU)
        # while the calls before it wait for the ESP on the pool's threads.
        with ThreadPoolExecutor(max_workers=threads,
                                thread_name_prefix=f"anymail-{self._esp}") as pool:
            posted = []
            for call in calls:
                if halted(call):
                    continue
                prepared = self._prepare([batch[index] for index in call])
                backend = free.get()
                if halted(call):
                    free.put(backend)
                    continue
                if len(calls) == 1:
                    post(backend, call, prepared)
                else:
                    posted.append(pool.submit(post, backend, call, prepared))
            for done in posted:
                done.result()
        # Every slot is filled by a call or a halt, except those a lost connection gives back.
        return [result for result in results if result is not None]

    def _prepare(self, call: list[OutboundMessage]) -> Any:
        return self._postmark_batch_prepare(call) if self._batch_size else call

    def _post(self, backend: Any, prepared: Any
              ) -> tuple[list[SendResult], GatewayError | None]:
        if self._batch_size:
            return self._postmark_batch_post(backend, prepared)
        return self._send_one(backend, prepared)

    def _email(self, outbound: OutboundMessage) -> EmailMultiAlternatives:
        email = email_message_build(outbound, sender=self.config.sender,
                                    message_id=self.message_id_header(outbound.message_id))
        settings = self.config.settings
        # Anymail attributes: metadata travels with the message and comes back in every
        # tracking event, so an event maps to our Message even before its ESP id is stored.
        email.metadata = {"engage_message_id": str(outbound.message_id)}
        if settings.get("tag"):
            email.tags = [settings["tag"]]
        for key in ("track_opens", "track_clicks"):
            if key in settings:
                setattr(email, key, settings[key])
        return email

    def _send_one(self, backend: Any, call: Sequence[OutboundMessage]
                  ) -> tuple[list[SendResult], GatewayError | None]:
        """The result of the call's one message on `backend` (its own API call through the
        anymail backend), and the error every message of the batch not yet taken gets without
        being attempted (None: carry on)."""
        [outbound] = call
        email = self._email(outbound)
        try:
            backend.send_messages([email])
        except AnymailAPIError as exc:
            error, stop = self._api_error(exc)
            return [self._failed(outbound, error)], stop
        except (AnymailError, AnymailConfigurationError) as exc:
            return [self._failed(outbound, refused_before_sending(exc))], None
        return [self._status_result(outbound, email)], None

    @staticmethod
    def _failed(outbound: OutboundMessage, error: GatewayError) -> SendResult:
        return SendResult(outbound.message_id, error=error)

    def _status_result(self, outbound: OutboundMessage,
                       email: EmailMultiAlternatives) -> SendResult:
        status = getattr(email, "anymail_status", None)
        recipients = getattr(status, "recipients", None) or {}
        # One recipient per message: its entry, whatever case the ESP reported it in.
        recipient = next(iter(recipients.values()), None)
        if recipient is None:
            return self._failed(outbound, GatewayError(
                f"{self._esp} was not asked: the message has no recipient",
                code="no_address", permanent=True))
        response = getattr(status, "esp_response", None)
        refused = (getattr(response, "status_code", 200) or 200) >= 400
        # "unknown": anymail could not tell this recipient's fate from a reply that took the
        # call (sent), or from a refusal it could not parse (Postmark's 422: not sent).
        if recipient.status in SENT_STATUSES and not (recipient.status == "unknown"
                                                      and refused):
            return SendResult(outbound.message_id,
                              provider_id=str(recipient.message_id or status.message_id or ""),
                              cost=self.config.price_per_message)
        code, text = _reply(response)
        return self._failed(outbound, GatewayError(
            f"{self._esp} refused the recipient ({recipient.status}): {text}".rstrip(": "),
            code=(code or recipient.status)[:32], permanent=True))

    def _api_error(self, exc: AnymailAPIError) -> tuple[GatewayError, GatewayError | None]:
        cause = exc.__cause__ if isinstance(exc.__cause__, requests.RequestException) else None
        if isinstance(exc, requests.RequestException) and exc.response is None and cause:
            return self._unanswered(cause)
        status = exc.status_code
        if status is None:
            # An API error without an HTTP reply (an SDK-based ESP): the call failed.
            return GatewayError(f"{self._esp}: {exc.args[0] if exc.args else exc}",
                                code="api_error", permanent=False), None
        if 200 <= status < 300:
            # The ESP took the call but its reply cannot be read: it may have sent the email.
            return (GatewayError(f"{self._esp} answered {status} with an unreadable reply: "
                                 f"{exc.args[0] if exc.args else exc}", code="bad_reply",
                                 permanent=False, in_doubt=True), None)
        return self._refused(status, exc.response)

    def _unanswered(self, cause: requests.RequestException
                    ) -> tuple[GatewayError, GatewayError | None]:
        """A call that got no HTTP reply: the error of its messages, and of those not yet
        taken."""
        if _nothing_sent(cause):
            error = GatewayError(f"cannot connect to {self._esp}: {cause}",
                                 code="connect_failed", permanent=False)
            return error, GIVE_BACK
        # The request went out; the ESP may have accepted the message.
        return (GatewayError(f"no answer from {self._esp} after the message was sent: "
                             f"{cause}", code="no_answer", permanent=False, in_doubt=True),
                GIVE_BACK)

    def _refused(self, status: int, response: Any) -> tuple[GatewayError, GatewayError | None]:
        """A call the ESP answered with HTTP `status` >= 300: the error of its messages, and of
        those not yet taken."""
        esp_code, text = _reply(response)
        headers = getattr(response, "headers", None) or {}
        message = f"{self._esp} answered {status}: {text or getattr(response, 'reason', '')}"
        code = (esp_code or str(status))[:32]
        if status == 429:
            retry_after = retry_after_seconds(headers.get("Retry-After"))
            if retry_after is None:
                retry_after = float(self.config.settings.get("throttle_retry_after",
                                                             DEFAULT_THROTTLE_RETRY_AFTER))
            error = GatewayError(message, code=code, permanent=False, retry_after=retry_after)
            return error, GatewayError(f"not attempted: {message}", code=code,
                                       permanent=False, retry_after=retry_after)
        if status in (401, 403):
            error = GatewayError(f"{message} (check the gateway's credentials)", code=code,
                                 permanent=False)
            return error, GatewayError(f"not attempted: {error.message}", code=code,
                                       permanent=False)
        if status >= 500 or status == 408:
            return GatewayError(message, code=code, permanent=False,
                                retry_after=retry_after_seconds(headers.get("Retry-After"))), None
        return GatewayError(message, code=code, permanent=True), None


def _postmark_probe(backend: Any) -> tuple[str, dict[str, Any]]:
    return "server", {"headers": {"X-Postmark-Server-Token": backend.server_token,
                                  "Accept": "application/json"}}


def _mailgun_probe(backend: Any) -> tuple[str, dict[str, Any]]:
    path = f"domains/{backend.sender_domain}" if backend.sender_domain else "domains"
    return path, {"auth": ("api", backend.api_key)}


# ESP -> (path under the backend's api_url, requests options) of a read-only call that needs
# the credentials.
HEALTH_PROBES: dict[str, Callable[[Any], tuple[str, dict[str, Any]]]] = {
    "postmark": _postmark_probe,
    "mailgun": _mailgun_probe,
}
