"""Outbound URLs that must not reach inside the network Engage runs in (SSRF).

A URL is refused when its host resolves — through getaddrinfo, as the HTTP client will resolve
it, so decimal (2130706433), octal (0177.0.0.1) and short forms are judged by the address they
become — to any address that is not globally routable: private, loopback, link-local (the cloud
metadata service at 169.254.169.254), multicast, reserved or unspecified, IPv4 or IPv6,
IPv4-mapped IPv6 included. A name that does not resolve is refused too: it cannot be checked.

It is checked when the URL is saved and again before each request, since a name can be made to
resolve elsewhere later (DNS rebinding). ENGAGE_WEBHOOK_ALLOW_PRIVATE turns the check off, for
loopback receivers in development and tests.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError


class UnsafeUrl(ValueError):
    """The URL may not be called from here; the message says why, for the person who set it."""


def address_is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv6 address that carries an IPv4 one reaches that one.
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            ip = embedded
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified
                                 or ip.is_loopback or ip.is_link_local or ip.is_private)


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
        found = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise UnsafeUrl(f"The host {parts.hostname!r} does not resolve.") from exc
    for *_, sockaddr in found:
        if not address_is_public(str(sockaddr[0])):
            raise UnsafeUrl(f"The host {parts.hostname!r} resolves to {sockaddr[0]}, an address "
                            "inside a private network; only public addresses are allowed.")


def validate_public_url(url: str) -> None:
    """A model or form field validator: url_check_public as a ValidationError."""
    try:
        url_check_public(url)
    except UnsafeUrl as exc:
        raise ValidationError(str(exc), code="unsafe_url") from exc
