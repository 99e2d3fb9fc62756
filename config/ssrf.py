"""Which addresses Engage may call when someone outside the staff chose the URL (SSRF): only
globally routable ones. Kept below every app, so that members (a browser's web-push endpoint),
communications (the web-push adapter) and loyalty (webhook URLs) apply one rule, and the aiohttp
sessions that call such URLs resolve names through `PublicAddressResolver`."""

from __future__ import annotations

import ipaddress
import socket

import aiohttp
from aiohttp.abc import ResolveResult


def address_is_public(address: str) -> bool:
    """Whether an IP address is globally routable: not private, loopback, link-local (the
    cloud metadata service at 169.254.169.254), multicast, reserved or unspecified, IPv4 or
    IPv6, an IPv4 address carried in an IPv6 one judged as that IPv4 address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv6 address that carries an IPv4 one reaches that one.
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            ip = embedded
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified
                                 or ip.is_loopback or ip.is_link_local or ip.is_private)


def host_names_this_machine(host: str) -> bool:
    """`localhost` and its subdomains, which resolve to this machine whatever DNS says."""
    host = host.lower().rstrip(".")
    return host == "localhost" or host.endswith(".localhost")


def numeric_host_address(host: str) -> str | None:
    """The address a host written as a number stands for, in every form the resolver takes
    (10.0.0.1, 2130706433, 0177.0.0.1, 127.1, ::1), without asking DNS; None for a name."""
    try:
        found = socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    return str(found[0][4][0]) if found else None


class PrivateAddressRefused(OSError):
    """The host resolved to an address inside a private network, which may not be called."""


class PublicAddressResolver(aiohttp.ThreadedResolver):
    """aiohttp's resolver, refusing a host any of whose addresses is not public (SSRF): the
    check is made on the very addresses the connection will use, at connect time, so a name
    that resolves elsewhere later (DNS rebinding) is caught too. Hosts written as an address
    do not reach a resolver: callers refuse private ones before sending."""

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await super().resolve(host, port, family)
        for entry in found:
            if not address_is_public(entry["host"]):
                raise PrivateAddressRefused(
                    f"{host} resolves to {entry['host']}, an address inside a private network; "
                    f"only public addresses are called")
        return found
