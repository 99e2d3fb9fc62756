"""Log lines without members' phone numbers or email addresses.

Whatever a log line quotes (a message, an exception, a provider's reply such as
"550 <ann@example.com>: user unknown"), the console formatter masks what looks like a phone
number or an email address before it is written: logs are kept and shipped further than the
database, and personal data has no business there. Enough is kept to tell two apart when
tracing (a phone's last two digits, an email's first letter and domain).
"""

from __future__ import annotations

import logging
import re

# A number as members and providers write it: a plus and 8 to 15 digits, spaces, dots or
# dashes between groups (E.164 as typed), or a bare run of 11 to 15 digits (E.164 without its
# plus, as SMPP and aggregators carry it). Dates, times and ids of ten digits or fewer, which
# every log line holds, are not numbers of anyone's.
PHONE = re.compile(r"(?<![\w+.])(?:\+\d(?:[ .-]?\d){7,14}|\d{11,15})(?![\w.])")
EMAIL = re.compile(r"\b([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})\b")


def _phone_mask(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return f"+…{digits[-2:]}"


def personal_data_masked(text: str) -> str:
    return PHONE.sub(_phone_mask, EMAIL.sub(r"\1…@\2", text))


class RedactingFormatter(logging.Formatter):
    """The plain formatter, its whole output (message and traceback) masked."""

    def format(self, record: logging.LogRecord) -> str:
        return personal_data_masked(super().format(record))
