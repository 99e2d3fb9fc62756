"""Outbound URLs that must not reach inside the network Engage runs in (SSRF).

A URL is refused when its host resolves — through getaddrinfo, as the HTTP client will resolve
it, so decimal (2130706433), octal (0177.0.0.1) and short forms are judged by the address they
become — to any address that is not globally routable: private, loopback, link-local (the cloud
metadata service at 169.254.169.254), multicast, reserved or unspecified, IPv4 or IPv6,
IPv4-mapped IPv6 included. A name that does not resolve is refused too: it cannot be checked.

It is checked when the URL is saved and again before each request, since a name can be made to
resolve elsewhere later (DNS rebinding); a batch of deliveries sent together asks the resolver
once per host (`UrlChecks`), so a batch of thousands to one platform costs one lookup. The
connection itself resolves through config.ssrf.PublicAddressResolver (transport.py), so the
addresses actually connected to are judged too. The address rule is config.ssrf's.
ENGAGE_WEBHOOK_ALLOW_PRIVATE turns the check off, for loopback receivers in development, tests
and benchmarks.

The host is judged as both parsers read it: urllib's (this check's) and yarl's (aiohttp's, which
makes the call). They disagree on some spellings (a backslash before `@`, full-width digits and
dots), and a URL one parser reads as a public name may be read by the other as a private
address; every host either parser finds must be public, and a URL yarl cannot read is refused.
`localhost` and its subdomains are refused without asking DNS, whatever the resolver says.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import yarl
from django.conf import settings
from django.core.exceptions import ValidationError

from config.ssrf import address_is_public, host_names_this_machine


class UnsafeUrl(ValueError):
    """The URL may not be called from here; the message says why, for the person who set it."""


def url_check_public(url: str) -> None:
    """Raise UnsafeUrl unless `url` is http(s) and every address its host resolves to is public
    (or ENGAGE_WEBHOOK_ALLOW_PRIVATE is on)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl("Only http and https URLs with a host are allowed.")
    if settings.ENGAGE_WEBHOOK_ALLOW_PRIVATE:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeUrl(f"The port of {url!r} is not a number.") from exc
    for hostname in dict.fromkeys((parts.hostname, _client_host(url))):
        _host_check(hostname, port)


def _client_host(url: str) -> str:
    """The host aiohttp will connect to, as its URL parser (yarl) reads `url`."""
    try:
        host = yarl.URL(url).host
    except (ValueError, TypeError) as exc:
        raise UnsafeUrl(f"{url!r} is not a URL the HTTP client can call.") from exc
    if not host:
        raise UnsafeUrl("Only http and https URLs with a host are allowed.")
    return host


def _host_check(hostname: str, port: int) -> None:
    if host_names_this_machine(hostname):
        raise UnsafeUrl(f"The host {hostname!r} names this machine; only public addresses "
                        "are allowed.")
    try:
        found = socket.getaddrinfo(hostname, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise UnsafeUrl(f"The host {hostname!r} does not resolve.") from exc
    for *_, sockaddr in found:
        if not address_is_public(str(sockaddr[0])):
            raise UnsafeUrl(f"The host {hostname!r} resolves to {sockaddr[0]}, an address "
                            "inside a private network; only public addresses are allowed.")


class UrlChecks:
    """url_check_public for the calls of one batch: each host's verdict is kept, so the
    resolver is asked once per host, not once per call."""

    def __init__(self) -> None:
        self._verdicts: dict[tuple[str, str, int | None], UnsafeUrl | None] = {}

    def check(self, url: str) -> None:
        parts = urlsplit(url)
        try:
            key = (parts.scheme, parts.hostname or "", parts.port)
        except ValueError:
            key = (parts.scheme, parts.netloc, -1)
        if key not in self._verdicts:
            try:
                url_check_public(url)
                self._verdicts[key] = None
            except UnsafeUrl as exc:
                self._verdicts[key] = exc
        verdict = self._verdicts[key]
        if verdict is not None:
            raise UnsafeUrl(str(verdict))


def validate_public_url(url: str) -> None:
    """A model or form field validator: url_check_public as a ValidationError."""
    try:
        url_check_public(url)
    except UnsafeUrl as exc:
        raise ValidationError(str(exc), code="unsafe_url") from exc
