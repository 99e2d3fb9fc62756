"""Postmark's batch API for the anymail gateway: up to 500 distinct messages per
`POST /email/batch` call, each built by anymail's own Postmark payload.

A request per message through requests and anymail cost ~1.4 ms of CPU, more than the message
itself; one call per 500 takes that cost once, leaving anymail's payload, ~0.2 ms a message.
Postmark answers with one entry per message in the order sent: ErrorCode 0 is accepted (with
its MessageID), any other code refuses that message alone. The rules for a call that fails as
a whole are the gateway's (communications.gateways.anymail_esp).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, cast

import requests
from anymail.backends.postmark import PostmarkPayload
from anymail.exceptions import (
    AnymailConfigurationError,
    AnymailError,
    AnymailInvalidAddress,
)
from anymail.utils import EmailAddress, parse_address_list

from communications.gateways.base import GatewayError, OutboundMessage, SendResult

# Postmark's /email/batch takes at most 500 messages a call.
POSTMARK_BATCH_LIMIT = 500
# The halt after a lost connection: the messages not yet taken get no result, so the caller
# gives them back to the queue without spending an attempt (see AnymailGateway.send).
GIVE_BACK = GatewayError("not attempted: the connection to the ESP was lost",
                         code="not_attempted", permanent=False)


@dataclass
class PostmarkCall:
    """One /email/batch call, prepared: the JSON `entries` of the `messages` posted (at
    `posted`, their places in the call), and `results` already known (anymail refused those)."""

    results: list[SendResult | None]
    entries: list[str] = field(default_factory=list)
    messages: list[OutboundMessage] = field(default_factory=list)
    posted: list[int] = field(default_factory=list)


@functools.lru_cache(maxsize=64)
def _sender_addresses(sender: str) -> tuple[EmailAddress, ...]:
    return tuple(parse_address_list(sender, field="from_email"))


def _from_addresses(value: Any) -> list[EmailAddress]:
    if isinstance(value, str):
        return list(_sender_addresses(value))
    return parse_address_list(value, field="from_email")


class _PostmarkPayload(PostmarkPayload):
    """Anymail's Postmark payload, which parses the gateway's one From once, not once per
    message: with the To, that parse (email.headerregistry) was most of the payload's cost.
    The attribute table is anymail's documented way to give an attribute its converter."""

    base_message_attrs = tuple(
        (attr, combiner, _from_addresses if attr == "from_email" else converter)
        for attr, combiner, converter in PostmarkPayload.base_message_attrs)


def postmark_batch_request(backend: Any, prepared: PostmarkCall
                           ) -> tuple[str, bytes, dict[str, str]]:
    """The URL, body and headers of the `POST /email/batch` of a prepared call."""
    return (f"{backend.api_url}email/batch",
            ("[" + ",".join(prepared.entries) + "]").encode(),
            {"Content-Type": "application/json", "Accept": "application/json",
             "X-Postmark-Server-Token": backend.server_token})


def refused_before_sending(exc: AnymailError | AnymailConfigurationError) -> GatewayError:
    """Anymail refused the message before any call (a bad address, an unsupported feature,
    data it cannot serialize): it will refuse it again."""
    detail = exc.args[0] if exc.args else exc
    if isinstance(exc, AnymailInvalidAddress):
        return GatewayError(f"invalid address: {detail}", code="invalid_address",
                            permanent=True)
    if isinstance(exc, AnymailConfigurationError):
        return GatewayError(str(exc), code="settings", permanent=True)
    return GatewayError(f"{type(exc).__name__}: {detail}", code="anymail", permanent=True)



class PostmarkBatch:
    """The gateway's Postmark batch path, as a mixin of AnymailGateway: it uses the gateway's
    `_email`, `_failed`, `_unanswered`, `_refused`, `_esp` and `_backend`."""

    def _postmark_batch_prepare(self, call: list[OutboundMessage]) -> PostmarkCall:
        """Each message's JSON for Postmark's /email/batch, from anymail's Postmark payload;
        a message anymail refuses gets its result here and is left out of the call."""
        backend = self._backend
        prepared = PostmarkCall(results=[None] * len(call))
        for index, outbound in enumerate(call):
            email = self._email(outbound)
            try:
                # What anymail's Postmark backend.build_message_payload builds.
                payload = _PostmarkPayload(email, backend.send_defaults, backend)
                if payload.get_api_endpoint() != "email" or not payload.to_emails:
                    raise AnymailError("the message is not one plain email to one recipient "
                                       "(a template or no address)")
                prepared.entries.append(payload.serialize_json(payload.data))
            except (AnymailError, AnymailConfigurationError) as exc:
                prepared.results[index] = self._failed(outbound, refused_before_sending(exc))
                continue
            prepared.messages.append(outbound)
            prepared.posted.append(index)
        return prepared

    def _postmark_batch_post(self, backend: Any, prepared: PostmarkCall
                             ) -> tuple[list[SendResult], GatewayError | None]:
        """The results of one `POST /email/batch` of the prepared messages on `backend`'s
        session (and of those anymail refused), and the error for the messages not yet taken
        (None: carry on)."""
        if not prepared.entries:
            return cast(list[SendResult], prepared.results), None
        answered, stop = self._postmark_batch_answers(backend, prepared)
        results = prepared.results
        for index, result in zip(prepared.posted, answered, strict=True):
            results[index] = result
        return cast(list[SendResult], results), stop

    def _postmark_batch_answers(self, backend: Any, prepared: PostmarkCall
                                ) -> tuple[list[SendResult], GatewayError | None]:
        messages = prepared.messages
        url, body, headers = postmark_batch_request(backend, prepared)
        try:
            response = backend.session.post(url, data=body, headers=headers,
                                            timeout=backend.timeout)
        except requests.RequestException as exc:
            error, stop = self._unanswered(exc)
            return [self._failed(outbound, error) for outbound in messages], stop
        if response.status_code != 200:
            error, stop = self._refused(response.status_code, response)
            return [self._failed(outbound, error) for outbound in messages], stop
        try:
            answers = response.json()
        except ValueError:
            answers = None
        if (not isinstance(answers, list) or len(answers) != len(messages)
                or not all(isinstance(answer, dict) for answer in answers)):
            # Postmark took the call, and may have sent every message of it.
            error = GatewayError(f"{self._esp} answered 200 with an unreadable batch reply "
                                 f"({len(messages)} messages sent)", code="bad_reply",
                                 permanent=False, in_doubt=True)
            return [self._failed(outbound, error) for outbound in messages], GIVE_BACK
        return [self._postmark_entry_result(outbound, answer)
                for outbound, answer in zip(messages, answers, strict=True)], None

    def _postmark_entry_result(self, outbound: OutboundMessage,
                               answer: dict[str, Any]) -> SendResult:
        """One message's entry of a batch reply: ErrorCode 0 (absent when Postmark reports a
        delay) is accepted, any other code refuses that message alone."""
        code = answer.get("ErrorCode", 0)
        text = str(answer.get("Message", ""))[:500]
        if code == 0:
            if not answer.get("MessageID"):
                return self._failed(outbound, GatewayError(
                    f"{self._esp} accepted the message without an id: {text}",
                    code="bad_reply", permanent=False, in_doubt=True))
            return SendResult(outbound.message_id, provider_id=str(answer["MessageID"]),
                              cost=self.config.price_per_message)
        return self._failed(outbound, GatewayError(
            f"{self._esp} refused the message: {text}".rstrip(": "), code=str(code)[:32],
            permanent=True))
