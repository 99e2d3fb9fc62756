"""Email over SMTP: one session per batch, STARTTLS or implicit TLS, optional auth.

Django's SMTP backend opens the session (TLS, auth and timeouts done right); each message then
goes through `sendmail` on that one connection so a refused recipient fails only its own message.
"""

from __future__ import annotations

import smtplib
from collections.abc import Mapping, Sequence
from typing import Any

from django.core.mail.backends.smtp import EmailBackend

from communications.gateways.base import (
    BaseGateway,
    GatewayError,
    OutboundMessage,
    SendResult,
    gateway_error_text,
    register,
)
from communications.gateways.email_message import email_message_build

# Replies that mean "too fast" (SES: 454 Throttling failure; Gmail and Microsoft: 421 rate
# limited): transient, and `retry_after` (the `throttle_retry_after` setting, SMTP gives no
# time) lets the dispatcher slow the gateway's rate limit for every worker.
THROTTLE_CODES = frozenset({421, 454})


def _reply_text(code: int, reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return f"{code} {text}"


@register
class SmtpGateway(BaseGateway):
    provider = "smtp"
    channels = frozenset({"email"})
    secret_settings = ("password",)

    @classmethod
    def settings_errors(cls, settings: Mapping[str, Any]) -> dict[str, str]:
        errors = {}
        if not settings.get("host"):
            errors["host"] = "the SMTP server's host name is required"
        port = settings.get("port", 25)
        if not isinstance(port, int) or not 0 < port < 65536:
            errors["port"] = "must be a port number"
        if settings.get("use_tls") and settings.get("use_ssl"):
            errors["use_tls"] = "use_tls (STARTTLS) and use_ssl (implicit TLS) exclude each other"
        retry_after = settings.get("throttle_retry_after", 1)
        if (isinstance(retry_after, bool) or not isinstance(retry_after, int | float)
                or retry_after < 0):
            errors["throttle_retry_after"] = "must be a number of seconds, 0 or more"
        return errors

    def _refusal(self, code: int, reply: bytes | str) -> GatewayError:
        return GatewayError(
            _reply_text(code, reply), code=str(code), permanent=code >= 500,
            retry_after=(float(self.config.settings.get("throttle_retry_after", 1))
                         if code in THROTTLE_CODES else None))

    def open(self) -> None:
        s = self.config.settings
        self._lost = False
        self._backend = EmailBackend(
            host=s["host"], port=s.get("port", 25), username=s.get("username", ""),
            password=s.get("password", ""), use_tls=bool(s.get("use_tls")),
            use_ssl=bool(s.get("use_ssl")), timeout=s.get("timeout", 30), fail_silently=False,
        )
        try:
            self._backend.open()
        except smtplib.SMTPAuthenticationError as exc:
            # Wrong username or password: no retry will log in until someone fixes them.
            self.close()
            raise GatewayError("the SMTP server refused the login: "
                               + _reply_text(exc.smtp_code, exc.smtp_error),
                               code=str(exc.smtp_code), permanent=True) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise GatewayError(f"cannot connect to SMTP server: {exc}", permanent=False) from exc

    def health(self) -> tuple[bool, str]:
        """Connect, EHLO (STARTTLS and login when configured), then QUIT."""
        try:
            self.open()
        except GatewayError as error:
            return False, gateway_error_text(error)
        try:
            connection = self._backend.connection
            # The session says EHLO only to log in or start TLS; a bare relay needs asking.
            connection.ehlo_or_helo_if_needed()
            greeting = (connection.ehlo_resp or connection.helo_resp or b"").decode(
                "utf-8", "replace").splitlines()
        except (OSError, smtplib.SMTPException) as exc:
            return False, f"transient: the SMTP session failed after connecting: {exc}"
        finally:
            self.close()
        logged_in = ", logged in" if self.config.settings.get("username") else ""
        return True, f"connected: {greeting[0] if greeting else 'no greeting'}{logged_in}"

    def close(self) -> None:
        try:
            self._backend.close()
        except Exception:  # noqa: BLE001  (closing a dead session must not mask the batch result)
            pass

    def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        """A result per message up to a lost session (dropped, or closed by a 421); the rest
        get none: never attempted, the caller gives them back to the queue unsent."""
        results: list[SendResult] = []
        connection = self._backend.connection
        for outbound in batch:
            if self._lost:
                break
            message_id = self.message_id_header(outbound.message_id)
            email = email_message_build(outbound, sender=self.config.sender,
                                        message_id=message_id)
            try:
                connection.sendmail(
                    email.from_email, [outbound.address],
                    email.message().as_bytes(linesep="\r\n"),
                )
            except smtplib.SMTPRecipientsRefused as exc:
                code, reply = next(iter(exc.recipients.values()))
                results.append(SendResult(outbound.message_id,
                                          error=self._refusal(code, reply)))
                self._lost = code == 421  # smtplib has closed the session
            except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
                results.append(SendResult(outbound.message_id,
                                          error=self._refusal(exc.smtp_code, exc.smtp_error)))
                self._lost = exc.smtp_code == 421  # the server is closing the session
            except (smtplib.SMTPServerDisconnected, OSError) as exc:
                # The data may have reached the server before the session died: in doubt.
                results.append(SendResult(outbound.message_id, error=GatewayError(
                    f"connection lost: {exc}", permanent=False, in_doubt=True)))
                self._lost = True
            else:
                results.append(SendResult(outbound.message_id, provider_id=message_id,
                                          cost=self.config.price_per_message))
        return results
