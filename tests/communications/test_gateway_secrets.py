from __future__ import annotations

import importlib
import json
from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet
from django.apps import apps as django_apps
from django.db import connection
from django.test import override_settings
from django.urls import reverse

from communications.checks import gateway_secrets_readable
from communications.gateways import OutboundMessage
from communications.models import Gateway
from communications.secrets import SecretsUnreadable, secrets_encrypt
from communications.services.gateways import gateway_secrets_rotate
from communications.services.sending import (
    gateway_config,
    gateway_send,
)
from tests.communications.factories import GatewayFactory
from tests.peers.smpp import SmppPeer
from tests.peers.smtp_auth import AuthSmtpPeer
from tests.test_settings import PRODUCTION, _manage

pytestmark = pytest.mark.django_db

PASSWORD = "s3cret-relay-password"
OLD_KEY, NEW_KEY = Fernet.generate_key().decode(), Fernet.generate_key().decode()
migration = importlib.import_module("communications.migrations.0011_gateway_secrets_health")


@pytest.fixture
def auth_smtp_peer() -> Iterator[AuthSmtpPeer]:
    peer = AuthSmtpPeer(password=PASSWORD).start()
    yield peer
    peer.stop()


def _stored(gateway: Gateway) -> tuple[dict, str]:
    """What the database row holds, read past the model."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT settings::text, secrets FROM communications_gateway WHERE id = %s",
                       [gateway.pk])
        settings_text, secrets = cursor.fetchone()
    return settings_text, secrets


def _form_data(gateway: Gateway | None = None, **fields) -> dict:
    data = {"name": "Relay", "channel": "email", "provider": "smtp",
            "settings": '{"host": "127.0.0.1", "port": 2525}', "sender": "club@example.com",
            "price_per_message": "0", "is_active": "on", "backup": ""}
    if gateway is not None:
        data.update(name=gateway.name, channel=gateway.channel, provider=gateway.provider,
                    settings=json.dumps(gateway.settings), sender=gateway.sender,
                    price_per_message=str(gateway.price_per_message))
    data.update(fields)
    return data


# -- at rest ----------------------------------------------------------------------------------


def test_a_password_in_the_settings_is_stored_encrypted_and_not_in_the_settings():
    gateway = GatewayFactory(settings={"host": "relay.example.com", "password": PASSWORD})

    settings_text, secrets = _stored(gateway)
    gateway.refresh_from_db()
    assert gateway.settings == {"host": "relay.example.com"}
    assert PASSWORD not in settings_text and PASSWORD not in secrets
    assert gateway.secret_values() == {"password": PASSWORD}


def test_an_fcm_service_account_is_stored_encrypted_whole():
    account = {"project_id": "p", "client_email": "a@p.iam", "private_key": "-----BEGIN..."}
    gateway = GatewayFactory(channel="push", provider="fcm",
                             settings={"service_account": account, "concurrency": 8})

    gateway.refresh_from_db()
    assert gateway.settings == {"concurrency": 8}
    assert gateway.secret_values() == {"service_account": account}


def test_the_webhook_inbound_secret_is_a_secret_of_every_provider():
    gateway = GatewayFactory(channel="sms", provider="smpp",
                             settings={"host": "h", "system_id": "e", "inbound_secret": "hook"})

    gateway.refresh_from_db()
    assert "inbound_secret" not in gateway.settings
    assert gateway.secret_values() == {"inbound_secret": "hook"}


def test_the_adapter_gets_plain_and_secret_settings_together():
    gateway = GatewayFactory(settings={"host": "relay.example.com", "password": PASSWORD})

    config = gateway_config(gateway=Gateway.objects.get(pk=gateway.pk))

    assert config.settings == {"host": "relay.example.com", "password": PASSWORD}


def test_the_smtp_server_gets_the_decrypted_password_at_login(auth_smtp_peer):
    gateway = GatewayFactory(settings=auth_smtp_peer.gateway_settings())

    [result] = gateway_send(gateway=Gateway.objects.get(pk=gateway.pk), batch=[OutboundMessage(
        message_id=1, address="anna@example.com", subject="Hi", body="Hello")])

    assert result.ok, result.error
    assert auth_smtp_peer.logins == [("engage", PASSWORD, True)]


def test_the_smsc_gets_the_decrypted_password_at_bind():
    peer = SmppPeer().start()
    try:
        gateway = GatewayFactory(channel="sms", provider="smpp", settings=peer.gateway_settings())

        [result] = gateway_send(gateway=Gateway.objects.get(pk=gateway.pk), batch=[
            OutboundMessage(message_id=1, address="+4915112345678", subject="", body="Hi")])

        assert result.ok, result.error
        assert [(bind.password, bind.status) for bind in peer.binds] == [(peer.password, 0)]
    finally:
        peer.stop()


# -- keys ------------------------------------------------------------------------------------


def test_secrets_written_with_the_old_key_still_open_once_a_new_key_is_put_in_front():
    with override_settings(ENGAGE_SECRETS_KEY=OLD_KEY):
        gateway = GatewayFactory(settings={"host": "h", "password": PASSWORD})

    with override_settings(ENGAGE_SECRETS_KEY=f"{NEW_KEY},{OLD_KEY}"):
        assert Gateway.objects.get(pk=gateway.pk).secret_values() == {"password": PASSWORD}


def test_rotation_rewrites_every_gateways_secrets_with_the_new_key():
    with override_settings(ENGAGE_SECRETS_KEY=OLD_KEY):
        gateway = GatewayFactory(settings={"host": "h", "password": PASSWORD})

    with override_settings(ENGAGE_SECRETS_KEY=f"{NEW_KEY},{OLD_KEY}"):
        assert gateway_secrets_rotate() == 1
    with override_settings(ENGAGE_SECRETS_KEY=NEW_KEY):
        assert Gateway.objects.get(pk=gateway.pk).secret_values() == {"password": PASSWORD}


def test_secrets_under_a_key_no_longer_listed_are_refused_with_a_clear_error():
    with override_settings(ENGAGE_SECRETS_KEY=OLD_KEY):
        gateway = GatewayFactory(settings={"host": "h", "password": PASSWORD})

    with override_settings(ENGAGE_SECRETS_KEY=NEW_KEY), pytest.raises(SecretsUnreadable):
        Gateway.objects.get(pk=gateway.pk).secret_values()


def test_a_send_with_unreadable_secrets_fails_transiently_instead_of_raising():
    with override_settings(ENGAGE_SECRETS_KEY=OLD_KEY):
        gateway = GatewayFactory(settings={"host": "h", "password": PASSWORD})

    with override_settings(ENGAGE_SECRETS_KEY=NEW_KEY):
        [result] = gateway_send(gateway=Gateway.objects.get(pk=gateway.pk), batch=[
            OutboundMessage(message_id=1, address="anna@example.com", subject="", body="x")])

    assert (result.error.code, result.error.permanent) == ("secrets_unreadable", False)


def test_the_deploy_check_names_a_gateway_whose_secrets_the_key_cannot_open():
    with override_settings(ENGAGE_SECRETS_KEY=OLD_KEY):
        GatewayFactory(name="Old relay", settings={"host": "h", "password": PASSWORD})

    with override_settings(ENGAGE_SECRETS_KEY=NEW_KEY):
        errors = gateway_secrets_readable(databases=["default"])

    assert [error.id for error in errors] == ["communications.E002"]
    assert "Old relay" in errors[0].msg


def test_production_refuses_to_start_without_a_secrets_key():
    env = {key: value for key, value in PRODUCTION.items() if key != "ENGAGE_SECRETS_KEY"}

    result = _manage("check", **env)

    assert result.returncode != 0
    assert "ENGAGE_SECRETS_KEY must be set" in result.stderr


def test_production_refuses_a_secrets_key_that_is_not_a_fernet_key():
    result = _manage("check", **{**PRODUCTION, "ENGAGE_SECRETS_KEY": "not-a-key"})

    assert result.returncode != 0
    assert "ENGAGE_SECRETS_KEY must be one or more comma-separated Fernet keys" in result.stderr


# -- the migration ---------------------------------------------------------------------------


def test_the_migration_moves_existing_passwords_out_of_the_settings_encrypted():
    gateway = GatewayFactory(settings={"host": "h"})
    # As a row written before the migration: the password in the plain settings.
    Gateway.objects.filter(pk=gateway.pk).update(
        settings={"host": "h", "port": 25, "password": PASSWORD}, secrets="")

    migration.secrets_encrypt_existing(django_apps, None)

    settings_text, secrets = _stored(gateway)
    gateway.refresh_from_db()
    assert gateway.settings == {"host": "h", "port": 25}
    assert PASSWORD not in settings_text and PASSWORD not in secrets
    assert gateway.secret_values() == {"password": PASSWORD}


def test_the_migration_reversed_puts_the_passwords_back_in_the_settings():
    gateway = GatewayFactory(settings={"host": "h", "password": PASSWORD})

    migration.secrets_decrypt_back(django_apps, None)

    row = Gateway.objects.values("settings", "secrets").get(pk=gateway.pk)
    assert row == {"settings": {"host": "h", "password": PASSWORD}, "secrets": ""}


# -- the admin --------------------------------------------------------------------------------


def test_the_gateway_page_never_shows_a_stored_secret(marketer_client):
    gateway = GatewayFactory(settings={"host": "h", "password": PASSWORD,
                                       "inbound_secret": "hook-key-123"})

    html = marketer_client.get(reverse("admin:communications_gateway_change",
                                       args=[gateway.pk])).content.decode()

    assert PASSWORD not in html and "hook-key-123" not in html
    assert 'type="password" name="secret_password"' in html
    assert html.count("••• set") == 2


def test_a_password_typed_in_the_admin_is_stored_encrypted(marketer_client):
    response = marketer_client.post(reverse("admin:communications_gateway_add"),
                                    _form_data(secret_password=PASSWORD))

    assert response.status_code == 302, response.content.decode()
    gateway = Gateway.objects.get(name="Relay")
    assert "password" not in gateway.settings
    assert gateway.secret_values() == {"password": PASSWORD}


def test_a_blank_password_field_keeps_the_stored_password(marketer_client):
    gateway = GatewayFactory(settings={"host": "h", "password": PASSWORD})

    response = marketer_client.post(
        reverse("admin:communications_gateway_change", args=[gateway.pk]),
        _form_data(gateway, sender="new@example.com", secret_password=""))

    assert response.status_code == 302, response.content.decode()
    gateway.refresh_from_db()
    assert (gateway.sender, gateway.secret_values()) == ("new@example.com",
                                                         {"password": PASSWORD})


def test_a_password_typed_into_the_settings_json_in_the_admin_is_moved_out(marketer_client):
    marketer_client.post(reverse("admin:communications_gateway_add"), _form_data(
        settings=f'{{"host": "127.0.0.1", "password": "{PASSWORD}"}}'))

    gateway = Gateway.objects.get(name="Relay")
    assert gateway.settings == {"host": "127.0.0.1"}
    assert gateway.secret_values() == {"password": PASSWORD}


def test_a_removed_secret_is_deleted(marketer_client):
    gateway = GatewayFactory(settings={"host": "h", "password": PASSWORD,
                                       "inbound_secret": "hook"})

    marketer_client.post(reverse("admin:communications_gateway_change", args=[gateway.pk]),
                         _form_data(gateway, secrets_clear=["inbound_secret"]))

    gateway.refresh_from_db()
    assert gateway.secret_values() == {"password": PASSWORD}


def test_settings_invalid_with_the_secret_are_refused_naming_it(marketer_client):
    # SMPP passwords are at most 8 characters: validated with the secret, not without it.
    data = _form_data(channel="sms", provider="smpp", secret_password="much-too-long",
                      settings='{"host": "127.0.0.1", "system_id": "engage"}')

    response = marketer_client.post(reverse("admin:communications_gateway_add"), data)

    html = response.content.decode()
    assert response.status_code == 200
    assert "password: must be ASCII text of at most 8 characters" in html
    assert "much-too-long" not in html
    assert not Gateway.objects.filter(name="Relay").exists()


def test_a_secret_encrypted_elsewhere_is_never_in_a_gateway_list(marketer_client):
    gateway = GatewayFactory(settings={"host": "h"})
    Gateway.objects.filter(pk=gateway.pk).update(secrets=secrets_encrypt({"password": PASSWORD}))

    html = marketer_client.get(reverse("admin:communications_gateway_changelist")
                               ).content.decode()

    assert gateway.name in html and PASSWORD not in html
