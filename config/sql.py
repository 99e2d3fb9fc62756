"""SQL written once for the hottest read paths, where compiling a queryset on every call cost
more CPU than the query itself (the app's home and inbox calls)."""

from __future__ import annotations

from typing import Any

from django.db import connection, models


def where_sql(model: type[models.Model], condition: models.Q) -> tuple[str, list[Any]]:
    """`condition` as a WHERE fragment over `model`'s table, its columns qualified by the table
    name, and its parameters: the queryset's own SQL, so a rule keeps one definition (the Q)
    while the caller writes the rest of the statement. Call it once and keep the result (it
    compiles); `condition` must not join other tables."""
    query = model._default_manager.filter(condition).query
    sql, params = query.get_compiler(connection=connection).compile(query.where)
    return sql, list(params)
