"""Raw SQL for the statements every login runs, written once per table from piccolo's metadata.

piccolo builds each query anew (column objects, aliases, a ``Table`` instance per inserted row):
for a one-row read or insert that costs two to three times what the database does with it
(docs/benchmarks.md, "change table"). The statements here have the same text piccolo would run,
minus the building; values still go as parameters (``{}``), never into the text.

The one-row reads by an indexed column start with ``POINT_READ``, and the writes of a few rows
found by an index start with ``POINT_WRITE``: outside a transaction, on SQLite, they run on the
event loop's own thread instead of a hop to a connection's thread (core/sqlite_pool.py), since such
a statement costs SQLite a few tens of microseconds and the hop more than that. Mark nothing else
so: a long statement there would hold up every request of the process.

``fetch`` runs them: what ``table.raw(template, *args).run()`` returns, without piccolo's query
object, its template parsed again on every call and its response pass (a third of a point read's
CPU on SQLite, a quarter on PostgreSQL: docs/benchmarks.md). The template's placeholders become the
driver's (``?`` or ``$n``) once per template and engine; the statement joins the transaction under
way, if any, exactly as piccolo's would.
"""

from __future__ import annotations

import functools
import string
from typing import Any, Protocol, cast

from piccolo.table import Table

POINT_READ = "/* point read */ "  # a comment: PostgreSQL and SQLite run the statement as it is
POINT_WRITE = "/* point write */ "


class StatementEngine(Protocol):
    """What guichet's engines add to piccolo's (core/sqlite_pool.py, core/database.py)."""

    engine_type: str

    async def run_statement(self, query: str, args: list[Any]) -> list[dict[str, Any]]: ...


@functools.lru_cache(maxsize=512)  # templates are written in the code: a few dozen in all
def compiled(template: str, engine_type: str) -> str:
    """``template`` with its ``{}`` placeholders in the driver's style (``?`` for SQLite, ``$1``… for
    PostgreSQL): the text piccolo sends for the same template, except after an escaped brace
    (``{{``), where piccolo 1.x misplaces the placeholders and this does not."""
    if engine_type not in ("sqlite", "postgres"):
        raise ValueError(f"no placeholder style for the {engine_type} engine")
    parts: list[str] = []
    placeholders = 0
    for literal, field, _, _ in string.Formatter().parse(template):
        parts.append(literal)
        if field is not None:  # an escaped brace ("{{") comes as a literal with no field
            placeholders += 1
            parts.append("?" if engine_type == "sqlite" else f"${placeholders}")
    return "".join(parts)


async def fetch(table: type[Table], template: str, *args: Any) -> list[dict[str, Any]]:
    """The rows of ``template`` (``{}`` for each of ``args``) run on ``table``'s engine, as dicts."""
    engine = cast(StatementEngine, table._meta.db)
    return await engine.run_statement(compiled(template, engine.engine_type), list(args))


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@functools.cache
def select_one(table: type[Table], column: str) -> str:
    """Every column of ``table``, named as piccolo's ``select()`` names them, of the row whose
    ``column`` (unique, indexed) equals the one parameter."""
    columns = ", ".join(f"{_quoted(c._meta.db_column_name)} AS {_quoted(c._meta.name)}" for c in table._meta.columns)
    where = _quoted(table._meta.get_column_by_name(column)._meta.db_column_name)
    return f"{POINT_READ}SELECT {columns} FROM {_quoted(table._meta.tablename)} WHERE {where} = {{}} LIMIT 1"


@functools.cache
def insert_one(table: type[Table], columns: tuple[str, ...], returning: str = "") -> str:
    """An INSERT of one row giving ``columns`` (one parameter each, in that order); the others take
    their database default, which is piccolo's default for every guichet table."""
    names = ", ".join(_quoted(table._meta.get_column_by_name(c)._meta.db_column_name) for c in columns)
    values = ", ".join("{}" for _ in columns)
    tail = f" RETURNING {_quoted(table._meta.get_column_by_name(returning)._meta.db_column_name)}" if returning else ""
    return f"{POINT_WRITE}INSERT INTO {_quoted(table._meta.tablename)} ({names}) VALUES ({values}){tail}"


@functools.cache
def select_latest(table: type[Table], columns: tuple[str, ...], where: tuple[str, ...]) -> str:
    """``columns`` of the newest row (highest id) whose ``where`` columns equal the parameters, in order
    (one of them indexed)."""
    names = ", ".join(
        f"{_quoted(table._meta.get_column_by_name(c)._meta.db_column_name)} AS {_quoted(c)}" for c in columns
    )
    conditions = " AND ".join(
        f"{_quoted(table._meta.get_column_by_name(c)._meta.db_column_name)} = {{}}" for c in where
    )
    return f'{POINT_READ}SELECT {names} FROM {_quoted(table._meta.tablename)} WHERE {conditions} ORDER BY "id" DESC LIMIT 1'


@functools.cache
def select_where(table: type[Table], columns: tuple[str, ...], where: str) -> str:
    """``columns`` of the row whose ``where`` column equals the one parameter (a unique, indexed column)."""
    names = ", ".join(
        f"{_quoted(table._meta.get_column_by_name(c)._meta.db_column_name)} AS {_quoted(c)}" for c in columns
    )
    column = _quoted(table._meta.get_column_by_name(where)._meta.db_column_name)
    return f"{POINT_READ}SELECT {names} FROM {_quoted(table._meta.tablename)} WHERE {column} = {{}} LIMIT 1"


@functools.cache
def update_where(table: type[Table], columns: tuple[str, ...], where: str, returning: str = "") -> str:
    """An UPDATE setting ``columns`` (one parameter each, in that order) of the rows whose ``where``
    column equals the last parameter: a point write, so ``where`` must be unique and indexed."""
    sets = ", ".join(f"{_quoted(table._meta.get_column_by_name(c)._meta.db_column_name)} = {{}}" for c in columns)
    column = _quoted(table._meta.get_column_by_name(where)._meta.db_column_name)
    tail = f" RETURNING {_quoted(table._meta.get_column_by_name(returning)._meta.db_column_name)}" if returning else ""
    return f"{POINT_WRITE}UPDATE {_quoted(table._meta.tablename)} SET {sets} WHERE {column} = {{}}{tail}"


@functools.cache
def insert_rows(table: type[Table], columns: tuple[str, ...], rows: int) -> str:
    """``insert_one`` for ``rows`` rows in one statement (their parameters one row after the other): a
    point write, so for a few rows only (a step's audit events)."""
    one = insert_one(table, columns)
    values = "(" + ", ".join("{}" for _ in columns) + ")"
    return one + "".join(", " + values for _ in range(rows - 1))
