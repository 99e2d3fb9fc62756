"""Gateway credentials move out of the plain settings into the encrypted `secrets` field
(communications/secrets.py), and gateways get the fields of their last health probe."""

from django.db import migrations, models

from communications.secrets import secrets_decrypt, secrets_encrypt

# The secret settings of each provider as of this migration (the adapters'
# `secret_settings`, plus the webhook key every provider may have); frozen here, so a later
# change to an adapter does not change what this migration did.
SHARED = ("inbound_secret",)
SECRET_SETTINGS = {
    "smtp": ("password",),
    "smpp": ("password",),
    "fcm": ("service_account", "private_key"),
}


def secrets_encrypt_existing(apps, schema_editor):
    Gateway = apps.get_model("communications", "Gateway")
    changed = []
    for gateway in Gateway.objects.only("pk", "provider", "settings"):
        if not isinstance(gateway.settings, dict):
            continue
        names = {*SHARED, *SECRET_SETTINGS.get(gateway.provider, ())}
        secret = {key: value for key, value in gateway.settings.items() if key in names}
        if secret:
            gateway.settings = {key: value for key, value in gateway.settings.items()
                                if key not in names}
            gateway.secrets = secrets_encrypt(secret)
            changed.append(gateway)
    Gateway.objects.bulk_update(changed, ["settings", "secrets"], batch_size=500)


def secrets_decrypt_back(apps, schema_editor):
    Gateway = apps.get_model("communications", "Gateway")
    changed = []
    for gateway in Gateway.objects.exclude(secrets="").only("pk", "settings", "secrets"):
        settings = gateway.settings if isinstance(gateway.settings, dict) else {}
        gateway.settings = {**settings, **secrets_decrypt(gateway.secrets)}
        gateway.secrets = ""
        changed.append(gateway)
    Gateway.objects.bulk_update(changed, ["settings", "secrets"], batch_size=500)


class Migration(migrations.Migration):

    dependencies = [
        ("communications", "0010_channel_cascade_failover"),
    ]

    operations = [
        migrations.AddField(
            model_name="gateway",
            name="secrets",
            field=models.TextField(blank=True, db_default="", default="", editable=False),
        ),
        migrations.AddField(
            model_name="gateway",
            name="last_health_ok",
            field=models.BooleanField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="gateway",
            name="last_health_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="gateway",
            name="last_health_detail",
            field=models.CharField(blank=True, db_default="", default="", editable=False,
                                   max_length=500),
        ),
        migrations.RunPython(secrets_encrypt_existing, secrets_decrypt_back),
    ]
