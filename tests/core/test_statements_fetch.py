"""The statements written once (core/statements.py) run without piccolo's query object: the same text
the driver would get from piccolo, the same rows back, in the transaction under way. Both engines."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from piccolo.querystring import QueryString

from guichet.core.database import INTEGRITY_ERRORS, Database
from guichet.core.statements import compiled, fetch, insert_one, insert_rows, select_one, select_where, update_where
from guichet.core.tables import AuditLog, Session

EXPIRES = dt.datetime(2026, 3, 15, 9, 0, tzinfo=dt.UTC)

TEMPLATES = [
    select_one(Session, "key"),
    insert_one(Session, ("key", "data", "expires_at"), returning="id"),
    update_where(Session, ("key", "data", "expires_at"), "key", "id"),
    insert_rows(AuditLog, ("at", "kind", "account_id"), 3),
    "SELECT 1",
]


@pytest.mark.parametrize("engine_type", ["sqlite", "postgres"])
@pytest.mark.parametrize("template", TEMPLATES)
def test_a_template_compiles_to_what_piccolo_sends_the_driver(template: str, engine_type: str) -> None:
    args = list(range(template.count("{}")))
    assert compiled(template, engine_type) == QueryString(template, *args).compile_string(engine_type)[0]


def test_postgres_placeholders_are_numbered_in_order_past_an_escaped_brace() -> None:
    # no statement of guichet's has one; piccolo 1.x would put a placeholder after the escaped brace
    assert compiled("a = {} AND b = '{{x}}' AND c = {}", "postgres") == "a = $1 AND b = '{x}' AND c = $2"
    assert compiled("a = {} AND b = '{{x}}' AND c = {}", "sqlite") == "a = ? AND b = '{x}' AND c = ?"


async def _session_rows(database: Database, key: str, *, raw: bool) -> list[dict[str, Any]]:
    t = database.t.Session
    if raw:
        rows: list[dict[str, Any]] = await t.raw(select_where(t, ("key", "data", "expires_at"), "key"), key).run()
        return rows
    return await fetch(t, select_where(t, ("key", "data", "expires_at"), "key"), key)


async def test_fetch_returns_the_rows_piccolo_returns(database: Database) -> None:
    t = database.t.Session
    inserted = await fetch(t, insert_one(t, ("key", "data", "expires_at"), returning="id"), "k1", "first", EXPIRES)
    assert [list(row) for row in inserted] == [["id"]] and isinstance(inserted[0]["id"], int)
    by_fetch = await _session_rows(database, "k1", raw=False)
    assert by_fetch == await _session_rows(database, "k1", raw=True)
    assert by_fetch == [{"key": "k1", "data": "first", "expires_at": EXPIRES}]  # types converted back alike
    assert type(by_fetch[0]) is dict  # not the driver's record type
    assert await _session_rows(database, "absent", raw=False) == []
    updated = await fetch(t, update_where(t, ("data", "expires_at"), "key", "id"), "second", EXPIRES, "k1")
    assert updated == inserted
    assert (await _session_rows(database, "k1", raw=True))[0]["data"] == "second"


class _Abandoned(Exception):
    pass


async def test_fetch_joins_the_transaction_under_way(database: Database) -> None:
    t = database.t.Session
    with pytest.raises(_Abandoned):
        async with database.transaction():
            await fetch(t, insert_one(t, ("key", "data", "expires_at")), "inside", "x", EXPIRES)
            # read inside the transaction (on SQLite a point read, which outside one would be read on
            # another connection): it sees the row not yet committed
            assert (await _session_rows(database, "inside", raw=False))[0]["data"] == "x"
            raise _Abandoned
    assert await _session_rows(database, "inside", raw=False) == []  # rolled back with the transaction
    async with database.transaction():
        await fetch(t, insert_one(t, ("key", "data", "expires_at")), "kept", "y", EXPIRES)
    assert (await _session_rows(database, "kept", raw=True))[0]["data"] == "y"


async def test_a_constraint_broken_through_fetch_raises_the_driver_s_integrity_error(database: Database) -> None:
    t = database.t.Session
    insert = insert_one(t, ("key", "data", "expires_at"))
    await fetch(t, insert, "same", "first", EXPIRES)
    with pytest.raises(INTEGRITY_ERRORS):
        await fetch(t, insert, "same", "second", EXPIRES)
    assert (await _session_rows(database, "same", raw=True))[0]["data"] == "first"


def test_an_engine_with_no_known_placeholder_style_is_refused() -> None:
    with pytest.raises(ValueError):
        compiled("SELECT {}", "cockroach")
