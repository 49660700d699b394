"""SQLite's pooled engine (core/sqlite_pool.py): point reads and point writes on the event loop's
thread, never a wait there, and the same rows and effects as the pooled way. SQLite only, whatever GUICHET_TEST_POSTGRES says:
PostgreSQL has no such path."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from guichet.core.database import Database
from guichet.core.sqlite_pool import CHECKPOINT_EVERY, PooledSQLiteEngine
from guichet.core.statements import POINT_READ, POINT_WRITE, fetch, insert_one, select_where, update_where

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


class LoopTurns:
    """How often the event loop came round (every 10 ms) while a block ran, and for how long it ran:
    a loop waiting for a lock would not come round at all."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0


@contextlib.asynccontextmanager
async def loop_turns() -> AsyncIterator[LoopTurns]:
    turns = LoopTurns()

    async def turn() -> None:
        while True:
            await asyncio.sleep(0.01)
            turns.count += 1

    ticker = asyncio.create_task(turn())
    started = time.monotonic()
    try:
        yield turns
    finally:
        ticker.cancel()
        turns.seconds = time.monotonic() - started


def lock_held_by_another_process(path: Path, *, begin: str = "BEGIN IMMEDIATE") -> sqlite3.Connection:
    """Another connection holding SQLite's lock; it commits after 0.3 s of the event loop's time."""
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    other.execute(begin)
    asyncio.get_running_loop().call_later(0.3, other.execute, "COMMIT")
    return other


async def test_a_point_read_through_fetch_stays_on_the_loop_s_thread(sqlite_db: Database) -> None:
    """``fetch`` (core/statements.py) reaches the engine the same way: the read and the point write
    inline, a write that is not marked as a point write pooled."""
    assert isinstance(sqlite_db.engine, PooledSQLiteEngine)
    t = sqlite_db.t.Session
    hops = Hops(sqlite_db.engine)
    await fetch(t, insert_one(t, ("key", "data", "expires_at")), "k", "x", EXPIRES)
    assert await fetch(t, select_where(t, ("data",), "key"), "k") == [{"data": "x"}]
    assert await fetch(t, update_where(t, ("data", "expires_at"), "key", "id"), "y", EXPIRES, "k") == [{"id": 1}]
    assert hops.count == 0
    await fetch(t, 'UPDATE "guichet_session" SET "data" = {} WHERE "key" = {}', "z", "k")
    assert hops.count == 1
    assert await fetch(t, select_where(t, ("data",), "key"), "k") == [{"data": "z"}]


async def test_a_point_read_is_answered_on_the_loop_s_thread_with_what_was_just_committed(
    sqlite_db: Database,
) -> None:
    assert isinstance(sqlite_db.engine, PooledSQLiteEngine)
    hops = Hops(sqlite_db.engine)
    await add_session(sqlite_db, "k1", "first")  # a point write: on the loop's thread too
    assert await read_session(sqlite_db, "k1") == [{"data": "first", "expires_at": EXPIRES}]  # converters too
    assert await read_session(sqlite_db, "absent") == []
    assert hops.count == 0
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
    other = sqlite3.connect(tmp_path / "pool.sqlite", isolation_level=None)
    assert other.execute("PRAGMA journal_mode=DELETE").fetchone() == ("delete",)
    other.close()
    other = lock_held_by_another_process(tmp_path / "pool.sqlite", begin="BEGIN EXCLUSIVE")  # readers locked out
    try:
        async with loop_turns() as turns:
            rows = await asyncio.wait_for(read_session(sqlite_db, "k1"), timeout=8)
    finally:
        other.close()
    assert rows[0]["data"] == "first"
    assert turns.seconds >= 0.25  # it did wait for the lock...
    assert turns.count >= 10  # ...and the event loop went on meanwhile


async def test_a_write_marked_as_a_point_read_cannot_write_on_the_loop_s_thread(sqlite_db: Database) -> None:
    assert isinstance(sqlite_db.engine, PooledSQLiteEngine)
    await add_session(sqlite_db, "k1", "first")
    hops = Hops(sqlite_db.engine)
    t = sqlite_db.t.Session
    await t.raw(f'{POINT_READ}UPDATE "guichet_session" SET "data" = {{}} WHERE "key" = {{}}', "second", "k1").run()
    assert hops.count == 1  # refused by the read-only connection, done by a pooled one
    assert (await read_session(sqlite_db, "k1"))[0]["data"] == "second"


async def test_closing_closes_the_reader_and_the_writer_and_they_open_again_when_used(
    sqlite_db: Database, tmp_path: Path
) -> None:
    assert isinstance(sqlite_db.engine, PooledSQLiteEngine)
    await add_session(sqlite_db, "k1", "first")
    await read_session(sqlite_db, "k1")
    reader, writer = sqlite_db.engine._reader, sqlite_db.engine._writer
    assert reader is not None and writer is not None
    await sqlite_db.close()
    assert (sqlite_db.engine._reader, sqlite_db.engine._writer) == (None, None)
    for connection in (reader, writer):
        with pytest.raises(sqlite3.ProgrammingError):  # closed, not left open
            connection.execute("SELECT 1")
    assert (await read_session(sqlite_db, "k1"))[0]["data"] == "first"
    await add_session(sqlite_db, "k2", "second")
    assert sqlite_db.engine._writer is not None
    assert read_elsewhere(tmp_path / "pool.sqlite", "k2") == [("second",)]


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


# -- point writes -----------------------------------------------------------------------------------


def read_elsewhere(path: Path, key: str) -> list[tuple[Any, ...]]:
    """The session's data as another process would read it: only what was committed."""
    other = sqlite3.connect(path, timeout=5)
    try:
        return other.execute('SELECT "data" FROM "guichet_session" WHERE "key" = ?', (key,)).fetchall()
    finally:
        other.close()


async def test_a_point_write_is_committed_at_once_for_every_other_connection(
    sqlite_db: Database, tmp_path: Path
) -> None:
    assert isinstance(sqlite_db.engine, PooledSQLiteEngine)
    hops = Hops(sqlite_db.engine)
    await add_session(sqlite_db, "k1", "first")
    assert hops.count == 0
    assert sqlite_db.engine._writer is not None and not sqlite_db.engine._writer.in_transaction
    assert read_elsewhere(tmp_path / "pool.sqlite", "k1") == [("first",)]


async def test_a_point_write_never_makes_the_event_loop_wait_for_the_write_lock(
    sqlite_db: Database, tmp_path: Path
) -> None:
    """Another process holds the write lock: the write waits in a pooled connection's thread, while
    the event loop goes on (here: it is what ends the wait), and is made once."""
    assert isinstance(sqlite_db.engine, PooledSQLiteEngine)
    await add_session(sqlite_db, "k1", "first")
    other = lock_held_by_another_process(tmp_path / "pool.sqlite")
    other.execute("""UPDATE "guichet_session" SET "data" = "data" || '+other' WHERE "key" = 'k1'""")
    hops = Hops(sqlite_db.engine)
    t = sqlite_db.t.Session
    append = (
        f"""{POINT_WRITE}UPDATE "guichet_session" SET "data" = "data" || {{}} WHERE "key" = {{}} RETURNING "data" """
    )
    try:
        async with loop_turns() as turns:
            rows = await asyncio.wait_for(fetch(t, append, "+mine", "k1"), timeout=8)
    finally:
        other.close()
    assert rows == [{"data": "first+other+mine"}]  # after the other's commit, and once
    assert turns.seconds >= 0.25  # it did wait for the lock...
    assert turns.count >= 10  # ...and the event loop went on meanwhile
    assert hops.count == 1


async def test_parallel_point_writes_while_transactions_hold_the_lock_are_each_made_once(
    sqlite_db: Database, tmp_path: Path
) -> None:
    """Parallel requests: some writes run on the loop's thread, the ones refused for a transaction
    under way wait in the pool; none is lost, none is made twice."""
    assert isinstance(sqlite_db.engine, PooledSQLiteEngine)
    await add_session(sqlite_db, "k1", "")
    t = sqlite_db.t.Session
    append = f"""{POINT_WRITE}UPDATE "guichet_session" SET "data" = "data" || {{}} WHERE "key" = {{}}"""
    hops = Hops(sqlite_db.engine)

    async def transaction_holding_the_lock(number: int) -> None:
        async with sqlite_db.transaction():
            await fetch(t, append, "T", "k1")
            await asyncio.sleep(0.002 * (number % 3))

    async def point_write() -> None:
        await fetch(t, append, "p", "k1")

    tasks = [point_write() for _ in range(200)] + [transaction_holding_the_lock(n) for n in range(20)]
    await asyncio.gather(*tasks)
    data = read_elsewhere(tmp_path / "pool.sqlite", "k1")[0][0]
    assert (data.count("p"), data.count("T")) == (200, 20)
    assert 20 <= hops.count < 220  # the transactions, and the writes that met one, took the pool


async def test_a_point_write_in_a_transaction_is_rolled_back_with_it(sqlite_db: Database, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        async with sqlite_db.transaction():
            await add_session(sqlite_db, "k1", "first")
            assert (await read_session(sqlite_db, "k1"))[0]["data"] == "first"
            raise RuntimeError("the request failed")
    assert await read_session(sqlite_db, "k1") == []
    assert read_elsewhere(tmp_path / "pool.sqlite", "k1") == []


async def test_a_refused_point_write_raises_the_driver_s_error_and_changes_nothing(
    sqlite_db: Database, tmp_path: Path
) -> None:
    await add_session(sqlite_db, "k1", "first")
    with pytest.raises(sqlite3.IntegrityError):  # the session key is unique
        await add_session(sqlite_db, "k1", "second")
    assert read_elsewhere(tmp_path / "pool.sqlite", "k1") == [("first",)]
    await add_session(sqlite_db, "k2", "next")  # the connection is still usable
    assert read_elsewhere(tmp_path / "pool.sqlite", "k2") == [("next",)]


async def test_point_writes_leave_the_wal_short_enough_for_checkpoints(sqlite_db: Database, tmp_path: Path) -> None:
    """The loop's writer does not checkpoint (that syncs the disk); the pooled writes between do."""
    for number in range(CHECKPOINT_EVERY * 40):
        await add_session(sqlite_db, f"key-{number}", "x" * 200)
    wal_pages = (tmp_path / "pool.sqlite-wal").stat().st_size // 4096
    # ~3 pages a write: 7,700 pages without the checkpoints
    assert wal_pages < 1000 + 4 * CHECKPOINT_EVERY, wal_pages


async def test_out_of_wal_mode_point_writes_are_pooled(sqlite_db: Database, tmp_path: Path) -> None:
    """A writer outside WAL mode blocks every reader and syncs every commit: not on the loop's thread."""
    await sqlite_db.close()
    other = sqlite3.connect(tmp_path / "pool.sqlite", isolation_level=None)
    assert other.execute("PRAGMA journal_mode=DELETE").fetchone() == ("delete",)
    other.close()
    assert isinstance(sqlite_db.engine, PooledSQLiteEngine)
    hops = Hops(sqlite_db.engine)
    await add_session(sqlite_db, "k1", "first")
    await add_session(sqlite_db, "k2", "second")
    assert hops.count == 2
    assert sqlite_db.engine._writer is None
    assert read_elsewhere(tmp_path / "pool.sqlite", "k2") == [("second",)]


async def request_in_a_brief_transaction(
    db: Database, key: str, inside: asyncio.Event, *, pause: float, fails: bool = False
) -> None:
    """A request whose brief transaction writes ``key``, sets ``inside``, awaits ``pause`` seconds
    (the event loop serves other requests meanwhile), then fails or commits."""
    async with db.transaction(brief=True):
        await add_session(db, key, "in the transaction")
        inside.set()
        await asyncio.sleep(pause)
        if fails:
            raise RuntimeError("the request failed")


async def test_a_brief_transaction_runs_on_the_loop_s_thread_and_commits(sqlite_db: Database, tmp_path: Path) -> None:
    assert isinstance(sqlite_db.engine, PooledSQLiteEngine)
    hops = Hops(sqlite_db.engine)
    async with sqlite_db.transaction(brief=True):
        await add_session(sqlite_db, "k1", "first")
        await add_session(sqlite_db, "k2", "second")
        assert (await read_session(sqlite_db, "k1"))[0]["data"] == "first"  # its own write, inside
        assert read_elsewhere(tmp_path / "pool.sqlite", "k1") == []  # not committed yet
    assert hops.count == 0
    assert read_elsewhere(tmp_path / "pool.sqlite", "k2") == [("second",)]
    assert sqlite_db.engine._writer is not None and not sqlite_db.engine._writer.in_transaction


async def test_a_failed_brief_transaction_leaves_nothing_and_the_writer_free(
    sqlite_db: Database, tmp_path: Path
) -> None:
    assert isinstance(sqlite_db.engine, PooledSQLiteEngine)
    with pytest.raises(RuntimeError):
        async with sqlite_db.transaction(brief=True):
            await add_session(sqlite_db, "k1", "first")
            raise RuntimeError("the request failed")
    assert read_elsewhere(tmp_path / "pool.sqlite", "k1") == []
    hops = Hops(sqlite_db.engine)
    await add_session(sqlite_db, "k2", "second")  # on the loop's thread again, committed at once
    assert hops.count == 0
    assert read_elsewhere(tmp_path / "pool.sqlite", "k2") == [("second",)]


async def test_a_brief_transaction_whose_commit_fails_raises_and_leaves_nothing(
    sqlite_db: Database, tmp_path: Path
) -> None:
    """A deferred foreign key is checked at COMMIT: the error is the caller's, the writer is free."""
    other = sqlite3.connect(tmp_path / "pool.sqlite", isolation_level=None)
    other.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    other.execute(
        "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
    )
    other.close()
    assert isinstance(sqlite_db.engine, PooledSQLiteEngine)
    t = sqlite_db.t.Session
    with pytest.raises(sqlite3.IntegrityError):
        async with sqlite_db.transaction(brief=True):
            await add_session(sqlite_db, "k1", "first")
            await fetch(t, "INSERT INTO child (parent_id) VALUES ({})", 42)
    assert sqlite_db.engine._writer is not None and not sqlite_db.engine._writer.in_transaction
    assert read_elsewhere(tmp_path / "pool.sqlite", "k1") == []
    await add_session(sqlite_db, "k2", "second")
    assert read_elsewhere(tmp_path / "pool.sqlite", "k2") == [("second",)]


async def test_a_cancelled_brief_transaction_is_rolled_back(sqlite_db: Database, tmp_path: Path) -> None:
    """A request cancelled mid-way (the client went away): nothing of it stays, the writer is free."""
    assert isinstance(sqlite_db.engine, PooledSQLiteEngine)
    inside = asyncio.Event()
    task = asyncio.create_task(request_in_a_brief_transaction(sqlite_db, "k1", inside, pause=60))
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert read_elsewhere(tmp_path / "pool.sqlite", "k1") == []
    hops = Hops(sqlite_db.engine)
    async with sqlite_db.transaction(brief=True):
        await add_session(sqlite_db, "k2", "second")
    assert hops.count == 0
    assert read_elsewhere(tmp_path / "pool.sqlite", "k2") == [("second",)]


async def test_while_a_brief_transaction_is_open_other_writes_wait_in_the_pool_and_are_made_once(
    sqlite_db: Database, tmp_path: Path
) -> None:
    """Parallel requests: the writer is in one transaction at a time; a second brief transaction and
    the point writes met meanwhile take pooled connections, which wait for its COMMIT in their
    threads, never on the event loop's."""
    assert isinstance(sqlite_db.engine, PooledSQLiteEngine)
    await add_session(sqlite_db, "k1", "")
    t = sqlite_db.t.Session
    append = f"""{POINT_WRITE}UPDATE "guichet_session" SET "data" = "data" || {{}} WHERE "key" = {{}}"""
    first_open = asyncio.Event()
    hops = Hops(sqlite_db.engine)

    async def first() -> None:
        async with sqlite_db.transaction(brief=True):
            await fetch(t, append, "A", "k1")
            first_open.set()
            await asyncio.sleep(0.2)
            await fetch(t, append, "a", "k1")

    async def meanwhile() -> None:
        await first_open.wait()
        async with sqlite_db.transaction(brief=True):
            await fetch(t, append, "B", "k1")
        await fetch(t, append, "p", "k1")

    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(first(), meanwhile()), timeout=8)
    data = read_elsewhere(tmp_path / "pool.sqlite", "k1")[0][0]
    assert data == "AaBp"  # the second transaction after the first's COMMIT, not joined to it
    assert hops.count == 1  # the second transaction; the last write found the writer free again
    assert time.monotonic() - started < 5


async def test_a_brief_transaction_waits_for_another_process_s_lock_in_the_pool(
    sqlite_db: Database, tmp_path: Path
) -> None:
    assert isinstance(sqlite_db.engine, PooledSQLiteEngine)
    await add_session(sqlite_db, "k1", "first")
    other = lock_held_by_another_process(tmp_path / "pool.sqlite")
    hops = Hops(sqlite_db.engine)
    try:
        async with loop_turns() as turns:
            async with sqlite_db.transaction(brief=True):
                await add_session(sqlite_db, "k2", "second")
    finally:
        other.close()
    assert hops.count == 1 and turns.count >= 10 and turns.seconds >= 0.25
    assert read_elsewhere(tmp_path / "pool.sqlite", "k2") == [("second",)]


async def test_a_point_write_of_another_request_never_joins_a_brief_transaction_under_way(
    sqlite_db: Database, tmp_path: Path
) -> None:
    """The brief transaction awaits, another request writes meanwhile, then the transaction fails:
    the other's write stays (it went the pooled way), the transaction's does not."""
    assert isinstance(sqlite_db.engine, PooledSQLiteEngine)
    inside = asyncio.Event()
    failing_request = request_in_a_brief_transaction(sqlite_db, "mine", inside, pause=0.1, fails=True)

    async def other_request() -> None:
        await inside.wait()
        await add_session(sqlite_db, "other", "kept")

    hops = Hops(sqlite_db.engine)
    results = await asyncio.wait_for(
        asyncio.gather(failing_request, other_request(), return_exceptions=True), timeout=8
    )
    assert isinstance(results[0], RuntimeError) and results[1] is None
    assert read_elsewhere(tmp_path / "pool.sqlite", "other") == [("kept",)]
    assert read_elsewhere(tmp_path / "pool.sqlite", "mine") == []
    assert hops.count == 1  # the other request's write, the pooled way


class RollbackFails:
    """The loop's writer, whose ROLLBACK fails (a disk I/O error, say)."""

    def __init__(self, real: sqlite3.Connection) -> None:
        self.real = real

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "ROLLBACK":
            raise sqlite3.OperationalError("disk I/O error")
        return self.real.execute(sql, *args)

    @property
    def in_transaction(self) -> bool:
        return self.real.in_transaction

    def close(self) -> None:
        self.real.close()


async def test_a_writer_left_in_a_transaction_is_closed_not_reused(sqlite_db: Database, tmp_path: Path) -> None:
    """A ROLLBACK that failed would leave the writer holding the lock, and the next write joining
    what was never committed: the writer is closed and a new one opened."""
    assert isinstance(sqlite_db.engine, PooledSQLiteEngine)
    engine = sqlite_db.engine
    await add_session(sqlite_db, "k1", "first")
    real = engine._writer
    assert real is not None
    engine._writer = RollbackFails(real)  # type: ignore[assignment]
    with pytest.raises(sqlite3.OperationalError):
        async with sqlite_db.transaction(brief=True):
            await add_session(sqlite_db, "k2", "never committed")
            raise RuntimeError("the request failed")
    assert engine._writer is None
    with pytest.raises(sqlite3.ProgrammingError):  # closed, so its lock is released
        real.execute("SELECT 1")
    hops = Hops(engine)
    await add_session(sqlite_db, "k3", "third")  # a new writer, on the loop's thread
    assert hops.count == 0
    assert read_elsewhere(tmp_path / "pool.sqlite", "k3") == [("third",)]
    assert read_elsewhere(tmp_path / "pool.sqlite", "k2") == []


async def test_closed_from_another_thread_the_loop_s_connections_are_not_used_again(
    sqlite_db: Database, tmp_path: Path
) -> None:
    """A test client's app shuts down on its portal thread: the connections of the first thread's
    loop cannot be closed there, nor used by the next thread that takes the pool."""
    await add_session(sqlite_db, "k1", "first")
    assert (await read_session(sqlite_db, "k1"))[0]["data"] == "first"
    await asyncio.to_thread(asyncio.run, sqlite_db.close())
    assert isinstance(sqlite_db.engine, PooledSQLiteEngine)
    assert (sqlite_db.engine._reader, sqlite_db.engine._writer) == (None, None)

    async def in_a_third_thread() -> list[dict[str, Any]]:
        await add_session(sqlite_db, "k2", "second")
        rows = await read_session(sqlite_db, "k2")
        await sqlite_db.close()
        return rows

    rows = await asyncio.to_thread(asyncio.run, in_a_third_thread())
    assert rows[0]["data"] == "second"
    assert read_elsewhere(tmp_path / "pool.sqlite", "k2") == [("second",)]
