"""SMS encoding and segments: GSM-7 when every character is in GSM 03.38, else UCS-2.

What a carrier bills and what an SMPP gateway sends as concatenated parts (UDH): 160 septets
in one GSM-7 message, 153 per part of a longer one; 70 UTF-16 code units in one UCS-2
message, 67 per part. A character of the GSM extension table is an escape plus a septet and
a character outside the BMP is a surrogate pair: neither may be cut between two parts, so a
part can hold one unit less than its size and a text can need one part more than its length
divided by the part size.

Written here rather than taken from a library: `smpplib.gsm.make_parts` cuts the encoded
bytes at fixed offsets (an escape sequence or a surrogate pair is split, as its FIXME says)
and encodes a backtick as `_`; the `gsm0338` codec only encodes, it does not count or split.
National language shift tables (Turkish, Portuguese, Indian) are not used: most carriers do
not support them for marketing traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

# GSM 03.38 default alphabet, in code order 0x00-0x7F; 0x1B (the escape to the extension
# table) is left out: a text holding ESC itself cannot be sent as GSM-7.
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# Sent as ESC + a septet: two septets each.
GSM7_EXTENSION = "\f^{}\\[~]|€"
_GSM7 = frozenset(GSM7_BASIC + GSM7_EXTENSION)

GSM7_SINGLE, GSM7_PART = 160, 153  # a part gives 7 septets to the concatenation header
UCS2_SINGLE, UCS2_PART = 70, 67  # and 3 code units
# The concatenation header numbers parts in one octet.
SEGMENTS_MAX = 255

Encoding = Literal["gsm7", "ucs2"]


@dataclass(frozen=True)
class SmsParts:
    """How a text goes out as SMS.

    `units` counts septets (GSM-7) or UTF-16 code units (UCS-2); `parts` is the text of each
    segment, joined they give the text back. An empty text is 0 segments and no parts: a
    mailing refuses an empty SMS before it gets here.
    """

    encoding: Encoding
    segments: int
    units: int
    parts: list[str]


def sms_parts(text: str) -> SmsParts:
    """The encoding, segment count, size and per-segment split of an SMS text."""
    if not text:
        return SmsParts(encoding="gsm7", segments=0, units=0, parts=[])
    if _GSM7.issuperset(text):
        encoding: Encoding = "gsm7"
        wide = GSM7_EXTENSION
        units = len(text) + sum(text.count(char) for char in GSM7_EXTENSION)
        single, part = GSM7_SINGLE, GSM7_PART
    else:
        encoding = "ucs2"
        wide = ""
        units = len(text) + sum(1 for char in text if char > "\uffff")
        single, part = UCS2_SINGLE, UCS2_PART
    if units <= single:
        parts = [text]
    elif units == len(text):  # every character one unit: plain slices
        parts = [text[start:start + part] for start in range(0, len(text), part)]
    else:
        parts = _split(text, part=part, wide=wide, ucs2=encoding == "ucs2")
    return SmsParts(encoding=encoding, segments=len(parts), units=units, parts=parts)


def sms_cost(text: str, *, price_per_segment: Decimal) -> Decimal:
    """What sending `text` to one recipient costs: carriers bill each segment."""
    return sms_parts(text).segments * price_per_segment


def _split(text: str, *, part: int, wide: str, ucs2: bool) -> list[str]:
    # A Python str holds a non-BMP character as one code point, so walking code points never
    # separates the two halves of its surrogate pair; it only has to count them as two.
    parts: list[str] = []
    start, used = 0, 0
    for index, char in enumerate(text):
        size = 2 if (char > "\uffff" if ucs2 else char in wide) else 1
        if used + size > part:
            parts.append(text[start:index])
            start, used = index, 0
        used += size
    parts.append(text[start:])
    return parts
