from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from communications.gateways import GatewayConfig, GatewayError, OutboundMessage, gateway_for
from communications.gateways.smpp import InboundSms, SmppGateway, smpp_receipt_parse
from communications.sms_encoding import GSM7_BASIC, GSM7_EXTENSION
from tests.peers.smpp import ESME_RINVDSTADR, ESME_RMSGQFUL, ESME_RTHROTTLED, Ack, SmppPeer
from tests.peers.smtp import free_port

PHONE = "+4915112345678"
PRICE = Decimal("0.05")


@pytest.fixture
def smpp_peer() -> Iterator[SmppPeer]:
    peer = SmppPeer().start()
    yield peer
    peer.stop()


def _gateway(settings: dict, *, sender: str = "") -> SmppGateway:
    gateway = gateway_for(GatewayConfig(
        gateway_id=3, channel="sms", provider="smpp", settings=settings, sender=sender,
        price_per_message=PRICE,
    ))
    assert isinstance(gateway, SmppGateway)
    return gateway


def _sms(n: int, body: str = "Your voucher is ready", address: str = PHONE) -> OutboundMessage:
    return OutboundMessage(message_id=n, address=address, subject="", body=body)


def _send(peer: SmppPeer, batch: list[OutboundMessage], **settings) -> list:
    gateway = _gateway(peer.gateway_settings(**settings))
    gateway.open()
    try:
        return gateway.send(batch)
    finally:
        gateway.close()
        peer.wait_closed()


# -- what goes out ---------------------------------------------------------------------------


def test_a_short_gsm_text_arrives_as_one_submit_with_data_coding_0(smpp_peer):
    [result] = _send(smpp_peer, [_sms(1, "Hi Anna, 20% off today!")])

    [submit] = smpp_peer.submits
    assert (submit.data_coding, submit.esm_class, submit.udh) == (0, 0, b"")
    assert submit.text == "Hi Anna, 20% off today!"
    assert result.ok
    assert result.provider_id == submit.message_id
    assert result.cost == PRICE


def test_a_200_character_gsm_text_arrives_as_two_parts_with_one_concatenation_reference(
        smpp_peer):
    text = "".join(chr(ord("a") + n % 26) for n in range(200))

    [result] = _send(smpp_peer, [_sms(1, text)])

    first, second = smpp_peer.submits
    assert first.esm_class == second.esm_class == 0x40
    assert first.udh[:3] == second.udh[:3] == b"\x05\x00\x03"
    assert first.concat[0] == second.concat[0]
    assert (first.concat[1:], second.concat[1:]) == ((2, 1), (2, 2))
    assert first.text + second.text == text
    assert result.provider_id == second.message_id
    assert result.cost == 2 * PRICE


def test_cyrillic_text_arrives_as_ucs2(smpp_peer):
    _send(smpp_peer, [_sms(1, "Скидка 20% для вас")])

    [submit] = smpp_peer.submits
    assert submit.data_coding == 0x08
    assert submit.short_message == "Скидка 20% для вас".encode("utf-16-be")


def test_a_euro_sign_at_a_part_boundary_is_not_split(smpp_peer):
    text = "a" * 152 + "€" + "b" * 20  # the escape would be septet 153, its code the 154th

    _send(smpp_peer, [_sms(1, text)])

    first, second = smpp_peer.submits
    assert first.text == "a" * 152
    assert second.text == "€" + "b" * 20
    assert not first.short_message.endswith(b"\x1b")


def test_every_gsm_character_arrives_as_itself(smpp_peer):
    text = GSM7_BASIC + GSM7_EXTENSION

    _send(smpp_peer, [_sms(1, text)])

    assert [submit.text for submit in smpp_peer.submits] == [text]


def test_a_sender_name_goes_out_alphanumeric_and_the_member_number_international(smpp_peer):
    _send(smpp_peer, [_sms(1)])

    [submit] = smpp_peer.submits
    assert (submit.source_addr, submit.source_addr_ton, submit.source_addr_npi) == ("Club", 5, 0)
    assert (submit.destination_addr, submit.dest_addr_ton, submit.dest_addr_npi) == (
        "4915112345678", 1, 1)
    assert submit.registered_delivery == 1


def test_the_gateways_sender_is_used_when_no_source_addr_is_set(smpp_peer):
    settings = smpp_peer.gateway_settings()
    del settings["source_addr"]
    gateway = _gateway(settings, sender="+4930123456")

    gateway.open()
    gateway.send([_sms(1)])
    gateway.close()

    [submit] = smpp_peer.submits
    assert (submit.source_addr, submit.source_addr_ton, submit.source_addr_npi) == (
        "4930123456", 1, 1)


def test_a_batch_goes_through_one_bind(smpp_peer):
    results = _send(smpp_peer, [_sms(n) for n in range(5)])

    assert all(result.ok for result in results)
    assert len(smpp_peer.binds) == 1
    assert len({result.provider_id for result in results}) == 5


def test_the_window_bounds_the_outstanding_submits(smpp_peer):
    smpp_peer.response_delay = 0.03

    results = _send(smpp_peer, [_sms(n) for n in range(9)], window=3)

    assert all(result.ok for result in results)
    assert smpp_peer.outstanding_max == 3


# -- what comes back -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [ESME_RTHROTTLED, ESME_RMSGQFUL])
def test_a_throttling_reply_is_a_transient_error_with_retry_after(smpp_peer, status):
    smpp_peer.throttle(1, status)

    [result] = _send(smpp_peer, [_sms(1)], throttle_retry_after=1.5)

    error = result.error
    assert not error.permanent and not error.in_doubt
    assert error.retry_after == 1.5
    assert error.code == f"smpp:0x{status:02X}"


def test_after_a_throttling_reply_no_new_message_is_started(smpp_peer):
    smpp_peer.throttle(1)

    results = _send(smpp_peer, [_sms(n) for n in range(3)], window=1)

    assert len(smpp_peer.submits) == 1
    assert [r.error.code for r in results] == ["smpp:0x58"] * 3
    assert all(r.error.retry_after == 1 and not r.error.permanent for r in results)


def test_an_invalid_destination_is_a_permanent_error_with_its_code_and_the_rest_are_sent(
        smpp_peer):
    smpp_peer.refuse["4915100000000"] = ESME_RINVDSTADR

    results = _send(smpp_peer, [_sms(1), _sms(2, address="+4915100000000"), _sms(3)])

    assert [r.ok for r in results] == [True, False, True]
    error = results[1].error
    assert error.permanent
    assert error.code == "smpp:0x0B"
    assert "Invalid Destination Address" in error.message


def test_an_address_that_is_not_a_phone_number_fails_alone_without_a_submit(smpp_peer):
    results = _send(smpp_peer, [_sms(1, address="anna@example.com"), _sms(2)])

    assert results[0].error.permanent
    assert results[0].error.code == "smpp:address"
    assert results[1].ok
    assert len(smpp_peer.submits) == 1


def test_a_connection_dropped_after_a_submit_leaves_it_in_doubt_and_the_rest_unanswered(
        smpp_peer):
    smpp_peer.answer_then_drop(1)

    results = _send(smpp_peer, [_sms(n) for n in (1, 2, 3)], window=1)

    # The third was never submitted: no result, so it goes back to the queue unspent.
    first, second = results
    assert first.ok
    assert second.error.in_doubt
    assert [s.status for s in smpp_peer.submits] == [0, None]


def test_a_part_refused_after_another_was_accepted_leaves_the_message_in_doubt(smpp_peer):
    smpp_peer.answer_next(0, ESME_RTHROTTLED)

    [result] = _send(smpp_peer, [_sms(1, "x" * 200)], window=1)

    assert result.error.in_doubt
    assert result.error.code == "smpp:0x58"
    assert "1 of 2 parts accepted" in result.error.message


def test_a_bad_password_fails_open_permanently(smpp_peer):
    gateway = _gateway(smpp_peer.gateway_settings(password="wrong"))

    with pytest.raises(GatewayError) as error:
        gateway.open()

    assert error.value.permanent
    assert error.value.code == "smpp:0x0E"


def test_an_unreachable_smsc_fails_open_transiently():
    gateway = _gateway({"host": "127.0.0.1", "port": free_port(), "system_id": "engage",
                        "source_addr": "Club", "timeout": 1})

    with pytest.raises(GatewayError) as error:
        gateway.open()

    assert not error.value.permanent


def test_settings_errors_name_each_bad_setting():
    errors = SmppGateway.settings_errors({"port": 2775, "system_id": "engage",
                                          "password": "much-too-long", "window": 0,
                                          "source_addr": "A name far too long"})

    assert set(errors) == {"host", "password", "window", "source_addr"}


# -- receipts and replies --------------------------------------------------------------------


def _listen(gateway: SmppGateway, seconds: float = 0.2) -> tuple[list, list]:
    receipts: list = []
    inbound: list = []
    gateway.listen(seconds, on_receipts=receipts.extend, on_inbound=inbound.append)
    return receipts, inbound


def test_a_delivery_receipt_is_parsed_and_acknowledged(smpp_peer):
    gateway = _gateway(smpp_peer.gateway_settings())
    gateway.open()
    [result] = gateway.send([_sms(1)])
    sequence = smpp_peer.receipt(result.provider_id, done_at=datetime(2025, 3, 1, 10, 15,
                                                                     tzinfo=UTC))

    receipts, _ = _listen(gateway)
    gateway.close()
    smpp_peer.wait_closed()

    [receipt] = receipts
    assert (receipt.provider_id, receipt.status, receipt.code) == (
        result.provider_id, "delivered", "DELIVRD:000")
    assert receipt.occurred_at == datetime(2025, 3, 1, 10, 15, tzinfo=UTC)
    assert Ack("deliver_sm_resp", sequence, 0) in smpp_peer.acks


def test_a_receipts_message_id_tlv_wins_over_the_id_in_its_text(smpp_peer):
    gateway = _gateway(smpp_peer.gateway_settings())
    gateway.open()
    [result] = gateway.send([_sms(1)])
    smpp_peer.receipt(result.provider_id, stat="UNDELIV", err="001",
                      text_id=str(int(result.provider_id, 16)), tlvs=True)

    receipts, _ = _listen(gateway)
    gateway.close()

    assert [(r.provider_id, r.status) for r in receipts] == [(result.provider_id, "undelivered")]


@pytest.mark.parametrize("text", ["STOP", "СТОП"])
def test_an_inbound_stop_is_handed_to_on_inbound(smpp_peer, text):
    gateway = _gateway(smpp_peer.gateway_settings())
    gateway.open()
    sequence = smpp_peer.mo(PHONE, text)

    receipts, inbound = _listen(gateway)
    gateway.close()
    smpp_peer.wait_closed()

    assert receipts == []
    assert [(m.phone, m.text, m.recipient) for m in inbound] == [(PHONE, text, "Club")]
    assert isinstance(inbound[0], InboundSms)
    assert Ack("deliver_sm_resp", sequence, 0) in smpp_peer.acks


def test_a_failing_handler_gets_the_smsc_a_temporary_error_so_it_redelivers(smpp_peer):
    gateway = _gateway(smpp_peer.gateway_settings())
    gateway.open()
    sequence = smpp_peer.mo(PHONE, "STOP")

    def broken(message: InboundSms) -> None:
        raise RuntimeError("database is down")

    gateway.listen(0.2, on_receipts=lambda receipts: None, on_inbound=broken)
    gateway.close()
    smpp_peer.wait_closed()

    assert Ack("deliver_sm_resp", sequence, 0x64) in smpp_peer.acks


def test_a_receipt_read_during_a_batch_goes_to_on_receipts(smpp_peer):
    smpp_peer.auto_receipt = "DELIVRD"
    gateway = _gateway(smpp_peer.gateway_settings())
    receipts: list = []
    gateway.on_receipts = receipts.extend

    gateway.open()
    results = gateway.send([_sms(1), _sms(2)])
    gateway.close()
    smpp_peer.wait_closed()

    assert sorted(r.provider_id for r in receipts) == sorted(r.provider_id for r in results)
    assert [ack.status for ack in smpp_peer.acks] == [0, 0]


def test_a_receipt_read_during_a_batch_without_a_handler_is_left_for_redelivery(smpp_peer):
    smpp_peer.auto_receipt = "DELIVRD"

    _send(smpp_peer, [_sms(1)])

    assert [(ack.command, ack.status) for ack in smpp_peer.acks] == [("deliver_sm_resp", 0x64)]


def test_the_gateway_answers_enquire_link_while_listening(smpp_peer):
    gateway = _gateway(smpp_peer.gateway_settings())
    gateway.open()
    sequence = smpp_peer.enquire_link()

    _listen(gateway)
    gateway.close()
    smpp_peer.wait_closed()

    assert Ack("enquire_link_resp", sequence, 0) in smpp_peer.acks


# -- the receipt parser ----------------------------------------------------------------------

RECEIPT = ("id:1f00a2 sub:001 dlvrd:{dlvrd} submit date:2503011014 done date:2503011015 "
           "stat:{stat} err:{err} text:Your voucher is re")


@pytest.mark.parametrize(("stat", "status"), [
    ("DELIVRD", "delivered"), ("EXPIRED", "expired"), ("DELETED", "undelivered"),
    ("UNDELIV", "undelivered"), ("REJECTD", "rejected"), ("UNKNOWN", "undelivered"),
])
def test_the_receipt_parser_maps_each_final_state(stat, status):
    receipt = smpp_receipt_parse(RECEIPT.format(dlvrd="000", stat=stat, err="042").encode())

    assert (receipt.provider_id, receipt.status, receipt.code) == ("1f00a2", status,
                                                                   f"{stat}:042")


@pytest.mark.parametrize("stat", ["ACCEPTD", "ENROUTE"])
def test_the_receipt_parser_ignores_states_that_are_not_final(stat):
    assert smpp_receipt_parse(RECEIPT.format(dlvrd="000", stat=stat, err="000")) is None


def test_the_receipt_time_is_the_done_date_in_the_smscs_zone():
    berlin = timezone(timedelta(hours=1))

    receipt = smpp_receipt_parse(RECEIPT.format(dlvrd="001", stat="DELIVRD", err="000"),
                                 tz=berlin)

    assert receipt.occurred_at == datetime(2025, 3, 1, 10, 15, tzinfo=berlin)


def test_the_receipt_parser_reads_fields_before_the_text_only():
    text = ("id:77 sub:001 dlvrd:001 submit date:2503011014 done date:2503011015 stat:DELIVRD "
            "err:000 text:stat:REJECTD id:99")

    receipt = smpp_receipt_parse(text)

    assert (receipt.provider_id, receipt.status) == ("77", "delivered")


def test_a_text_that_is_not_a_receipt_parses_to_none():
    assert smpp_receipt_parse("STOP") is None
