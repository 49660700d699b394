"""One database per app: the piccolo engine, the tables bound to it, transactions and migrations."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import secrets
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import TransactionType
from piccolo.table import Table, create_db_tables

from guichet.core import tables
from guichet.core.config import CaisseConfig
from guichet.core.sqlite_pool import PooledSQLiteEngine

# readiness on SQLite: below this much free space on the database's file system the disk counts as
# full (a few commits' worth of WAL pages), before a request finds out by failing
SQLITE_MIN_FREE_BYTES = 256 * 1024
# closing the PostgreSQL pool: how long connections still held are waited for before being cut
POOL_CLOSE_SECONDS = 5.0


def _free_bytes(folder: Path) -> int:
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


log = logging.getLogger("guichet.database")

try:  # asyncpg is only needed for PostgreSQL
    from asyncpg.exceptions import IntegrityConstraintViolationError as _PgIntegrity

    INTEGRITY_ERRORS: tuple[type[BaseException], ...] = (sqlite3.IntegrityError, _PgIntegrity)
except ImportError:  # pragma: no cover
    INTEGRITY_ERRORS = (sqlite3.IntegrityError,)


class _PostgresEngine(PostgresEngine):
    """piccolo's engine connects once while it is constructed (a version check and the extensions):
    here the connection pool opens in ``Database.connect``, and a config can be checked or a
    ``Database`` built with the server down."""

    async def check_version(self) -> None:
        return None

    async def prep_database(self) -> None:
        return None  # no extension: guichet needs none, and a production role may not create one

    async def run_statement(self, query: str, args: list[Any]) -> list[dict[str, Any]]:
        """A compiled statement (core/statements.py), in the transaction under way if there is one."""
        transaction = self.current_transaction.get()
        if transaction is not None:
            rows = await transaction.connection.fetch(query, *args)
        elif self.pool:
            rows = await self._run_in_pool(query, args)
        else:
            rows = await self._run_in_new_connection(query, args)
        return [dict(row) for row in rows]


async def _keep_session(connection: Any) -> None:
    """What asyncpg's pool does to a connection given back, instead of its default reset query
    (``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``), a round trip after every
    statement piccolo runs outside a transaction: half of a login's round trips to PostgreSQL
    (bench/login_trace.py). guichet leaves nothing in a session for it to undo: no session-level SET
    (only SET LOCAL, which ends with its transaction), no advisory lock, no LISTEN, no cursor kept.
    asyncpg still rolls back a transaction left open and drops listeners before calling this."""


class _RolledBack(Exception):
    """Leaves a probe's transaction without committing it."""


class Tables:
    """The core tables bound to one engine; attribute names are the table class names."""

    Account: type[tables.Account]
    Flow: type[tables.Flow]
    OneTimeCode: type[tables.OneTimeCode]
    OutboxMessage: type[tables.OutboxMessage]
    TrustedBrowser: type[tables.TrustedBrowser]
    AuditLog: type[tables.AuditLog]
    RateCounter: type[tables.RateCounter]
    Session: type[tables.Session]
    ThirdPartyRequest: type[tables.ThirdPartyRequest]
    OidcKey: type[tables.OidcKey]
    OidcGrant: type[tables.OidcGrant]
    OidcToken: type[tables.OidcToken]
    OidcClient: type[tables.OidcClient]
    OidcAssertion: type[tables.OidcAssertion]
    OidcSubject: type[tables.OidcSubject]
    OidcConsent: type[tables.OidcConsent]
    Credential: type[tables.Credential]
    SchemaVersion: type[tables.SchemaVersion]

    def __init__(self, engine: Engine[Any]) -> None:
        self.all: list[type[Table]] = []
        for base in tables.ALL_TABLES:
            bound = type(base.__name__, (base,), {}, tablename=base._meta.tablename, db=engine)
            setattr(self, base.__name__, bound)
            self.all.append(bound)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def _migration_1(db: "Database") -> None:
    """The first schema: every core table."""
    await create_db_tables(*db.t.all, if_not_exists=True)


async def _add_column(db: "Database", table: str, column: str, definition: str) -> None:
    """Add a column unless it is there: a database made by migration 1 after the column joined
    core/tables.py has it already."""
    if db.is_sqlite:
        rows = await db.t.SchemaVersion.raw(f"PRAGMA table_info({table})").run()
        if any(row["name"] == column for row in rows):
            return
        await db.engine.run_ddl(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
    else:
        await db.engine.run_ddl(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {definition}")


async def _migration_2(db: "Database") -> None:
    """The outbox: attempts whose outcome is unknown, and what each message was sent for."""
    await _add_column(db, "guichet_outbox", "unknown_outcomes", "INTEGER NOT NULL DEFAULT 0")
    await _add_column(db, "guichet_outbox", "sent_for", "VARCHAR(64) NOT NULL DEFAULT ''")
    await db.engine.run_ddl("CREATE INDEX IF NOT EXISTS guichet_outbox_sent_for ON guichet_outbox (sent_for)")


async def _migration_3(db: "Database") -> None:
    """Limits that hold under concurrency: a rate counter keeps the time of the hit before its last
    (core/ratelimit.py); a binding has at most one live code, so parallel resends issue one."""
    counters = db.t.RateCounter._meta.tablename
    codes = db.t.OneTimeCode._meta.tablename
    if db.is_sqlite:
        columns = {row["name"] for row in await db.t.RateCounter.raw(f"PRAGMA table_info({counters})").run()}
        if "prev_at_ms" not in columns:  # a database made by migration 1 before the column existed
            await db.engine.run_ddl(f"ALTER TABLE {counters} ADD COLUMN prev_at_ms INTEGER NOT NULL DEFAULT 0")
    else:
        await db.engine.run_ddl(f"ALTER TABLE {counters} ADD COLUMN IF NOT EXISTS prev_at_ms BIGINT NOT NULL DEFAULT 0")
    t = db.t.OneTimeCode
    live = await (
        t.select(t.id, t.purpose, t.binding).where(t.used_at.is_null() & t.superseded_at.is_null()).order_by(t.id).run()
    )
    newest: dict[tuple[str, str], int] = {}
    older: list[int] = []
    for row in live:  # before the invariant, parallel resends could leave several: the newest stays
        previous = newest.get((row["purpose"], row["binding"]))
        if previous is not None:
            older.append(previous)
        newest[(row["purpose"], row["binding"])] = row["id"]
    for start in range(0, len(older), 500):
        await t.update({t.superseded_at: _now()}).where(t.id.is_in(older[start : start + 500])).run()
    await db.engine.run_ddl(
        f"CREATE UNIQUE INDEX IF NOT EXISTS {codes}_one_live ON {codes} (purpose, binding) "
        "WHERE used_at IS NULL AND superseded_at IS NULL"
    )


async def _migration_4(db: "Database") -> None:
    """Third parties' requests carried through: the structure's postal address (where the approval's
    letter goes) and the account the approval created."""
    table = db.t.ThirdPartyRequest._meta.tablename
    await _add_column(db, table, "address", "TEXT NOT NULL DEFAULT ''")
    await _add_column(db, table, "account_id", "INTEGER NULL")


async def _migration_5(db: "Database") -> None:
    """The OpenID Connect provider: signing keys, grants, access tokens, consents; one signing key per
    algorithm at a time, even when two workers make the first one at once."""
    await create_db_tables(
        db.t.OidcKey,
        db.t.OidcGrant,
        db.t.OidcToken,
        db.t.OidcClient,
        db.t.OidcAssertion,
        db.t.OidcSubject,
        db.t.OidcConsent,
        if_not_exists=True,
    )
    keys = db.t.OidcKey._meta.tablename
    await db.engine.run_ddl(
        f"CREATE UNIQUE INDEX IF NOT EXISTS {keys}_one_active ON {keys} (alg) WHERE retired_at IS NULL"
    )
    subjects = db.t.OidcSubject._meta.tablename
    await db.engine.run_ddl(f"CREATE UNIQUE INDEX IF NOT EXISTS {subjects}_one ON {subjects} (account_id, sector)")


async def _migration_6(db: "Database") -> None:
    """Authenticators (passkeys, authenticator apps, recovery codes): one table for every plugin's; a
    passkey or a recovery code is found by its lookup, which no two credentials of a kind share."""
    await create_db_tables(db.t.Credential, if_not_exists=True)
    table = db.t.Credential._meta.tablename
    await db.engine.run_ddl(
        f"CREATE UNIQUE INDEX IF NOT EXISTS {table}_lookup ON {table} (kind, lookup) WHERE lookup <> ''"
    )


async def _migration_7(db: "Database") -> None:
    """The outbox worker's claim reads each kind of claimable message by its own index, in the
    order it claims them: what waits and is not due (a postal outage's letters, retries in their
    backoff) is never read (core/outbox_worker.py, ``_claim_sql``)."""
    table = db.t.OutboxMessage._meta.tablename
    for name, columns, where in (
        ("due", "next_attempt_at, id", "state = 'pending' AND channel <> 'postal'"),
        ("letters_due", "next_attempt_at, id", "state = 'pending' AND channel = 'postal'"),
        ("lease_expired", "lease_until", "state = 'sending'"),
    ):
        await db.engine.run_ddl(f"CREATE INDEX IF NOT EXISTS {table}_{name} ON {table} ({columns}) WHERE {where}")


# Each migration runs once, in order, inside `guichet db upgrade`; append, never edit.
MIGRATIONS: list[tuple[int, Callable[["Database"], Awaitable[None]]]] = [
    (1, _migration_1),
    (2, _migration_2),
    (3, _migration_3),
    (4, _migration_4),
    (5, _migration_5),
    (6, _migration_6),
    (7, _migration_7),
]


def sqlite_path(url: str, base: Path) -> Path:
    raw = url.removeprefix("sqlite:///")
    path = Path(raw)
    return path if path.is_absolute() else base / path


def redact_url(url: str) -> str:
    """A database URL fit for a log line: the password replaced."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


class Database:
    """The engine and the bound tables of one app; ``t`` holds the tables."""

    def __init__(
        self, url: str, *, base_dir: Path | None = None, password: str | None = None, pool_size: int = 10
    ) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite:///")
        self.pool_size = pool_size
        if self.is_sqlite:
            self.path = sqlite_path(url, base_dir or Path.cwd())
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # a few long-lived connections: piccolo's own engine opens one per query (core/sqlite_pool.py)
            self.engine: Engine[Any] = PooledSQLiteEngine(path=str(self.path), pool_size=min(pool_size, 4), timeout=10)
        else:
            dsn = url.replace("postgres://", "postgresql://", 1)
            config: dict[str, Any] = {"dsn": dsn}
            if password:
                config["password"] = password
            self.engine = _PostgresEngine(config=config, extensions=())
        self.t = Tables(self.engine)
        self._pool_started = False
        self.close_timeout = POOL_CLOSE_SECONDS

    @classmethod
    def from_config(cls, config: CaisseConfig) -> "Database":
        password = config.database.password.resolve() if config.database.password else None
        return cls(
            config.database.url,
            base_dir=Path(config.base_dir or "."),
            password=password,
            pool_size=config.database.pool_size,
        )

    async def connect(self) -> None:
        if self.is_sqlite:
            # WAL lets readers go on while one writer writes; the mode is stored in the file
            await self.engine.run_ddl("PRAGMA journal_mode=WAL")
        elif not self._pool_started:
            await self.engine.start_connection_pool(  # type: ignore[no-untyped-call, call-arg]
                min_size=1, max_size=self.pool_size, reset=_keep_session
            )
            self._pool_started = True

    async def close(self) -> None:
        if isinstance(self.engine, PooledSQLiteEngine):
            await self.engine.close_pool()
        if not self.is_sqlite and self._pool_started:
            pool = getattr(self.engine, "pool", None)
            if pool is None:
                await self.engine.close_connection_pool()  # type: ignore[no-untyped-call]
            else:
                # asyncpg's close waits for every connection to be given back, without a bound: a
                # connection left held (a task caught by a database restart) would hang the exit
                # of `guichet outbox work` or `guichet serve` past their stop timeout
                try:
                    await asyncio.wait_for(pool.close(), timeout=self.close_timeout)
                except TimeoutError:
                    log.warning(
                        "database pool not closed within %s s: its connections are terminated", self.close_timeout
                    )
                    pool.terminate()
                self.engine.pool = None  # type: ignore[attr-defined]
            self._pool_started = False

    @contextlib.asynccontextmanager
    async def transaction(self, *, brief: bool = False) -> AsyncIterator[None]:
        """A write transaction; on SQLite it takes the write lock at once, so it cannot deadlock later.

        ``brief``: a few point statements (core/statements.py) and nothing else awaited in it (no
        network, no thread). On SQLite such a transaction runs on the event loop's thread when it can
        (core/sqlite_pool.py), so it must not hold that thread long; elsewhere it changes nothing."""
        if self.is_sqlite:
            async with self.engine.transaction(transaction_type=TransactionType.immediate, brief=brief):  # type: ignore[call-arg]
                yield
        else:
            async with self.engine.transaction():
                yield

    async def schema_version(self) -> int:
        try:
            rows = await self.t.SchemaVersion.select(self.t.SchemaVersion.version).run()
        except Exception:
            return 0
        return max((row["version"] for row in rows), default=0)

    async def upgrade(self) -> list[int]:
        """Apply the migrations not applied yet; return their numbers."""
        await self.connect()
        current = await self.schema_version()
        applied = []
        for number, migration in MIGRATIONS:
            if number <= current:
                continue
            await migration(self)
            await self.t.SchemaVersion.insert(self.t.SchemaVersion(version=number, applied_at=_now())).run()
            applied.append(number)
            log.info("database migration %s applied", number)
        return applied

    async def server_time(self) -> dt.datetime | None:
        """The database server's clock (PostgreSQL); None on SQLite, which has no clock but its host's."""
        if self.is_sqlite:
            return None
        rows = await self.t.SchemaVersion.raw("SELECT clock_timestamp() AS now").run()
        value: dt.datetime = rows[0]["now"]
        return value.astimezone(dt.UTC)

    async def current_time(self) -> dt.datetime:
        """The deployment's time for a one-off command: the database's, or this host's on SQLite."""
        return await self.server_time() or _now()

    async def can_write(self) -> bool:
        """Whether the database takes a write now: a row bigger than a page, inserted then rolled back.

        A read is not enough: a full disk (or SQLite's max_page_count) still answers SELECT, and a
        PostgreSQL in recovery is read-only. Raises what the database raised when it does not.

        On SQLite a rolled-back write may never reach the disk (its pages stay in memory), so the
        file system of the database must also have room for the next commits: a disk with less
        than ``SQLITE_MIN_FREE_BYTES`` free is reported as full.
        """
        if self.is_sqlite:
            free = await asyncio.to_thread(_free_bytes, self.path.parent)
            if free < SQLITE_MIN_FREE_BYTES:
                raise sqlite3.OperationalError(f"database or disk is full ({free} bytes free)")
        t = self.t.Session
        try:
            async with self.transaction():
                await t.insert(
                    t(key=f"readiness-{secrets.token_hex(8)}", data=secrets.token_hex(4096), expires_at=_now())
                ).run()
                raise _RolledBack()
        except _RolledBack:
            return True

    async def ping(self) -> bool:
        try:
            await self.engine.run_ddl("SELECT 1")
            return True
        except Exception:
            return False
