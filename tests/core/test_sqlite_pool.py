"""SQLite's pooled engine (core/sqlite_pool.py): point reads on the event loop's thread, never a
wait there, and the same rows as the pooled way. SQLite only, whatever GUICHET_TEST_POSTGRES says:
PostgreSQL has no such path."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from guichet.core.database import Database
from guichet.core.sqlite_pool import PooledSQLiteEngine
from guichet.core.statements import POINT_READ, fetch, insert_one, select_where, update_where

pytestmark = pytest.mark.asyncio

EXPIRES = dt.datetime(2026, 3, 15, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'pool.sqlite'}")
    await db.connect()
    await db.upgrade()
    try:
        yield db
    finally:
        await db.close()


class Hops:
    """Statements that took a pooled connection (a hop to its thread)."""

    def __init__(self, engine: PooledSQLiteEngine) -> None:
        self.count = 0
        acquire = engine._acquire

        async def counted() -> Any:
            self.count += 1
            return await acquire()

        engine._acquire = counted  # type: ignore[method-assign]


async def add_session(db: Database, key: str, data: str) -> None:
    t = db.t.Session
    await t.raw(insert_one(t, ("key", "data", "expires_at")), key, data, EXPIRES).run()


async def read_session(db: Database, key: str) -> list[dict[str, Any]]:
    t = db.t.Session
    rows: list[dict[str, Any]] = await t.raw(select_where(t, ("data", "expires_at"), "key"), key).run()
    return rows


async def test_a_point_read_through_fetch_stays_on_the_loop_s_thread(sqlite_db: Database) -> None:
    """``fetch`` (core/statements.py) reaches the engine the same way: the read inline, the write pooled."""
    assert isinstance(sqlite_db.engine, PooledSQLiteEngine)
    t = sqlite_db.t.Session
    await fetch(t, insert_one(t, ("key", "data", "expires_at")), "k", "x", EXPIRES)
    hops = Hops(sqlite_db.engine)
    assert await fetch(t, select_where(t, ("data",), "key"), "k") == [{"data": "x"}]
    assert hops.count == 0
    await fetch(t, update_where(t, ("data", "expires_at"), "key", "id"), "y", EXPIRES, "k")
    assert hops.count == 1


async def test_a_point_read_is_answered_on_the_loop_s_thread_with_what_was_just_committed(
    sqlite_db: Database,
) -> None:
    assert isinstance(sqlite_db.engine, PooledSQLiteEngine)
    hops = Hops(sqlite_db.engine)
    await add_session(sqlite_db, "k1", "first")
    assert hops.count == 1  # a write goes through the pool
    assert await read_session(sqlite_db, "k1") == [{"data": "first", "expires_at": EXPIRES}]  # converters too
    assert await read_session(sqlite_db, "absent") == []
    assert hops.count == 1  # the reads did not hop
    async with sqlite_db.transaction():  # committed by a pooled connection, seen at once by the reader
        await (
            sqlite_db.t.Session.update({sqlite_db.t.Session.data: "second"})
            .where(sqlite_db.t.Session.key == "k1")
            .run()
        )
    assert (await read_session(sqlite_db, "k1"))[0]["data"] == "second"


async def test_inside_a_transaction_a_point_read_sees_the_transaction_s_own_writes(sqlite_db: Database) -> None:
    await add_session(sqlite_db, "k1", "first")
    async with sqlite_db.transaction():
        await (
            sqlite_db.t.Session.update({sqlite_db.t.Session.data: "uncommitted"})
            .where(sqlite_db.t.Session.key == "k1")
            .run()
        )
        assert (await read_session(sqlite_db, "k1"))[0]["data"] == "uncommitted"


async def test_a_point_read_never_makes_the_event_loop_wait_for_a_lock(sqlite_db: Database, tmp_path: Path) -> None:
    """Out of WAL mode a reader waits for a writer: that wait happens in a pooled connection's
    thread, while the event loop goes on (here: it is what ends the wait)."""
    await add_session(sqlite_db, "k1", "first")
    await sqlite_db.close()
    other = sqlite3.connect(tmp_path / "pool.sqlite", timeout=0, isolation_level=None)
    assert other.execute("PRAGMA journal_mode=DELETE").fetchone() == ("delete",)
    other.execute("BEGIN EXCLUSIVE")  # another process writing: readers are locked out
    loop = asyncio.get_running_loop()
    loop.call_later(0.3, other.execute, "COMMIT")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    try:
        rows = await asyncio.wait_for(read_session(sqlite_db, "k1"), timeout=8)
    finally:
        ticker.cancel()
        other.close()
    assert rows[0]["data"] == "first"
    assert time.monotonic() - started >= 0.25  # it did wait for the lock...
    assert ticks >= 10  # ...and the event loop went on meanwhile


async def test_a_write_marked_as_a_point_read_cannot_write_on_the_loop_s_thread(sqlite_db: Database) -> None:
    assert isinstance(sqlite_db.engine, PooledSQLiteEngine)
    await add_session(sqlite_db, "k1", "first")
    hops = Hops(sqlite_db.engine)
    t = sqlite_db.t.Session
    await t.raw(f'{POINT_READ}UPDATE "guichet_session" SET "data" = {{}} WHERE "key" = {{}}', "second", "k1").run()
    assert hops.count == 1  # refused by the read-only connection, done by a pooled one
    assert (await read_session(sqlite_db, "k1"))[0]["data"] == "second"


async def test_closing_closes_the_reader_and_a_point_read_after_opens_it_again(sqlite_db: Database) -> None:
    assert isinstance(sqlite_db.engine, PooledSQLiteEngine)
    await add_session(sqlite_db, "k1", "first")
    await read_session(sqlite_db, "k1")
    reader = sqlite_db.engine._reader
    assert reader is not None
    await sqlite_db.close()
    assert sqlite_db.engine._reader is None
    with pytest.raises(sqlite3.ProgrammingError):  # closed, not left open
        reader.execute("SELECT 1")
    assert (await read_session(sqlite_db, "k1"))[0]["data"] == "first"


async def test_a_point_read_leaves_no_read_transaction_open_to_hold_the_wal_back(
    sqlite_db: Database, tmp_path: Path
) -> None:
    """A read left open would keep every later write in the WAL file (no checkpoint could pass it)."""
    await add_session(sqlite_db, "k1", "first")
    await add_session(sqlite_db, "k2", "second")
    assert (await read_session(sqlite_db, "k1"))[0]["data"] == "first"
    await add_session(sqlite_db, "k3", "third")
    other = sqlite3.connect(tmp_path / "pool.sqlite", timeout=0, isolation_level=None)
    try:
        busy, _, _ = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        other.close()
    assert busy == 0  # the whole WAL was written back: no reader held it
