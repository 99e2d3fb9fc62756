"""SQL written once for the hottest read paths, where compiling a queryset on every call cost
more CPU than the query itself (the app's home and inbox calls), and the cursor that keeps
their plans."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection, models
from django.db.backends.postgresql.base import ServerBindingCursor
from django.db.backends.utils import CursorWrapper


def prepared_cursor() -> CursorWrapper:
    """A cursor for the hot read paths' own statements, each planned once per connection.

    Django's PostgreSQL cursors bind parameters on the client (psycopg's ClientCursor), so
    PostgreSQL parses and plans every statement anew: on the app's home call that was 0.6 ms of
    the database's CPU against 0.18 ms with the plans kept. This cursor binds on the server, so
    psycopg prepares a statement once it has run `prepare_threshold` times on the connection
    (settings.py sets it; Django's default, None, prepares nothing) and keeps up to 100 per
    connection, least recently used dropped. Django's own cursors never prepare (client-side
    binding), so only statements run here are kept: ones written out whose parameters' types
    PostgreSQL can infer, which is why this is not the `server_side_binding` switch for every
    query. A transaction-pooling PgBouncer before 1.21 would not keep prepared statements
    apart: connect directly or in session mode. Elsewhere (SQLite) it is the ordinary cursor.
    """
    if connection.vendor != "postgresql":
        return connection.cursor()
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        return connection._prepare_cursor(ServerBindingCursor(connection.connection))


def where_sql(model: type[models.Model], condition: models.Q) -> tuple[str, list[Any]]:
    """`condition` as a WHERE fragment over `model`'s table, its columns qualified by the table
    name, and its parameters: the queryset's own SQL, so a rule keeps one definition (the Q)
    while the caller writes the rest of the statement. Call it once and keep the result (it
    compiles); `condition` must not join other tables."""
    query = model._default_manager.filter(condition).query
    sql, params = query.get_compiler(connection=connection).compile(query.where)
    return sql, list(params)


class ModelRows:
    """Model instances from rows of a statement written out, without a RawQuerySet: that one
    works out the model's column order, its converters and each column's description on
    every query, which cost more CPU than the query on the app's hottest calls.

    `columns` are attnames (all the model's concrete fields by default), in the order the
    statement selects them; `select(alias)` writes that list. Values go through the fields'
    own `from_db_value` (a JSONField's decoding), as the ORM does; the rest (text, numbers,
    dates, times) come from psycopg as Python values already."""

    def __init__(self, model: type[models.Model], columns: Sequence[str] | None = None) -> None:
        fields = {field.attname: field for field in model._meta.concrete_fields}
        wanted = set(columns) if columns is not None else set(fields)
        # Model.from_db takes values in the model's field order.
        self.columns = tuple(name for name in fields if name in wanted)
        self.model = model
        self._converters = [
            (index, fields[name].from_db_value) for index, name in enumerate(self.columns)
            if hasattr(fields[name], "from_db_value")]
        self._field_objects = [fields[name] for name in self.columns]

    def select(self, alias: str) -> str:
        return ", ".join(f'{alias}."{self._field_objects[i].column}"'
                         for i in range(len(self.columns)))

    def instance(self, values: Sequence[Any]) -> models.Model:
        """One instance from the first len(columns) values of a row."""
        values = list(values[:len(self.columns)])
        for index, convert in self._converters:
            values[index] = convert(values[index], None, connection)
        return self.model.from_db(None, self.columns, values)
