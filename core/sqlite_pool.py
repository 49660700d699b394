"""A piccolo SQLite engine that keeps a few connections open instead of one per query.

piccolo's ``SQLiteEngine`` opens a new aiosqlite connection (a new thread, a new file handle, the
schema parsed again) for every query outside a transaction, and runs ``PRAGMA foreign_keys`` plus
a cursor round trip per statement. Under load that costs more CPU than the queries themselves
(docs/benchmarks.md). This engine keeps up to ``pool_size`` connections, each opened once with
its pragmas, and runs a statement in one hop to the connection's thread (``execute_fetchall``).

Transactions take a connection from the same pool and give it back after COMMIT or ROLLBACK; a
connection whose state is in doubt (a failed BEGIN, COMMIT or ROLLBACK) is closed, not reused.

A point read (``POINT_READ``, core/statements.py: one row by an indexed column, outside a
transaction) runs on the event loop's thread, on a read-only connection of its own: SQLite answers
it in a few microseconds, the hop to a connection's thread and back costs ten times that in CPU
(two thread wake-ups). It never waits for a lock there (no busy timeout): in WAL mode a reader is
not blocked by the writer, and in the rare case it is (a database not in WAL, a checkpoint's
recovery), the read goes the usual way, through a pooled connection that may wait.

A point write (``POINT_WRITE``: a few rows found by an index, outside a transaction) runs there
too, on a connection of its own, for the same reason, and so does a brief transaction
(``transaction(brief=True)``: a few point statements, begun, run and committed on that connection
while the requests of other coroutines go on between them; their point writes go the pooled way
meanwhile, since that connection is in the transaction). It never waits for the write lock on the
event loop's thread: when another connection holds it (a transaction of this process, another
process), SQLite answers "busy" at once, nothing is written, and the statement goes the pooled way,
whose connection waits in its thread. That connection does not checkpoint the WAL (a checkpoint
writes the database file and syncs it): every ``CHECKPOINT_EVERY``-th point write goes the pooled
way, and a pooled commit checkpoints when the WAL has grown past SQLite's threshold. Out of WAL mode
a writer blocks the readers and syncs each commit, so there every write is pooled.

The pool belongs to the thread that first used it. Used from another thread (a test client's
portal thread, say), the engine falls back to piccolo's connection per query, which is always
safe. Connection threads are daemon threads: a Database that was never closed cannot keep the
process from exiting.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import aiosqlite
from piccolo.engine.sqlite import SQLiteEngine, SQLiteTransaction, TransactionType, dict_factory

from guichet.core.statements import POINT_READ, POINT_WRITE

log = logging.getLogger("guichet.database")

CHECKPOINT_EVERY = 64  # point writes; a few WAL pages each, so the WAL stays near SQLite's 1,000


class _LoopConnection:
    """The event loop thread's writer, with the awaitable methods of an aiosqlite connection that a
    transaction and its statements use; each runs at once, on the loop's thread."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    async def execute(self, sql: str, parameters: Iterable[Any] = ()) -> None:
        self.connection.execute(sql, tuple(parameters))

    async def execute_fetchall(self, sql: str, parameters: Iterable[Any] = ()) -> list[Any]:
        return self.connection.execute(sql, tuple(parameters)).fetchall()

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> None:
        self.connection.executemany(sql, parameters)


class PooledSQLiteTransaction(SQLiteTransaction):
    """A transaction on a pooled connection, given back (or closed) at the end; a brief one on the
    event loop thread's writer when it is free."""

    engine: "PooledSQLiteEngine"
    _pooled: bool = False
    _on_loop: bool = False
    brief: bool = False

    async def __aenter__(self) -> SQLiteTransaction:
        if self._parent is not None:
            return self._parent
        writer = self.engine._begin_on_loop() if self.brief else None
        if writer is not None:
            self.connection, self._on_loop = _LoopConnection(writer), True
            self.context = self.engine.current_transaction.set(self)
            return self
        self.connection, self._pooled = await self.engine._acquire()
        try:
            await self.begin()  # type: ignore[no-untyped-call]
        except BaseException:
            # a BEGIN IMMEDIATE that timed out on the write lock: the connection is not left behind
            await self.engine._release(self.connection, self._pooled, discard=True)
            raise
        self.context = self.engine.current_transaction.set(self)
        return self

    async def __aexit__(self, exception_type: Any, exception: Any, traceback: Any) -> bool:
        if self._parent:
            return exception is None
        if self._on_loop:
            return self._end_on_loop(exception)
        discard = False
        try:
            if exception:
                if not self._rolled_back:
                    await self.rollback()  # type: ignore[no-untyped-call]
            elif not self._committed and not self._rolled_back:
                await self.commit()  # type: ignore[no-untyped-call]
        except BaseException:
            discard = True
            with contextlib.suppress(Exception):
                await self.connection.execute("ROLLBACK")
            raise
        finally:
            self.engine.current_transaction.reset(self.context)
            await self.engine._release(self.connection, self._pooled, discard=discard)
        return exception is None

    def _end_on_loop(self, exception: BaseException | None) -> bool:
        writer = self.connection.connection
        try:
            if exception is None and not self._committed and not self._rolled_back:
                writer.execute("COMMIT")
                self._committed = True
            elif writer.in_transaction:  # an error, or a COMMIT that failed: nothing of it stays
                writer.execute("ROLLBACK")
                self._rolled_back = True
        except BaseException:
            with contextlib.suppress(Exception):
                if writer.in_transaction:
                    writer.execute("ROLLBACK")
            raise
        finally:
            self.engine._writer_in_transaction = False
            self.engine._discard_writer_in_doubt()
            self.engine.current_transaction.reset(self.context)
        return exception is None


class PooledSQLiteEngine(SQLiteEngine):
    """``SQLiteEngine`` with up to ``pool_size`` long-lived connections."""

    def __init__(self, path: str, *, pool_size: int = 4, **connection_kwargs: Any) -> None:
        super().__init__(path=path, **connection_kwargs)
        self.pool_size = max(1, pool_size)
        self._idle: list[aiosqlite.Connection] = []
        self._open = 0
        self._waiters: collections.deque[asyncio.Future[aiosqlite.Connection]] = collections.deque()
        self._owner: int | None = None  # the thread whose event loops may use the pool
        self._reader: sqlite3.Connection | None = None  # point reads, on the owner's thread
        self._writer: sqlite3.Connection | None = None  # point writes, on the owner's thread
        self._writer_refused = False  # the database is not in WAL mode: point writes are pooled
        self._inline_writes = 0  # since the last point write sent the pooled way
        self._writer_in_transaction = False  # a brief transaction is under way on the writer
        self.writes_on_loop = 0  # point writes and brief transactions run on the loop's thread
        self.writes_refused = 0  # of those tried there, the ones SQLite refused for a lock

    # -- the pool -----------------------------------------------------------------------------------

    def _pool_usable(self) -> bool:
        thread = threading.get_ident()
        if self._owner is None:
            self._owner = thread
        return self._owner == thread

    async def _connect(self) -> aiosqlite.Connection:
        connection = aiosqlite.connect(**self.connection_kwargs)
        thread = getattr(connection, "_thread", None)
        if thread is not None:
            thread.daemon = True
        await connection
        connection.row_factory = dict_factory  # type: ignore[assignment]
        await connection.execute("PRAGMA foreign_keys = 1")
        # WAL + NORMAL: no fsync per commit; an application crash loses nothing, a power cut may roll
        # back the last commits (never corrupts). Production runs PostgreSQL (docs/deploy.md).
        await connection.execute("PRAGMA synchronous = NORMAL")
        return connection

    async def _acquire(self) -> tuple[aiosqlite.Connection, bool]:
        """A connection and whether it is pooled (else it is closed after use)."""
        if not self._pool_usable():
            return await self._connect(), False
        if self._idle:
            return self._idle.pop(), True
        if self._open < self.pool_size:
            self._open += 1
            try:
                return await self._connect(), True
            except BaseException:
                self._open -= 1
                raise
        waiter: asyncio.Future[aiosqlite.Connection] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter, True
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                await self._release(waiter.result(), True)
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    async def _release(self, connection: aiosqlite.Connection, pooled: bool, *, discard: bool = False) -> None:
        if not pooled or discard:
            with contextlib.suppress(Exception):
                await connection.close()
            if pooled:
                self._open -= 1
                await self._wake_one_by_opening()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self._idle.append(connection)

    async def _wake_one_by_opening(self) -> None:
        """A slot was freed by a closed connection: open a new one for the first waiter, if any."""
        while self._waiters and self._open < self.pool_size:
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            self._open += 1
            try:
                waiter.set_result(await self._connect())
            except BaseException as exc:
                self._open -= 1
                if not waiter.done():
                    waiter.set_exception(exc)

    def _read_inline(self, query: str, args: list[Any]) -> list[dict[str, Any]] | None:
        """The rows of a point read, read on this thread; None when SQLite would have to wait."""
        try:
            reader = self._reader
            if reader is None:
                # timeout=0: never a busy wait on the event loop's thread; query_only: a statement
                # marked as a read by mistake cannot write here, it goes the pooled way
                reader = sqlite3.connect(**{**self.connection_kwargs, "timeout": 0})  # the same type converters
                reader.row_factory = dict_factory
                reader.execute("PRAGMA query_only = 1")
                self._reader = reader
            return reader.execute(query, args).fetchall()
        except sqlite3.OperationalError:  # locked, busy or not openable: the pooled way waits, or raises what is wrong
            return None

    def _free_writer(self) -> sqlite3.Connection | None:
        """The loop's writer, when this write may use it (else it goes the pooled way)."""
        if self._writer_refused or self._writer_in_transaction:
            return None  # in a brief transaction under way, a write of another request would join it
        if self._inline_writes >= CHECKPOINT_EVERY:
            self._inline_writes = 0
            return None  # this one through the pool, whose commit checkpoints a long WAL
        return self._writer or self._open_writer()

    def _write_inline(self, query: str, args: list[Any]) -> list[dict[str, Any]] | None:
        """The rows of a point write, run on this thread; None when it must go the pooled way."""
        try:
            writer = self._free_writer()
            if writer is None:
                return None
            rows = writer.execute(query, args).fetchall()
        except sqlite3.OperationalError:
            # busy (another connection writes), locked or not openable: SQLite has rolled the
            # statement back, so the pooled way runs it again and waits, or raises what is wrong
            self.writes_refused += 1
            return None
        self._inline_writes += 1
        self.writes_on_loop += 1
        return rows

    def _begin_on_loop(self) -> sqlite3.Connection | None:
        """The loop's writer in a transaction that holds the write lock; None when it must be pooled."""
        if not self._pool_usable():
            return None
        try:
            writer = self._free_writer()
            if writer is None:
                return None
            writer.execute("BEGIN IMMEDIATE")  # the lock at once: no statement of it can be refused later
        except sqlite3.OperationalError:
            self.writes_refused += 1
            return None
        self._writer_in_transaction = True
        self._inline_writes += 1
        self.writes_on_loop += 1
        return writer

    def _discard_writer_in_doubt(self) -> None:
        """A writer still in a transaction after its end (a ROLLBACK that failed) is closed, which
        releases the lock, and not reused: a later write would join what was never committed."""
        writer = self._writer
        try:
            in_doubt = writer is not None and writer.in_transaction
        except sqlite3.Error:
            in_doubt = True
        if in_doubt and writer is not None:
            self._writer = None
            with contextlib.suppress(Exception):
                writer.close()

    def _open_writer(self) -> sqlite3.Connection | None:
        writer: sqlite3.Connection = sqlite3.connect(**{**self.connection_kwargs, "timeout": 0})  # same converters
        try:
            if writer.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                self._writer_refused = True
                writer.close()
                return None
            writer.row_factory = dict_factory
            writer.execute("PRAGMA foreign_keys = 1")
            writer.execute("PRAGMA synchronous = NORMAL")
            writer.execute("PRAGMA wal_autocheckpoint = 0")
        except BaseException:
            writer.close()
            raise
        self._writer = writer
        return writer

    async def close_pool(self) -> None:
        """Close the idle connections (the pool reopens lazily if used again)."""
        if self.writes_on_loop or self.writes_refused:
            log.info(
                "SQLite writes on the event loop's thread: %s; refused there (another's lock, mostly) "
                "and sent the pooled way: %s",
                self.writes_on_loop,
                self.writes_refused,
            )
            self.writes_on_loop = self.writes_refused = 0
        owner = self._pool_usable()
        for name in ("_reader", "_writer"):
            inline: sqlite3.Connection | None = getattr(self, name)
            if inline is not None:
                setattr(self, name, None)
                if owner:  # another thread may not close it: dropped, it is closed when collected
                    inline.close()
        self._writer_refused = False
        idle, self._idle = self._idle, []
        for connection in idle:
            self._open -= 1
            with contextlib.suppress(Exception):
                await connection.close()
        if self._open == 0:
            self._owner = None

    # -- piccolo's entry points -------------------------------------------------------------------

    async def _run_in_new_connection(
        self, query: str, args: list[Any] | None = None, query_type: str = "generic", table: Any = None
    ) -> Any:
        if query_type == "insert" and self.get_version_sync() < 3.35:  # pragma: no cover - old SQLite
            return await super()._run_in_new_connection(query, args, query_type, table)
        if query.startswith(POINT_READ) and self._pool_usable():
            rows = self._read_inline(query, args or [])
            if rows is not None:
                return rows
        elif query.startswith(POINT_WRITE) and self._pool_usable():
            rows = self._write_inline(query, args or [])
            if rows is not None:
                return rows
        connection, pooled = await self._acquire()
        discard = False
        try:
            return list(await connection.execute_fetchall(query, args or []))
        except BaseException as exc:
            # a statement error leaves the connection usable; anything else (cancelled mid-way,
            # the thread gone) and it is closed
            discard = not isinstance(exc, aiosqlite.Error)
            raise
        finally:
            await self._release(connection, pooled, discard=discard)

    async def _run_in_existing_connection(
        self, connection: Any, query: str, args: list[Any] | None = None, query_type: str = "generic", table: Any = None
    ) -> Any:
        if query_type == "insert" and self.get_version_sync() < 3.35:  # pragma: no cover - old SQLite
            return await super()._run_in_existing_connection(connection, query, args, query_type, table)
        return list(await connection.execute_fetchall(query, args or []))

    async def run_statement(self, query: str, args: list[Any]) -> list[dict[str, Any]]:
        """A compiled statement (core/statements.py), in the transaction under way if there is one."""
        transaction = self.current_transaction.get()
        if transaction is not None:
            return await self._run_in_existing_connection(transaction.connection, query, args)  # type: ignore[no-any-return]
        return await self._run_in_new_connection(query, args)  # type: ignore[no-any-return]

    def transaction(
        self,
        transaction_type: TransactionType = TransactionType.deferred,
        allow_nested: bool = True,
        *,
        brief: bool = False,
    ) -> SQLiteTransaction:
        """``brief``: a few point statements and nothing slow awaited between them; it may run on the
        event loop's thread (always as BEGIN IMMEDIATE there)."""
        transaction = PooledSQLiteTransaction(engine=self, transaction_type=transaction_type, allow_nested=allow_nested)
        transaction.brief = brief
        return transaction
