"""The bench database: recreated for the seed, reused after it, marked with what it holds.

The marker is a comment on the database itself (`COMMENT ON DATABASE`), so it disappears with
the database and can never describe a different one.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import redis
from django.conf import settings
from django.core.management import call_command
from django.db import connection, models
from psycopg import sql


def maintenance_connection() -> psycopg.Connection[Any]:
    db = settings.DATABASES["default"]
    if connection.vendor != "postgresql":
        raise RuntimeError("the benchmarks run on PostgreSQL: set DATABASE_URL=postgres://...")
    return psycopg.connect(
        dbname="postgres", user=db.get("USER") or None, password=db.get("PASSWORD") or None,
        host=db.get("HOST") or None, port=db.get("PORT") or None, autocommit=True,
    )


def _name() -> str:
    return settings.DATABASES["default"]["NAME"]


def database_recreate() -> None:
    """Drop and create the bench database, then migrate it. Connections to it are cut."""
    connection.close()
    with maintenance_connection() as maintenance:
        name = sql.Identifier(_name())
        maintenance.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        maintenance.execute(sql.SQL("CREATE DATABASE {}").format(name))
    call_command("migrate", interactive=False, verbosity=0)


def seed_marker_read() -> dict[str, Any] | None:
    """What the last completed seed wrote into this database, or None (absent or unseeded)."""
    with maintenance_connection() as maintenance:
        row = maintenance.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            [_name()],
        ).fetchone()
    if not row or not row[0]:
        return None
    try:
        return json.loads(row[0])
    except ValueError:
        return None


def seed_marker_write(marker: dict[str, Any]) -> None:
    with maintenance_connection() as maintenance:
        maintenance.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(_name()), sql.Literal(json.dumps(marker))
            )
        )


def table_truncate(model: type[models.Model]) -> None:
    """Empty a model's table at once (DELETE of a million messages takes minutes)."""
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE TABLE {connection.ops.quote_name(model._meta.db_table)}")


def broker_flush() -> None:
    """Drop every task and control message in the bench broker database (Redis db 14)."""
    url = settings.CELERY_BROKER_URL
    if not url.startswith("redis://"):
        raise RuntimeError("the benchmarks need a Redis broker: set CELERY_BROKER_URL=redis://...")
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
