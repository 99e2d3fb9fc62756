"""A/B tested mailings: the test part split among the variants by the snapshot, each message
sent with its variant's template, the winner chosen by its metric after the test hours and
sent to the held rest. Sent through a real SMTP peer; opens and clicks come in through
Engage's own tracking pixel and link redirect."""
from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.urls import reverse

from communications.models import Mailing, Message, WinnerMetric
from communications.services import mailing_prepare, mailing_schedule, message_batch_dispatch
from communications.services.experiments import experiments_decide, mailing_variants_set
from communications.services.mailings import mailing_create, mailing_update, mailings_tick
from communications.services.snapshots import BUCKETS, TEST_SALT, member_bucket_of
from tests.communications.factories import (
    ADMIN_NO_CASCADE_STEPS,
    GatewayFactory,
    MailingFactory,
    TemplateFactory,
)
from tests.loyalty.factories import OrderFactory
from tests.members.factories import consenting_member

pytestmark = pytest.mark.django_db

Status = Message.Status
State = Mailing.State
HTML = ('<html><body><p>Hi {{ member.first_name }}</p>'
        '<a href="https://shop.example.com/offer">Offer</a></body></html>')


def _template(label: str, channel: str = "email"):
    return TemplateFactory(name=f"Variant {label}", channel=channel,
                           subject=f"Offer {label} for {{{{ member.first_name }}}}",
                           html_body=HTML)


def _ab_mailing(smtp_peer, *, members: int, variants: int = 2, test_percent: int = 50,
                metric: str = WinnerMetric.OPEN_RATE, **fields) -> Mailing:
    for _ in range(members):
        consenting_member()
    mailing = MailingFactory(
        gateway=GatewayFactory(settings=smtp_peer.gateway_settings()), track_engagement=True,
        template=_template("main"), test_percent=test_percent, winner_metric=metric,
        test_hours=2, **fields)
    mailing_variants_set(mailing=mailing, templates=[_template("ABCDE"[n])
                                                     for n in range(variants)])
    mailing_schedule(mailing=mailing)
    mailing_prepare(mailing_id=mailing.pk)
    mailing.refresh_from_db()
    return mailing


def _send_all_due(mailing: Mailing) -> None:
    while message_batch_dispatch(mailing_id=mailing.pk, batch_size=50)["claimed"]:
        pass


def _subjects(smtp_peer) -> dict[str, str]:
    """Recipient -> subject's variant word ("Offer B for Ann" -> "B")."""
    return {rcpt: mail.message["Subject"].split()[1]
            for mail in smtp_peer.received for rcpt in mail.rcpt_tos}


def _html(smtp_peer, address: str) -> str:
    mail = next(m for m in smtp_peer.received if address in m.rcpt_tos)
    return mail.message.get_body(preferencelist=("html",)).get_content()


def _tracking_path(html: str, kind: str) -> str:
    url = re.search(rf'"([^"]*/t/{kind}/[^"]+)"', html).group(1)
    return url.removeprefix(settings.ENGAGE_PUBLIC_URL)


def _engage(client, smtp_peer, mailing: Mailing, *, variant: int, kind: str,
            share: float = 1.0) -> int:
    """Open ("o") or click ("c") `share` of the variant's emails, as their members would."""
    addresses = list(Message.objects.filter(mailing=mailing, variant=variant)
                     .order_by("pk").values_list("address", flat=True))
    chosen = addresses[:round(len(addresses) * share)]
    for address in chosen:
        assert client.get(_tracking_path(_html(smtp_peer, address), kind)).status_code in (
            200, 302)
    return len(chosen)


def _after_the_test(mailing: Mailing) -> object:
    return mailing.started_at + timedelta(hours=mailing.test_hours, minutes=1)


def _decided(mailing: Mailing) -> Mailing:
    experiments_decide(now=_after_the_test(mailing))
    mailing.refresh_from_db()
    return mailing


# --- the split ----------------------------------------------------------------------------

def test_the_test_share_is_split_evenly_among_the_variants_and_the_rest_is_held(smtp_peer):
    mailing = _ab_mailing(smtp_peer, members=60, variants=3, test_percent=40)

    cut = 40 * BUCKETS // 100
    expected = {}
    for member_id, in Message.objects.filter(mailing=mailing).values_list("member_id"):
        draw = member_bucket_of(mailing_id=mailing.pk, salt=TEST_SALT, member_id=member_id)
        expected[member_id] = 1 + draw % 3 if draw < cut else None
    rows = dict(Message.objects.filter(mailing=mailing).values_list("member_id", "variant"))
    assert rows == expected
    assert {v for v in expected.values() if v} == {1, 2, 3}
    held = Message.objects.filter(mailing=mailing, variant__isnull=True)
    assert set(held.values_list("status", "held_for")) == {(Status.QUEUED, "ab_test")}
    assert 12 <= 60 - held.count() <= 36  # about 40%


def test_each_test_message_is_sent_with_its_variants_template_and_the_rest_waits(smtp_peer):
    mailing = _ab_mailing(smtp_peer, members=30, variants=2)

    _send_all_due(mailing)

    variants = dict(Message.objects.filter(mailing=mailing, variant__isnull=False)
                    .values_list("address", "variant"))
    assert _subjects(smtp_peer) == {address: "AB"[v - 1] for address, v in variants.items()}
    mailing.refresh_from_db()
    assert mailing.state == State.SENDING  # the held rest keeps it open
    assert Message.objects.filter(mailing=mailing, status=Status.QUEUED,
                                  held_for="ab_test").count() == 30 - len(variants)


def test_no_winner_is_chosen_before_the_test_hours_are_over(smtp_peer):
    mailing = _ab_mailing(smtp_peer, members=20)
    _send_all_due(mailing)

    experiments_decide(now=mailing.started_at + timedelta(hours=1, minutes=59))

    mailing.refresh_from_db()
    assert mailing.winner is None
    assert Message.objects.filter(mailing=mailing, held_for="ab_test").exists()


# --- the winner ---------------------------------------------------------------------------

def test_the_variant_opened_most_wins_by_open_rate_and_the_rest_gets_its_template(
        smtp_peer, client):
    mailing = _ab_mailing(smtp_peer, members=40, variants=2, metric=WinnerMetric.OPEN_RATE)
    _send_all_due(mailing)
    _engage(client, smtp_peer, mailing, variant=1, kind="o", share=0.25)
    _engage(client, smtp_peer, mailing, variant=2, kind="o", share=0.75)

    mailing = _decided(mailing)
    _send_all_due(mailing)

    assert (mailing.winner.position, mailing.winner.label) == (2, "B")
    rest = list(Message.objects.filter(mailing=mailing, variant__isnull=True)
                .values_list("address", "status"))
    assert rest and {status for _, status in rest} == {Status.SENT}
    subjects = _subjects(smtp_peer)
    assert {subjects[address] for address, _ in rest} == {"B"}
    mailing.refresh_from_db()
    assert mailing.state == State.COMPLETED


def test_the_variant_clicked_most_wins_by_click_rate_though_another_was_opened_more(
        smtp_peer, client):
    mailing = _ab_mailing(smtp_peer, members=60, variants=3, metric=WinnerMetric.CLICK_RATE)
    _send_all_due(mailing)
    _engage(client, smtp_peer, mailing, variant=2, kind="o", share=1.0)
    _engage(client, smtp_peer, mailing, variant=3, kind="c", share=0.5)
    _engage(client, smtp_peer, mailing, variant=1, kind="c", share=0.2)

    mailing = _decided(mailing)
    _send_all_due(mailing)

    assert mailing.winner.label == "C"
    rest = Message.objects.filter(mailing=mailing, variant__isnull=True)
    subjects = _subjects(smtp_peer)
    assert {subjects[address] for address in rest.values_list("address", flat=True)} == {"C"}


def test_the_variant_whose_members_ordered_most_wins_by_conversion_rate(smtp_peer, client):
    mailing = _ab_mailing(smtp_peer, members=40, variants=2,
                          metric=WinnerMetric.CONVERSION_RATE)
    _send_all_due(mailing)
    _engage(client, smtp_peer, mailing, variant=2, kind="c", share=1.0)  # clicks, no orders
    buyers = Message.objects.filter(mailing=mailing, variant=1).values_list("member_id",
                                                                            flat=True)[:3]
    for member_id in buyers:
        OrderFactory(member_id=member_id, placed_at=mailing.started_at + timedelta(minutes=30),
                     total=Decimal("40.00"))

    mailing = _decided(mailing)

    assert mailing.winner.label == "A"


def test_a_tie_goes_to_the_lowest_position(smtp_peer):
    mailing = _ab_mailing(smtp_peer, members=30, variants=3, metric=WinnerMetric.OPEN_RATE)
    _send_all_due(mailing)

    mailing = _decided(mailing)  # nothing opened: every rate is 0

    assert mailing.winner.label == "A"


def test_the_scheduler_tick_chooses_the_winner_once_the_test_is_over(smtp_peer):
    mailing = _ab_mailing(smtp_peer, members=20)
    _send_all_due(mailing)

    outcome = mailings_tick(now=_after_the_test(mailing))

    mailing.refresh_from_db()
    assert outcome["winners"] == {mailing.pk: "A"}
    assert mailing.winner_chosen_at == _after_the_test(mailing)
    assert not Message.objects.filter(mailing=mailing, held_for="ab_test").exists()


def test_the_winner_is_chosen_once(smtp_peer, client):
    mailing = _ab_mailing(smtp_peer, members=30)
    _send_all_due(mailing)
    first = _decided(mailing).winner
    _engage(client, smtp_peer, mailing, variant=2 if first.position == 1 else 1, kind="o")

    assert experiments_decide(now=_after_the_test(mailing) + timedelta(hours=1)) == {}
    mailing.refresh_from_db()
    assert mailing.winner == first


# --- validation -----------------------------------------------------------------------------

@pytest.mark.parametrize("count", [1, 6])
def test_an_ab_test_needs_two_to_five_variants(count):
    mailing = MailingFactory()

    with pytest.raises(ValidationError) as error:
        mailing_variants_set(mailing=mailing, templates=[_template("X") for _ in range(count)])

    assert "2 to 5 variants" in str(error.value.message_dict["variants"])


def test_a_variant_template_of_another_channel_is_refused_naming_the_variant():
    mailing = MailingFactory()

    with pytest.raises(ValidationError) as error:
        mailing_variants_set(mailing=mailing, templates=[_template("A"),
                                                         _template("B", channel="sms")])

    assert error.value.message_dict["variants"] == [
        "variant B: the template is for sms, the mailing sends email"]


def test_an_ab_test_with_a_channel_cascade_is_refused():
    gateway = GatewayFactory(channel="sms", provider="smpp")
    with pytest.raises(ValidationError) as error:
        mailing_create(name="A/B with cascade", template=_template("main"),
                       gateway=GatewayFactory(),
                       cascade=[(_template("sms", channel="sms"), gateway)],
                       variants=[_template("A"), _template("B")])

    assert "cascade_steps" in error.value.message_dict


def test_an_ab_test_cannot_be_sent_in_member_time_zones():
    mailing = mailing_create(name="A/B", template=_template("main"), gateway=GatewayFactory(),
                             variants=[_template("A"), _template("B")])

    with pytest.raises(ValidationError) as error:
        mailing_update(mailing=mailing, send_in_member_timezone=True)

    assert "send_in_member_timezone" in error.value.message_dict


def test_a_test_share_over_half_is_refused_naming_the_field():
    with pytest.raises(ValidationError) as error:
        mailing_create(name="A/B", template=_template("main"), gateway=GatewayFactory(),
                       test_percent=60)

    assert "test_percent" in error.value.message_dict


def test_the_api_answers_400_with_the_variants_error(marketer_client):
    mailing = MailingFactory()
    sms = _template("B", channel="sms")

    response = marketer_client.patch(
        f"/api/v1/mailings/{mailing.pk}/",
        {"variants": [{"template": _template("A").pk}, {"template": sms.pk}]},
        content_type="application/json")

    assert response.status_code == 400
    assert response.json()["variants"] == [
        "variant B: the template is for sms, the mailing sends email"]


def test_the_api_answers_400_naming_a_holdout_out_of_range(marketer_client):
    mailing = MailingFactory()

    response = marketer_client.patch(f"/api/v1/mailings/{mailing.pk}/",
                                     {"holdout_percent": 70}, content_type="application/json")

    assert response.status_code == 400
    assert "holdout_percent" in response.json()


def test_the_api_writes_and_shows_the_variants_and_test_fields(marketer_client):
    mailing = MailingFactory()
    a, b = _template("A"), _template("B")

    response = marketer_client.patch(
        f"/api/v1/mailings/{mailing.pk}/",
        {"variants": [{"template": a.pk}, {"template": b.pk}], "test_percent": 30,
         "test_hours": 6, "winner_metric": "click_rate", "holdout_percent": 10},
        content_type="application/json")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["variants"] == [{"position": 1, "label": "A", "template": a.pk},
                                {"position": 2, "label": "B", "template": b.pk}]
    assert (body["test_percent"], body["test_hours"], body["winner_metric"],
            body["holdout_percent"], body["winner"]) == (30, 6, "click_rate", 10, None)


def test_the_admin_form_shows_an_error_for_a_variant_of_another_channel(marketer_client):
    mailing = MailingFactory()
    sms = _template("B", channel="sms")

    response = marketer_client.post(
        reverse("admin:communications_mailing_change", args=[mailing.pk]),
        {"name": mailing.name, "campaign": mailing.campaign_id,
         "target_group": mailing.target_group_id, "template": mailing.template_id,
         "gateway": mailing.gateway_id, "priority": 0, "holdout_percent": 10,
         "test_percent": 20, "test_hours": 4, "winner_metric": "open_rate", "_save": "1",
         **ADMIN_NO_CASCADE_STEPS, "variants-TOTAL_FORMS": "2",
         "variants-0-position": "1", "variants-0-template": _template("A").pk,
         "variants-1-position": "2", "variants-1-template": sms.pk})

    assert response.status_code == 200
    errors = response.context["inline_admin_formsets"][1].formset.non_form_errors()
    assert list(errors) == ["variant B: the template is for sms, the mailing sends email"]
    assert not mailing.variants.exists()


def test_the_admin_saves_the_holdout_and_the_variants(marketer_client):
    mailing = MailingFactory()
    a, b = _template("A"), _template("B")

    response = marketer_client.post(
        reverse("admin:communications_mailing_change", args=[mailing.pk]),
        {"name": mailing.name, "campaign": mailing.campaign_id,
         "target_group": mailing.target_group_id, "template": mailing.template_id,
         "gateway": mailing.gateway_id, "priority": 0, "holdout_percent": 10,
         "test_percent": 25, "test_hours": 3, "winner_metric": "conversion_rate",
         "_save": "1", **ADMIN_NO_CASCADE_STEPS, "variants-TOTAL_FORMS": "2",
         "variants-0-position": "1", "variants-0-template": a.pk,
         "variants-1-position": "2", "variants-1-template": b.pk})

    assert response.status_code == 302
    mailing.refresh_from_db()
    assert (mailing.holdout_percent, mailing.test_percent, mailing.test_hours,
            mailing.winner_metric) == (10, 25, 3, "conversion_rate")
    assert list(mailing.variants.values_list("position", "template")) == [(1, a.pk), (2, b.pk)]


def test_the_report_shows_the_variants_and_the_winner(smtp_peer, client, marketer_client):
    mailing = _ab_mailing(smtp_peer, members=30, holdout_percent=20)
    _send_all_due(mailing)
    _engage(client, smtp_peer, mailing, variant=2, kind="o")
    _decided(mailing)

    page = marketer_client.get(reverse("admin:communications_mailing_report",
                                       args=[mailing.pk])).content.decode()

    assert "Lift over the control group" in page
    assert "variant B won" in page
    assert "B (winner)" in page


def test_the_mailing_page_shows_the_experiment_in_its_report(smtp_peer, client,
                                                             marketer_client):
    mailing = _ab_mailing(smtp_peer, members=20, holdout_percent=20)
    _send_all_due(mailing)
    _decided(mailing)

    page = marketer_client.get(reverse("admin:communications_mailing_change",
                                       args=[mailing.pk])).content.decode()

    assert "Lift over the control group" in page
    assert "variant A won" in page


def test_the_marketer_can_choose_the_winner_before_the_test_hours_are_over(
        smtp_peer, client, marketer_client):
    mailing = _ab_mailing(smtp_peer, members=20)
    _send_all_due(mailing)
    _engage(client, smtp_peer, mailing, variant=2, kind="o")
    url = reverse("admin:communications_mailing_change", args=[mailing.pk])
    assert "Choose the winner now" in marketer_client.get(url).content.decode()

    response = marketer_client.post(url, {"_winner": "1"})

    assert response.status_code == 302
    mailing.refresh_from_db()
    assert mailing.winner.label == "B"
    assert not Message.objects.filter(mailing=mailing, held_for="ab_test").exists()
    assert "Choose the winner now" not in marketer_client.get(url).content.decode()
