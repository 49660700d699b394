"""Is a store down? Which failures are outages (answered 503, not 500), and readiness.

An outage is a failure of a store the app needs that says nothing about the request: the
database server restarting or unreachable, SQLite's disk full or file locked, Redis down or
slow. Anything else (a bug, a constraint) stays a 500, so it is not hidden behind "try later".
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import sys
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from guichet.core.errors import CounterStoreError, StoreUnavailable

if TYPE_CHECKING:
    from guichet.core.services import Services

log = logging.getLogger("guichet.availability")

RETRY_AFTER_SECONDS = 5  # a PostgreSQL or Redis restart takes a few seconds
PROBE_TIMEOUT_SECONDS = 5.0

# SQLite result codes of an outage (the primary code: SQLITE_IOERR_WRITE is an SQLITE_IOERR)
_SQLITE_OUTAGES = (
    "SQLITE_FULL",
    "SQLITE_IOERR",
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_CANTOPEN",
    "SQLITE_READONLY",
    "SQLITE_NOMEM",
    "SQLITE_PROTOCOL",
)


def _outage_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [StoreUnavailable, CounterStoreError, ConnectionError, TimeoutError]
    try:
        from asyncpg import exceptions as pg

        types += [
            pg.PostgresConnectionError,
            pg.OperatorInterventionError,
            pg.InsufficientResourcesError,
            pg.ReadOnlySQLTransactionError,
            pg.TransactionRollbackError,
        ]
    except ImportError:  # pragma: no cover - asyncpg is only needed for PostgreSQL
        pass
    return tuple(types)


_OUTAGES = _outage_types()


def _redis_outage_types() -> tuple[type[BaseException], ...]:
    """Redis's own outage errors, once something imported the client: only the Redis sessions and
    counters do, so a worker on the database alone never loads it (about 19 MiB of memory)."""
    redis_errors = sys.modules.get("redis.exceptions")
    if redis_errors is None:  # no Redis client in this process: no Redis error can be raised
        return ()
    return (redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.ReadOnlyError)


def _is_outage(exc: BaseException) -> bool:
    if isinstance(exc, _OUTAGES) or isinstance(exc, _redis_outage_types()):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        name = getattr(exc, "sqlite_errorname", "") or ""
        if name:
            return name.startswith(_SQLITE_OUTAGES)
        text = str(exc).lower()
        return any(part in text for part in ("locked", "disk is full", "disk i/o", "unable to open", "readonly"))
    if type(exc).__name__ == "InterfaceError" and type(exc).__module__.startswith("asyncpg"):
        # asyncpg's own "connection is closed" / "pool is closing": the server went away
        return "clos" in str(exc)
    return False


def is_store_failure(exc: BaseException) -> bool:
    """An outage of a store, or an error caused by one (a few links of ``__cause__``/``__context__``)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 5:
        if _is_outage(current):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


async def readiness(services: "Services") -> dict[str, str]:
    """What each store the app needs says now: "ok" or "unavailable". Ready when all are "ok".

    The database must take a write (not only a read: a full disk still reads), and Redis must
    answer PING when sessions or rate-limit counters live there.
    """
    checks = {"database": services.database.can_write()}
    for name, store in (("redis_sessions", services.session_backend), ("redis_counters", services.counter_store)):
        client = getattr(store, "client", None)  # RedisSessions, RedisCounters: a redis.asyncio client
        if client is not None:
            checks[name] = client.ping()

    async def state(name: str, check: Awaitable[object]) -> str:
        try:
            ok = await asyncio.wait_for(check, timeout=PROBE_TIMEOUT_SECONDS)
        except Exception as exc:
            log.warning("readiness: %s unavailable (%s)", name, type(exc).__name__)
            ok = False
        return "ok" if ok else "unavailable"

    # together: a hung Redis (sessions and counters) costs the probe one timeout, not one per store
    states = await asyncio.gather(*(state(name, check) for name, check in checks.items()))
    return dict(zip(checks, states, strict=True))
