"""`manage.py demo_setup`: the demo `make run` opens on, created once and reused."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from campaigns.rules import rules_members
from communications.demo import DEMO_MAILING, PASSWORD_FILE
from communications.models import Gateway, Mailing, Template
from communications.services import mailing_schedulable_errors
from members.models import Member

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    settings.ENGAGE_SINK_DIR = tmp_path / "sent-mail"
    return tmp_path


def demo_setup() -> str:
    out = io.StringIO()
    call_command("demo_setup", stdout=out)
    return out.getvalue()


def test_running_demo_setup_twice_creates_the_demo_once(var_dir):
    # when
    demo_setup()
    password = (var_dir / PASSWORD_FILE).read_text().strip()
    demo_setup()

    # then
    assert Member.objects.count() == 200
    assert Mailing.objects.filter(name=DEMO_MAILING).count() == 1
    assert Gateway.objects.filter(name="Local sink").count() == 1
    assert Template.objects.count() == 1
    marketers = get_user_model().objects.filter(username="marketer")
    assert marketers.count() == 1
    assert (var_dir / PASSWORD_FILE).read_text().strip() == password
    marketer = marketers.get()
    assert marketer.is_staff and marketer.is_superuser
    assert marketer.check_password(password)


def test_the_demo_mailing_is_a_draft_ready_to_schedule_to_consenting_members():
    # when
    demo_setup()

    # then
    mailing = Mailing.objects.get(name=DEMO_MAILING)
    assert mailing.state == Mailing.State.DRAFT
    assert mailing_schedulable_errors(mailing=mailing) == {}
    assert mailing.gateway.provider == "file_sink"
    assert mailing.campaign.name == "Welcome back"
    assert "{{ member.first_name }}" in mailing.template.subject
    assert rules_members(mailing.target_group.rules).exists()


def test_a_changed_marketer_password_is_reset_to_the_saved_one(var_dir):
    # given
    demo_setup()
    marketer = get_user_model().objects.get(username="marketer")
    marketer.set_password("something-else-entirely")
    marketer.save()

    # when
    demo_setup()

    # then
    marketer.refresh_from_db()
    assert marketer.check_password((var_dir / PASSWORD_FILE).read_text().strip())


def test_members_are_not_seeded_into_a_database_that_has_some():
    # given
    call_command("seed_demo", members=5, stdout=io.StringIO())

    # when
    demo_setup()

    # then
    assert Member.objects.count() == 5


def test_the_banner_says_where_everything_is(var_dir):
    # when
    banner = demo_setup()

    # then
    mailing = Mailing.objects.get(name=DEMO_MAILING)
    password = (var_dir / PASSWORD_FILE).read_text().strip()
    assert "http://127.0.0.1:8000/admin/" in banner
    assert f"marketer / {password}" in banner
    assert "http://127.0.0.1:8000/api/schema/docs/" in banner
    assert "http://127.0.0.1:8000/healthz" in banner
    assert f"/admin/communications/mailing/{mailing.pk}/change/" in banner
    assert str(var_dir / "sent-mail" / f"gateway-{mailing.gateway_id}") in banner
    assert "Ctrl-C" in banner
