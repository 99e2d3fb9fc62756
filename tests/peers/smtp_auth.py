"""The loopback SMTP peer (tests/peers/smtp.py) asking for a login: AUTH PLAIN / LOGIN over
the plain connection (loopback only), one username and password, and the logins it was sent."""

from __future__ import annotations

from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.peers.smtp import SmtpPeer


class AuthSmtpPeer(SmtpPeer):
    def __init__(self, *, username: str = "engage", password: str = "relay-pass-7") -> None:
        super().__init__()
        self.username, self.password = username, password
        self.logins: list[tuple[str, str, bool]] = []  # (username, password, accepted)
        self._controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port,
            authenticator=self._authenticate, auth_require_tls=False)

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        accepted = (login, password) == (self.username, self.password)
        with self.handler.lock:
            self.logins.append((login, password, accepted))
        return AuthResult(success=accepted, handled=False)

    def gateway_settings(self) -> dict:
        return {**super().gateway_settings(), "username": self.username,
                "password": self.password}
