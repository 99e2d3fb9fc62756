"""Production configuration: refuses to start unsafely, passes Django's deploy checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "k3y-" + "a1B2c3D4e5F6g7H8i9J0" * 3,
    "ENGAGE_SECRETS_KEY": "Xp7eHn2b8yBqk2Zr1m3c9T0v4W6s5D8f1G2h3J4k5L0=",
    "ALLOWED_HOSTS": "engage.example.com",
    "DATABASE_URL": os.environ.get("DATABASE_URL", "sqlite:///:memory:"),
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/15",
}


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY")}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


def test_production_refuses_to_start_without_a_secret_key():
    env = {k: v for k, v in PRODUCTION.items() if k != "SECRET_KEY"}

    result = _manage("check", **env)

    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_refuses_the_development_secret_key():
    result = _manage("check", **{**PRODUCTION,
                                 "SECRET_KEY": "django-insecure-engage-development-only"})

    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_deploy_checks_are_clean_in_production_settings():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_a_malformed_setting_fails_with_a_readable_error():
    result = _manage("check", **{**PRODUCTION, "CONN_MAX_AGE": "soon"})

    assert result.returncode != 0
    assert "invalid literal" in result.stderr or "CONN_MAX_AGE" in result.stderr


_STAFF_SIGN_IN = ("from django.conf import settings; print(settings.ENGAGE_STAFF_2FA, "
                  "settings.AXES_FAILURE_LIMIT, int(settings.AXES_COOLOFF_TIME.total_seconds()))")


def test_production_requires_the_staff_second_factor_and_locks_out_repeated_failures():
    result = _manage("shell", "--no-imports", "-c", _STAFF_SIGN_IN, **PRODUCTION)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "5", "900"]


def test_development_signs_staff_in_without_the_second_factor():
    result = _manage("shell", "--no-imports", "-c", _STAFF_SIGN_IN, DEBUG="true")

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "False"


def test_a_staff_login_attempt_limit_below_one_is_refused():
    result = _manage("check", **{**PRODUCTION, "ENGAGE_STAFF_LOGIN_ATTEMPTS": "0"})

    assert result.returncode != 0
    assert "ENGAGE_STAFF_LOGIN_ATTEMPTS" in result.stderr
