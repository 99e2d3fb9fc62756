"""An SMPP gateway's settings: what each must be, and the sender id with its TON/NPI."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PHONE_NUMBER = re.compile(r"\+?[0-9]{1,20}")
_ALPHANUMERIC = re.compile(r"[A-Za-z0-9 .&'_-]{1,11}")


def source_address(value: str) -> tuple[str, int, int] | None:
    """The sender id with its TON/NPI: international number, short code or alphanumeric name."""
    value = value.strip()
    if PHONE_NUMBER.fullmatch(value) and len(value.removeprefix("+")) <= 15:
        digits = value.removeprefix("+")
        if value.startswith("+") or len(digits) >= 10:
            return digits, 1, 1  # international, ISDN
        return digits, 3, 0  # a short code is network-specific
    if _ALPHANUMERIC.fullmatch(value) and re.search(r"[A-Za-z]", value):
        return value, 5, 0
    return None


def smpp_settings_errors(settings: Mapping[str, Any]) -> dict[str, str]:
    """Problems with an SMPP gateway's settings, keyed by setting name."""
    errors = {}
    if not settings.get("host"):
        errors["host"] = "the SMSC's host name is required"
    port = settings.get("port", 2775)
    if not isinstance(port, int) or not 0 < port < 65536:
        errors["port"] = "must be a port number"
    # smpplib silently cuts longer values to the C-octet string sizes of SMPP 3.4.
    for name, longest, required in (("system_id", 15, True), ("password", 8, False),
                                    ("system_type", 12, False)):
        value = settings.get(name, "")
        if not isinstance(value, str) or not value.isascii() or len(value) > longest:
            errors[name] = f"must be ASCII text of at most {longest} characters"
        elif required and not value:
            errors[name] = "is required"
    if settings.get("source_addr") and source_address(str(settings["source_addr"])) is None:
        errors["source_addr"] = ("must be a phone number (up to 15 digits) or a name of up "
                                 "to 11 Latin letters and digits")
    window = settings.get("window", 10)
    if not isinstance(window, int) or not 1 <= window <= 1000:
        errors["window"] = "must be a whole number from 1 to 1000"
    for name in ("timeout", "response_timeout", "enquire_link_interval"):
        value = settings.get(name, 10)
        if not isinstance(value, int | float) or value <= 0:
            errors[name] = "must be a number of seconds above 0"
    retry_after = settings.get("throttle_retry_after", 1)
    if not isinstance(retry_after, int | float) or retry_after < 0:
        errors["throttle_retry_after"] = "must be a number of seconds, 0 or more"
    for name in ("source_addr_ton", "source_addr_npi", "dest_addr_ton", "dest_addr_npi"):
        value = settings.get(name, 0)
        if not isinstance(value, int) or not 0 <= value <= 255:
            errors[name] = "must be a whole number from 0 to 255"
    try:
        ZoneInfo(settings.get("receipt_timezone", "UTC"))
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        errors["receipt_timezone"] = "must be a time zone name such as UTC or Europe/Berlin"
    return errors
