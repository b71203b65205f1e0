"""Raw SQL for the per-request reads, with rows read by column name and converted as the ORM would.

The key check and the route lookup run on every request, and compiling their ORM queries
cost ~1.3 ms, more than the database takes to answer; so they stay one raw statement each.
What the ORM would have given for free is kept: each column is declared once (the name its
value is read by, and the model field it comes from, which also gives its SQL), and values
go through that field's database converters — SQLite hands back decimals as floats and
datetimes naive, and JSON comes back as text on every backend.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model
from django.db.models.expressions import Col

Converter = Any  # Django's converters: (value, expression, connection) -> value


@dataclass(frozen=True, slots=True)
class Expr:
    """A computed column: its SQL and the field that says what its value is."""

    sql: str
    field: Field[Any, Any]


class Select:
    """One SELECT statement whose columns are named.

    `tables` maps each alias used in `rest` (FROM ... WHERE ...) to its model; `columns` maps
    a name to `"alias.field"` (a model field, by its Python name) or to an `Expr`.
    """

    def __init__(self, *, tables: Mapping[str, type[Model]], columns: Mapping[str, str | Expr], rest: str) -> None:
        self.names = tuple(columns)
        self.expressions = tuple(_expression(tables, spec) for spec in columns.values())
        select = ", ".join(sql for sql, _ in self.expressions)
        self.sql = f"SELECT {select} {rest}"
        self._converters: weakref.WeakKeyDictionary[BaseDatabaseWrapper, list[tuple[int, list[Converter], Col]]]
        self._converters = weakref.WeakKeyDictionary()

    def one(self, params: Sequence[Any]) -> dict[str, Any] | None:
        rows = self.all(params)
        return rows[0] if rows else None

    def all(self, params: Sequence[Any]) -> list[dict[str, Any]]:
        db = connections[DEFAULT_DB_ALIAS]
        if db.vendor == "postgresql":
            # Server-side binding, so psycopg prepares the statement after a few runs on a
            # connection (settings: prepare_threshold): planning these joins took longer than
            # running them (~0.3 ms against ~0.1). Django's cursors bind client-side, which
            # never prepares.
            db.ensure_connection()
            started = time.monotonic()
            # Django's error classes, as its own cursors raise them (callers catch DatabaseError).
            with db.wrap_database_errors, psycopg.Cursor(db.connection) as raw:
                raw.execute(self.sql, params)
                rows = raw.fetchall()
            if db.queries_logged:  # as Django's debug cursor logs (tests count queries by it)
                db.queries_log.append({"sql": self.sql, "time": f"{time.monotonic() - started:.3f}"})
        else:
            with db.cursor() as cursor:
                cursor.execute(self.sql, params)
                rows = cursor.fetchall()
        converters = self._converters_for(db)
        result = []
        for row in rows:
            values = list(row)
            for position, steps, expression in converters:
                for step in steps:
                    values[position] = step(values[position], expression, db)
            result.append(dict(zip(self.names, values, strict=True)))
        return result

    def _converters_for(self, db: BaseDatabaseWrapper) -> list[tuple[int, list[Converter], Col]]:
        # Worked out once per connection: asking the backend for them costs ~0.1 ms a statement.
        found = self._converters.get(db)
        if found is None:
            found = []
            for position, (_, expression) in enumerate(self.expressions):
                steps = db.ops.get_db_converters(expression) + expression.get_db_converters(db)
                if steps:
                    found.append((position, steps, expression))
            self._converters[db] = found
        return found


def _expression(tables: Mapping[str, type[Model]], spec: str | Expr) -> tuple[str, Col]:
    if isinstance(spec, Expr):
        return spec.sql, Col("", spec.field)
    alias, _, name = spec.partition(".")
    field = tables[alias]._meta.get_field(name)
    if not isinstance(field, Field) or field.column is None:
        raise TypeError(f"{spec} is not a column")  # a reverse relation or a many-to-many
    return f"{alias}.{field.column}", Col(alias, field)
