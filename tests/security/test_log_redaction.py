"""No member's phone number or email address reaches the logs: the console formatter masks
them in every line, message and traceback alike (config/log_redaction.py)."""

from __future__ import annotations

import io
import logging

import pytest

from config.log_redaction import RedactingFormatter, personal_data_masked


def _console_formatter() -> logging.Formatter:
    [console] = [h for h in logging.getLogger().handlers
                 if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
                 and isinstance(h.formatter, RedactingFormatter)]
    return console.formatter


def _written(formatter: logging.Formatter, emit) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("tests.log_redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    return stream.getvalue()


def test_the_console_log_masks_a_phone_number_and_an_email_in_the_message():
    line = _written(_console_formatter(), lambda log: log.warning(
        "inbound SMS from %s for %s not applied", "+4915123456789", "ann.smith@example.com"))

    assert "4915123456789" not in line and "ann.smith" not in line
    assert "+…89" in line and "a…@example.com" in line


def test_the_console_log_masks_them_in_a_traceback_too():
    def emit(log: logging.Logger) -> None:
        try:
            raise ValueError("550 <ann.smith@example.com>: user unknown, sms to 4915123456789")
        except ValueError:
            log.exception("send failed")

    line = _written(_console_formatter(), emit)

    assert "Traceback" in line
    assert "ann.smith" not in line and "4915123456789" not in line


@pytest.mark.parametrize("text", [
    "2026-12-07 13:33:32,475 INFO mailing 12: audience of 100000 frozen",
    "ts 1700000000.123, cost 0.00080000000, gateway 7",
])
def test_dates_counts_and_ids_are_left_as_they_are(text):
    assert personal_data_masked(text) == text


@pytest.mark.parametrize("number", ["+49 151 2345 6789", "+1 415-555-0134", "+7.916.123.45.67",
                                    "79161234567"])
def test_phone_numbers_as_people_and_providers_write_them_are_masked(number):
    assert personal_data_masked(f"from {number} ok") == f"from +…{number[-2:]} ok"
