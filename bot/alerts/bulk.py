"""Many rows into one table in one statement whose text does not depend on the row count.

A multi-row `INSERT ... VALUES (...), (...), ...` of a hundred alerts is ~45 KB of SQL that
changes with every batch: psycopg parses it in Python each time (it caches only short
queries) and PostgreSQL plans it each time, which made a storm's ingest on PostgreSQL
bound by that parsing. On PostgreSQL the rows therefore travel as one JSON parameter,
`INSERT INTO t (a, b) SELECT a, b FROM json_to_recordset(%(rows)s::JSON) AS batch(a T, b U)
RETURNING ...`: the same short statement for every batch, which psycopg caches and, once a
connection has run it a few times, prepares, and one parameter encoded by the C JSON
encoder (arrays, one per column, cost more: psycopg escapes each element in Python).
Values are what the column types send: datetimes go through their column's type (aware
UTC) as ISO 8601, and a JSON column's value is embedded as `json.dumps` writes it, which is
what PostgreSQL stores for it, so the rows are those the multi-row INSERT stores. Other
databases (SQLite) keep the multi-row INSERT.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    JSON,
    Executable,
    Table,
    Text,
    bindparam,
    cast,
    column,
    func,
    insert,
    select,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session


def insert_rows(
    session: Session,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """Insert `rows` (each with the same keys, a value for each) in one statement, in the
    session's transaction; the `returning` columns of the inserted rows (in no promised
    order: return a column that identifies each row)."""
    if not rows:
        return []
    names = tuple(rows[0])
    if any(tuple(row) != names for row in rows):
        raise ValueError(f"rows for {table.name} must all have the same columns {names}")
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql":
        convert = _converters(table, names, dialect)
        document = json.dumps([{name: convert[name](row[name]) for name in names} for row in rows])
        statement = _recordset_insert(table, names, tuple(returning))
        result = session.execute(statement, {"rows": document})
        return [tuple(row) for row in result] if returning else []
    if not returning:
        session.execute(insert(table), list(rows))
        return []
    statement = insert(table).returning(*(table.c[name] for name in returning))
    return [tuple(row) for row in session.execute(statement, list(rows))]


def _same(value: Any) -> Any:
    return value


@lru_cache(maxsize=32)
def _converters(
    table: Table, names: tuple[str, ...], dialect: Dialect
) -> dict[str, Callable[[Any], Any]]:
    """Per column, what turns a value into its JSON form: JSON values as they are, others
    through their type's bind processing (a datetime then as ISO 8601)."""
    convert: dict[str, Callable[[Any], Any]] = {}
    for name in names:
        kind = table.c[name].type
        processor = None if isinstance(kind, JSON) else kind.bind_processor(dialect)
        convert[name] = _same if processor is None else _through(processor)
    return convert


def _through(processor: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`processor`, then ISO 8601 for a datetime; remembered per value, since a batch's
    rows mostly share their times (values that compare equal convert alike: UTC)."""

    @lru_cache(maxsize=1024)
    def convert(value: Any) -> Any:
        value = processor(value)
        return value.isoformat() if isinstance(value, datetime) else value

    return convert


@lru_cache(maxsize=32)
def _recordset_insert(
    table: Table, names: tuple[str, ...], returning: tuple[str, ...]
) -> Executable:
    """`INSERT INTO table (names) SELECT names FROM json_to_recordset(:rows) AS batch(name
    type, ...)`, built once per table and column set so that SQLAlchemy, psycopg and
    PostgreSQL each see the same statement every time."""
    records = (
        func.json_to_recordset(cast(bindparam("rows", type_=Text), JSON))
        .table_valued(*(column(name, table.c[name].type) for name in names))
        .render_derived("batch", with_types=True)
    )
    statement = insert(table).from_select(names, select(*(records.c[name] for name in names)))
    if returning:
        return statement.returning(*(table.c[name] for name in returning))
    return statement
