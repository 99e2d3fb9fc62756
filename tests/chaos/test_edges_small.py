"""The edge scenarios of the fault suite (bench/chaos/edges*.py) at small size: each must hold
its promise — nothing duplicated, nothing lost, and its own zero figures."""

from __future__ import annotations

import pytest

from bench.chaos.edges_caps import caps_and_quiet_hours
from bench.chaos.edges_database import db_outage
from bench.chaos.edges_opt_outs import opt_outs_during_mailing
from bench.chaos.edges_providers import providers_misbehave
from bench.chaos.edges_receipts import receipts_storm
from bench.chaos.edges_webhooks import webhooks_storm

pytestmark = [pytest.mark.pipeline, pytest.mark.django_db(transaction=True)]


def test_receipts_storm_applies_every_genuine_receipt_once_and_no_forged_one():
    line = receipts_storm("small")
    print(line)
    assert line["duplicates"] == 0, line
    assert line["lost"] == 0, line
    assert line["status_mismatches"] == 0, line
    assert line["backward_transitions"] == 0, line
    assert line["bad_signatures_accepted"] == 0, line
    assert line["answers"].get(403) == line["failed"] > 0, line


def test_webhooks_storm_loses_nothing_sends_no_rolled_back_event_and_drops_a_gone_receiver():
    line = webhooks_storm("small")
    print(line)
    assert line["duplicates"] == 0, line
    assert line["lost"] == 0, line
    assert line["rolled_back_sent"] == 0, line
    assert line["gone_disabled"] is True, line
    assert line["gone_calls"] == 1, line
    # Sent again after a kill only from the killed worker's claimed batch, never beyond it.
    assert line["redelivered_after_kill"] <= line["redelivery_bound"], line


def test_db_outage_answers_503_never_500_and_recovers_within_10_s():
    line = db_outage("small")
    print(line)
    assert line["duplicates"] == 0, line
    assert line["lost"] == 0, line
    assert line["n_500"] == 0, line
    assert line["recovery_s"] is not None and line["recovery_s"] <= 10, line


def test_caps_and_quiet_hours_never_sends_over_cap_or_inside_quiet_hours():
    line = caps_and_quiet_hours("small")
    print(line)
    assert line["duplicates"] == 0, line
    assert line["lost"] == 0, line
    assert line["over_cap"] == 0, line
    assert line["sent_in_quiet_hours"] == 0, line
    assert line["sent"] > 0, line


def test_opt_outs_during_mailing_are_honoured_for_every_later_send():
    line = opt_outs_during_mailing("small")
    print(line)
    assert line["duplicates"] == 0, line
    assert line["lost"] == 0, line
    assert line["unexpected"] == 0, line
    assert line["withdrawals_recorded"] == line["withdrawals_asked"], line
    assert line["complaints_suppressed"] > 0, line


def test_providers_misbehave_retries_by_the_rules_and_fails_over_without_duplicates():
    line = providers_misbehave("small")
    print(line)
    assert line["duplicates"] == 0, line
    assert line["lost"] == 0, line
    assert line["retry_after_violations"] == 0, line
    assert line["bad_request_retries"] == 0, line
    assert line["circuit_opened"] is True, line
    assert line["via_backup"] > 0, line
    assert all(line["faults_exercised"].values()), line
