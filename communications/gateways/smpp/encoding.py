"""Text on the SMPP wire: GSM 03.38 (unpacked, one septet per octet) or UCS-2, and the
concatenation header (UDH) that joins the parts of a long SMS.

Where a text is cut and which alphabet it needs is `communications.sms_encoding`'s decision
(also used for cost estimates); this module only turns the parts into octets and back.
"""

from __future__ import annotations

from communications.sms_encoding import GSM7_BASIC

DATA_CODING_GSM7, DATA_CODING_UCS2 = 0x00, 0x08
ESM_UDHI = 0x40

# The code points of GSM 03.38; sms_encoding keeps the alphabet without the escape (0x1B).
_GSM7_EXTENSION_CODES = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C,
                         "~": 0x3D, "]": 0x3E, "|": 0x40, "€": 0x65}
_GSM7_BASIC_CODES = dict(zip(GSM7_BASIC, (c for c in range(0x80) if c != 0x1B), strict=True))
# SMPP carries GSM-7 unpacked, one septet per octet; the SMSC packs it for the air.
_GSM7_ENCODE = str.maketrans(
    {char: chr(code) for char, code in _GSM7_BASIC_CODES.items()}
    | {char: "\x1b" + chr(code) for char, code in _GSM7_EXTENSION_CODES.items()}
)
_GSM7_DECODE = {code: char for char, code in _GSM7_BASIC_CODES.items()}
_GSM7_DECODE_EXTENSION = {code: char for char, code in _GSM7_EXTENSION_CODES.items()}


def part_encode(text: str, *, ucs2: bool) -> bytes:
    """One part's short_message (without its UDH)."""
    return text.encode("utf-16-be") if ucs2 else text.translate(_GSM7_ENCODE).encode("latin-1")


def concat_udh(reference: int, parts: int, number: int) -> bytes:
    """The 8-bit-reference concatenation header of part `number` (from 1) of `parts`."""
    return bytes((0x05, 0x00, 0x03, reference, parts, number))


def udh_strip(message: bytes) -> bytes:
    """A short_message without its leading UDH (sent with ESM_UDHI set)."""
    return message[1 + message[0]:] if message else message


def gsm7_decode(data: bytes) -> str:
    chars: list[str] = []
    escaped = False
    for octet in data:
        if escaped:
            chars.append(_GSM7_DECODE_EXTENSION.get(octet, " "))
            escaped = False
        elif octet == 0x1B:
            escaped = True
        else:
            chars.append(_GSM7_DECODE.get(octet, "?"))
    return "".join(chars)


def text_decode(data: bytes, data_coding: int) -> str:
    """A member's text as the SMSC handed it over (GSM-7, UCS-2 or Latin-1)."""
    if data_coding == DATA_CODING_UCS2:
        return data.decode("utf-16-be", "replace")
    if data_coding == DATA_CODING_GSM7 or (data_coding & 0xF4) == 0xF0:
        return gsm7_decode(data)
    return data.decode("latin-1")
