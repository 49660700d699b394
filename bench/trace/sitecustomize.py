"""Loaded by every Python process started with bench/trace on PYTHONPATH (bench/login_trace.py):
when GUICHET_BENCH_TRACE names a file, every statement sent to SQLite, PostgreSQL or Redis is
appended to it, one line each, with the process id. Drivers are wrapped at their lowest async
entry points, so nothing guichet runs escapes the count. Statement text only: never parameters.
"""

from __future__ import annotations

import functools
import os
from typing import Any

TRACE = os.environ.get("GUICHET_BENCH_TRACE")


def _write(kind: str, text: str) -> None:
    line = " ".join(str(text).split())
    with open(TRACE, "a", encoding="utf-8") as out:  # type: ignore[arg-type]
        out.write(f"{os.getpid()}\t{kind}\t{line}\n")


def _wrap(owner: Any, name: str, kind: str, text_of: Any) -> None:
    original = getattr(owner, name, None)
    if original is None:
        return

    @functools.wraps(original)
    async def traced(*args: Any, **kwargs: Any) -> Any:
        _write(kind, text_of(*args, **kwargs))
        return await original(*args, **kwargs)

    setattr(owner, name, traced)


def _install() -> None:
    try:
        import aiosqlite

        for name in ("execute", "execute_fetchall", "executemany", "executescript"):
            _wrap(aiosqlite.Connection, name, "sqlite", lambda self, sql, *a, **k: sql)
    except ImportError:
        pass
    try:
        # point reads run on the event loop's thread, on a sqlite3 connection of their own
        from guichet.core.sqlite_pool import PooledSQLiteEngine

        read_inline = PooledSQLiteEngine._read_inline

        @functools.wraps(read_inline)
        def traced_read(self: Any, query: str, args: Any) -> Any:
            _write("sqlite", query)
            return read_inline(self, query, args)

        PooledSQLiteEngine._read_inline = traced_read  # type: ignore[method-assign]
    except ImportError:
        pass
    try:
        from asyncpg.connection import Connection

        for name in ("execute", "executemany", "fetch", "fetchrow", "fetchval"):
            _wrap(Connection, name, "postgres", lambda self, sql, *a, **k: sql)
    except ImportError:
        pass
    try:
        from redis.asyncio.client import Pipeline, Redis

        _wrap(Redis, "execute_command", "redis", lambda self, *a, **k: a[0])
        _wrap(
            Pipeline,
            "execute",
            "redis",
            lambda self, *a, **k: "MULTI/EXEC " + " ".join(str(c[0][0]) for c in self.command_stack),
        )
    except ImportError:
        pass


if TRACE:
    _install()
