"""The TEMP staging tables of one block: COPY on PostgreSQL, executemany on SQLite."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from django.db import connection

from members.imports.layout import Layout
from members.imports.reading import Encoder
from members.models import Member

# Temp tables of one block: its cleaned rows, the members written, the consent changes.
STAGE, WRITTEN, CONSENT_STAGE = ("engage_import_stage", "engage_import_written",
                                 "engage_import_consents")


# --- the staging table ----------------------------------------------------------------------

_KINDS = {"CharField": "text", "EmailField": "text", "DateField": "date",
          "DateTimeField": "moment", "FloatField": "float"}


def _stage_columns(layout: Layout) -> list[tuple[str, str]]:
    """(column, kind) of the staging table, in the order of a cleaned row."""
    columns = [("line", "int"), ("external_id", "text"), ("valid", "bool")]
    columns += [(name, _KINDS[Member._meta.get_field(name).get_internal_type()])
                for name, _ in layout.profile]
    if layout.attributes:
        columns.append(("attrs", "json"))
    columns += [(f"consent_{channel}", "text") for channel, _ in layout.consents]
    if layout.consent_text is not None:
        columns.append(("consent_text", "text"))
    if layout.consented_at is not None:
        columns.append(("consented_at", "moment"))
    return columns


class Stage:
    """The staging table of one block where COPY is not available (SQLite: the embedded demo)."""

    types = {"int": "integer", "text": "text", "bool": "boolean", "date": "date",
             "moment": "datetime", "float": "real", "json": "text"}
    # json_patch removes the keys whose new value is null: an empty cell removes an attribute.
    attributes_merge = "json_patch(COALESCE({current}, '{{}}'), s.attrs)"
    create_suffix = ""
    fence = " LIMIT -1 OFFSET 0"  # a subquery the planner computes once, not inlined

    def __init__(self, layout: Layout) -> None:
        self.columns = _stage_columns(layout)

    def reset(self, cursor: Any) -> None:
        """Empty temp tables for the next block."""
        self._create(cursor)

    def _create(self, cursor: Any) -> None:
        moment = self.types["moment"]
        tables = {
            STAGE: ", ".join(f"{name} {self.types[kind]}" for name, kind in self.columns),
            WRITTEN: "id bigint, external_id text, created boolean",
            CONSENT_STAGE: f"member_id bigint, fresh boolean, channel text, action text, "
                           f"recorded_at {moment}, consent_text text",
        }
        for table, columns in tables.items():
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
            cursor.execute(f"CREATE TEMP TABLE {table} ({columns}){self.create_suffix}")

    def drop(self, cursor: Any) -> None:
        for table in (STAGE, WRITTEN, CONSENT_STAGE):
            cursor.execute(f"DROP TABLE IF EXISTS {table}")

    def members_write(self, cursor: Any, upsert: str, params: list[Any],
                      now: dt.datetime) -> None:
        """Run the members upsert, keeping (id, external id, created) of each written row."""
        cursor.execute(f"{upsert} RETURNING id, external_id, created_at = %s AS created",
                       [*params, now])
        cursor.executemany(f"INSERT INTO {WRITTEN} (id, external_id, created) "
                           f"VALUES (%s, %s, %s)", cursor.fetchall())

    def encoder(self) -> Encoder:
        ops = connection.ops
        adapt = {"date": lambda v: None if v is None else v.isoformat(),
                 "moment": ops.adapt_datetimefield_value,
                 "json": lambda v: None if v is None else json.dumps(v)}
        kinds = [adapt.get(kind) for _, kind in self.columns]
        return lambda rows, plain: [
            tuple(v if a is None else a(v) for a, v in zip(kinds, row, strict=True))
            for row in rows
        ]

    def load(self, cursor: Any, payload: Any) -> None:
        self.reset(cursor)
        names = ", ".join(name for name, _ in self.columns)
        cursor.executemany(f"INSERT INTO {STAGE} ({names}) "
                           f"VALUES ({', '.join(['%s'] * len(self.columns))})", payload)


def _copy_text(value: str) -> str:
    # str.translate with a dict costs a dictionary lookup per character; four replaces don't.
    return (value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r"))


def _json_encoder() -> Callable[[Any, int], list[str]] | None:
    """json.dumps with its defaults (the same text) without building an encoder per call, which
    is two thirds of its cost on a small object; None where the C encoder is not there."""
    try:
        return json.encoder.c_make_encoder(  # type: ignore[no-any-return]
            None, json.JSONEncoder().default, json.encoder.encode_basestring_ascii, None,
            ": ", ", ", False, False, True)
    except TypeError:  # not there (None), or another signature
        return None


_json_encode = _json_encoder()


def _copy_json(value: Any) -> str:
    # json.dumps's text is ASCII with control characters escaped: only its backslashes need
    # COPY's escape.
    text = "".join(_json_encode(value, 0)) if _json_encode else json.dumps(value)
    return text.replace("\\", "\\\\") if "\\" in text else text


# COPY's text form of each type a cleaned row holds (exact classes: bool is not int here).
_COPY_FORMATS: dict[type, Callable[[Any], str]] = {
    str: _copy_text, bool: lambda v: "t" if v else "f", int: str, float: repr,
    dt.date: dt.date.isoformat, dt.datetime: dt.datetime.isoformat, dict: _copy_json,
}


def _copy_payload(rows: list[tuple[Any, ...]], plain: bool) -> bytes:
    formats = _COPY_FORMATS
    return "".join([
        "\t".join([
            (v if plain else _copy_text(v)) if v.__class__ is str
            else "\\N" if v is None else formats[v.__class__](v)
            for v in row
        ]) + "\n"
        for row in rows
    ]).encode()


class PostgresStage(Stage):
    """PostgreSQL: COPY in text format, which the workers write, so the import process only
    forwards bytes."""

    types = {"int": "integer", "text": "text", "bool": "boolean", "date": "date",
             "moment": "timestamptz", "float": "double precision", "json": "jsonb"}
    attributes_merge = "jsonb_strip_nulls(COALESCE({current}, '{{}}'::jsonb) || s.attrs)"
    create_suffix = " ON COMMIT DROP"
    fence = " OFFSET 0"

    def __init__(self, layout: Layout) -> None:
        super().__init__(layout)
        self.created = False

    def reset(self, cursor: Any) -> None:
        """Empty temp tables for the next block: created with the import's first block, then
        truncated. A table created in the same transaction is truncated in place, where one
        dropped and created again is a new file each time: making and unlinking three files
        per block was ~4% of the database's CPU time in a 1M-row import."""
        if self.created:
            cursor.execute(f"TRUNCATE {STAGE}, {WRITTEN}, {CONSENT_STAGE}")
        else:
            self._create(cursor)
            self.created = True

    def drop(self, cursor: Any) -> None:
        super().drop(cursor)
        self.created = False

    def encoder(self) -> Encoder:
        return _copy_payload

    def members_write(self, cursor: Any, upsert: str, params: list[Any],
                      now: dt.datetime) -> None:
        cursor.execute(f"WITH written AS ({upsert} RETURNING id, external_id, "
                       f"created_at = %s AS created) INSERT INTO {WRITTEN} "
                       f"SELECT id, external_id, created FROM written", [*params, now])

    def load(self, cursor: Any, payload: Any) -> None:
        self.reset(cursor)
        names = ", ".join(name for name, _ in self.columns)
        with connection.connection.cursor() as raw, raw.copy(
                f"COPY {STAGE} ({names}) FROM STDIN") as copy:
            copy.write(payload)
