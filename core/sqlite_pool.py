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
from typing import Any

import aiosqlite
from piccolo.engine.sqlite import SQLiteEngine, SQLiteTransaction, TransactionType, dict_factory

from guichet.core.statements import POINT_READ

log = logging.getLogger("guichet.database")


class PooledSQLiteTransaction(SQLiteTransaction):
    """A transaction on a pooled connection, given back (or closed) at the end."""

    engine: "PooledSQLiteEngine"
    _pooled: bool = False

    async def __aenter__(self) -> SQLiteTransaction:
        if self._parent is not None:
            return self._parent
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

    async def close_pool(self) -> None:
        """Close the idle connections (the pool reopens lazily if used again)."""
        if self._reader is not None and self._pool_usable():
            reader, self._reader = self._reader, None
            reader.close()
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
        self, transaction_type: TransactionType = TransactionType.deferred, allow_nested: bool = True
    ) -> SQLiteTransaction:
        return PooledSQLiteTransaction(engine=self, transaction_type=transaction_type, allow_nested=allow_nested)
