"""The benchmark's own parts at tiny size: its JSON line, the bare-client ceiling, and the
import_members run on a small file."""

from __future__ import annotations

import json

import pytest

from bench.imports import ATTRIBUTE, HEADER, csv_write, import_rolled_back
from bench.results import Measured, result_line
from bench.smtp_sink import INSTALL_HINT, SmtpSink, bare_client_rate, smtp_sink_path
from members.models import CustomAttribute, Member

FIXED_KEYS = ["scenario", "n", "value", "unit", "target", "runs"]


def test_result_line_has_exactly_the_six_keys_in_order():
    line = result_line(scenario="dispatch_smtp", unit="msg/s", target=1000,
                       measured=Measured(n=100_000, value=1523.4, runs=3))

    assert list(json.loads(line)) == FIXED_KEYS
    assert json.loads(line) == {"scenario": "dispatch_smtp", "n": 100_000, "value": 1523.4,
                                "unit": "msg/s", "target": 1000, "runs": 3}


def test_result_line_puts_a_scenarios_extra_keys_after_the_six():
    line = result_line(scenario="segment_count", unit="s", target=1.0,
                       measured=Measured(n=10, value=0.5, runs=1, extra={"what": "a group"}))

    assert list(json.loads(line)) == [*FIXED_KEYS, "what"]


def test_bare_client_pushes_every_message_into_smtp_sink():
    if smtp_sink_path() is None:
        pytest.skip(f"smtp-sink is not installed ({INSTALL_HINT})")

    # when
    with SmtpSink() as sink:
        rate = bare_client_rate(host=sink.host, port=sink.port, messages=200)

    # then: every message was accepted (smtplib raises on any refusal) at a plausible rate
    assert rate > 50
    line = json.loads(result_line(scenario="smtp_sink_ceiling", unit="msg/s", target=None,
                                  measured=Measured(n=200, value=rate, runs=1)))
    assert line["value"] == round(rate, 3)


@pytest.mark.django_db
def test_import_members_run_imports_every_generated_row_then_leaves_nothing(tmp_path):
    CustomAttribute.objects.create(key=ATTRIBUTE, label="Favourite store")
    path = tmp_path / "members.csv"
    csv_write(path, 400)

    seconds, report = import_rolled_back(path)

    # the generated rows are all valid, with consents to record
    assert report.bad_rows == []
    assert (report.rows, report.created) == (400, 400)
    assert report.consent_events > 200
    assert path.read_text(encoding="utf-8").splitlines()[0] == ",".join(HEADER)
    # and every run starts from the same state
    assert not Member.objects.exists()
    assert seconds > 0


@pytest.mark.django_db
@pytest.mark.parametrize("scenario", ["segment_count", "segment_count_nested"])
def test_segment_scenarios_count_their_group_and_explain_the_plan(scenario):
    from bench import segments
    from bench.options import Options
    from campaigns.rules import rules_members
    from loyalty.demo import demo_seed

    demo_seed(members=300, orders_per_member=3, seed=7)

    measured = getattr(segments, scenario)(Options(runs=1, explain=True))

    rules = segments.flat_rules() if scenario == "segment_count" else segments.nested_rules()
    assert measured.extra["count"] == rules_members(rules).count()
    assert measured.n == 300
    assert "Aggregate" in measured.extra["plan"]


@pytest.mark.slow
def test_rate_limit_error_measures_every_rate_within_target_on_a_short_window():
    from bench.options import Options
    from bench.ratelimit import RATES, rate_limit_error

    measured = rate_limit_error(Options(runs=1), window_s=3)

    errors = measured.extra["errors"]
    assert set(errors) == {f"{rate:g}/s" for rate in RATES}
    assert measured.value == max(abs(run[0]) for run in errors.values())
    assert measured.value < 2


@pytest.fixture
def bench_environment(transactional_db, monkeypatch):
    """What `make bench` gives the processes a scenario starts (workers, gunicorn): the
    database the test reads, without persistent connections left open when it is dropped."""
    from django.db import connection

    db = connection.settings_dict
    monkeypatch.setenv("DATABASE_URL",
                       f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}")
    monkeypatch.setenv("CONN_MAX_AGE", "0")


@pytest.mark.django_db
def test_push_audience_gets_one_device_and_one_push_consent_each_however_often_ensured():
    from bench.push import TOKEN_LENGTH, push_audience_ensure
    from members.models import Consent, ConsentEvent, Device
    from tests.members.factories import MemberFactory

    members = [MemberFactory() for _ in range(5)]
    MemberFactory(status="blocked")

    ids = push_audience_ensure(4)
    again = push_audience_ensure(4)

    assert ids == again == [m.pk for m in members[:4]]
    devices = Device.objects.filter(member_id__in=ids)
    assert sorted(devices.values_list("member_id", flat=True)) == ids
    assert {(d.platform, d.is_active, len(d.token)) for d in devices} == {
        ("fcm", True, TOKEN_LENGTH)}
    assert sorted(Consent.objects.filter(channel="push", state="granted")
                  .values_list("member_id", flat=True)) == ids
    assert sorted(ConsentEvent.objects.filter(channel="push", action="grant")
                  .values_list("member_id", flat=True)) == ids


@pytest.mark.slow
@pytest.mark.pipeline
def test_dispatch_push_sends_every_push_through_workers_and_measures_the_peer(bench_environment):
    from bench.options import Options
    from bench.push import dispatch_push
    from tests.members.factories import MemberFactory

    for _ in range(30):
        MemberFactory()

    measured = dispatch_push(Options(messages=25, runs=1))

    # every message was sent and counted by the peer (the scenario raises otherwise)
    assert measured.n == 25
    assert measured.value > 0
    assert measured.extra["peer_ceiling"] > 0
    # (the kernel counts in 10 ms ticks: at this size only the workers surely show)
    [cpu] = measured.extra["cpu_ms_per_message_per_run"]
    assert cpu["workers"] > 0 and cpu["peer"] >= 0 and cpu["postgres"] >= 0
    assert cpu["total"] == pytest.approx(cpu["workers"] + cpu["peer"] + cpu["postgres"],
                                         abs=0.001)
    line = json.loads(result_line(scenario="dispatch_push", unit="msg/s", target=2000,
                                  measured=measured))
    assert list(line)[:6] == FIXED_KEYS


@pytest.mark.slow
@pytest.mark.pipeline
def test_dispatch_apns_sends_every_push_through_workers_and_measures_both_peers(
        bench_environment):
    from bench.apns import dispatch_apns
    from bench.options import Options
    from tests.members.factories import MemberFactory

    MemberFactory.create_batch(30)

    measured = dispatch_apns(Options(messages=25, runs=1))

    # every push was sent and counted by the Node.js peer (the scenario raises otherwise)
    assert measured.n == 25
    assert measured.value > 0
    assert measured.extra["peer_ceiling"] > 0 and measured.extra["python_peer_ceiling"] > 0
    assert measured.extra["adapter_alone_one_stream"] > 0
    assert measured.extra["adapter_alone_streams"] > 0
    line = json.loads(result_line(scenario="dispatch_apns", unit="msg/s", target=2000,
                                  measured=measured))
    assert list(line)[:6] == FIXED_KEYS


@pytest.mark.slow
@pytest.mark.pipeline
@pytest.mark.parametrize("scenario", ["dispatch_hms", "dispatch_webpush"])
def test_push_provider_scenario_sends_every_push_and_measures_the_adapter_alone(
        bench_environment, scenario):
    from bench import hms, webpush
    from bench.options import Options
    from tests.members.factories import MemberFactory

    MemberFactory.create_batch(30)
    module = hms if scenario == "dispatch_hms" else webpush

    measured = getattr(module, scenario)(Options(messages=25, runs=1))

    # every push was sent and counted by the peer (the scenario raises otherwise)
    assert measured.n == 25 and measured.value > 0
    assert measured.extra["peer_ceiling"] > 0
    assert measured.extra["adapter_alone_one_connection"] > 0
    assert measured.extra["adapter_alone_concurrency"] > 0


@pytest.mark.slow
@pytest.mark.pipeline
def test_dispatch_smpp_sends_every_sms_through_workers_and_measures_the_smsc(bench_environment):
    from bench.options import Options
    from bench.smpp import dispatch_smpp
    from tests.members.factories import MemberFactory

    for n in range(30):
        MemberFactory(phone=f"+4915100{n:06d}")

    measured = dispatch_smpp(Options(messages=25, runs=1))

    # every message was sent and counted by the SMSC (the scenario raises otherwise)
    assert measured.n == 25
    assert measured.value > 0
    assert measured.extra["smsc_ceiling"] > 0
    line = json.loads(result_line(scenario="dispatch_smpp", unit="msg/s", target=1000,
                                  measured=measured))
    assert list(line)[:6] == FIXED_KEYS


@pytest.mark.slow
@pytest.mark.pipeline
def test_receipts_ingest_applies_every_posted_receipt_and_reports_ack_latency(
        bench_environment):
    from bench.options import Options
    from bench.receipts import RECEIPTS_PER_CALL, receipts_ingest
    from tests.members.factories import MemberFactory

    count = RECEIPTS_PER_CALL * 2 + 7
    MemberFactory.create_batch(count)

    measured = receipts_ingest(Options(messages=count, runs=1))

    # every receipt was applied once (the scenario raises otherwise), in three calls
    assert measured.n == count
    assert measured.value > 0
    assert measured.extra["calls"] == 3
    assert 0 < measured.extra["ack_p50_ms"] <= measured.extra["ack_p99_ms"]


@pytest.mark.slow
@pytest.mark.pipeline
def test_webhook_delivery_delivers_every_event_through_workers_and_measures_latency(
        bench_environment):
    from bench.options import Options
    from bench.webhook_delivery import webhook_delivery
    from loyalty.models import Event
    from loyalty.webhooks.models import WebhookDelivery, WebhookSubscription
    from tests.members.factories import MemberFactory

    MemberFactory.create_batch(5)

    measured = webhook_delivery(Options(messages=40, runs=1))

    # every delivery succeeded and was verified by the receiver (the scenario raises otherwise)
    assert measured.n == 40
    assert measured.value > 0
    assert 0 < measured.extra["accepted_to_received_p50_ms"] <= measured.extra[
        "accepted_to_received_p95_ms"]
    assert measured.extra["receiver_ceiling"] > 0
    line = json.loads(result_line(scenario="webhook_delivery", unit="deliveries/s",
                                  target=1000, measured=measured))
    assert list(line)[:6] == FIXED_KEYS
    # and the run leaves nothing behind
    assert not WebhookSubscription.objects.exists()
    assert not WebhookDelivery.objects.exists()
    assert not Event.objects.filter(payload__bench="webhook_delivery").exists()


@pytest.mark.slow
def test_api_member_home_serves_both_calls_under_load_from_the_generators(bench_environment,
                                                                          monkeypatch):
    from bench import member_api
    from bench.options import Options
    from tests.loyalty.factories import TierFactory
    from tests.members.factories import MemberFactory

    TierFactory(code="gold")  # an offer's audience names it, as the seed's tiers do
    MemberFactory.create_batch(8)
    for name, seconds in (("WARM_UP_S", 1.0), ("DURATION_S", 2.0)):
        monkeypatch.setattr(member_api, name, seconds)
    monkeypatch.setattr(member_api, "RATE", 100)

    measured = member_api.api_member_home_p95(Options(members=8, runs=1))

    calls = measured.extra["calls_last_run"]
    assert measured.extra["errors_per_run"] == [{}]
    assert measured.extra["max_errors"] == {}
    assert calls["home"]["requests"] > 0 and calls["inbox"]["requests"] > 0
    assert 0 < calls["home"]["p50_ms"] <= calls["home"]["p95_ms"] == measured.value
    assert measured.extra["max_requests_per_s"] > 0
    line = json.loads(result_line(scenario="api_member_home_p95", unit="ms", target=25,
                                  measured=measured))
    assert list(line)[:6] == FIXED_KEYS


@pytest.mark.django_db
def test_campaign_scenarios_credit_orders_and_report_the_campaign():
    from bench import campaigns
    from bench.options import Options
    from loyalty.demo import demo_seed

    demo_seed(members=300, orders_per_member=1, seed=7)

    report = campaigns.campaign_report(Options(members=300, runs=1))
    day = campaigns.attribution_day(Options(members=300, runs=1))

    # 10 mailings of a tenth of the members each; 30 orders a day for 10 days
    assert (report.n, report.extra["orders"]) == (300, 300)
    assert 0 < report.extra["credited"] <= 300 and report.value > 0
    assert day.n == 30 and 0 < day.extra["credited"] <= 30
