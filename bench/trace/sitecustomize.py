"""Loaded by every Python process started with bench/trace on PYTHONPATH (bench/login_trace.py):
when GUICHET_BENCH_TRACE names a file, every statement sent to SQLite, PostgreSQL or Redis is
appended to it, one line each, with the process id. Drivers are wrapped at their lowest entry
points (SQLite's connections themselves, asyncpg's and redis's async calls), so nothing guichet
runs escapes the count. Statement text only: never parameters.
"""

from __future__ import annotations

import functools
import os
import sqlite3
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


class _TracedSQLite(sqlite3.Connection):
    """Every statement of every SQLite connection, whoever runs it: aiosqlite's threads (piccolo,
    the pool's transactions) and the event loop's own reader and writer (point reads and writes,
    brief transactions) all call these."""

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        _write("sqlite", sql)
        return super().execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        _write("sqlite", sql)
        return super().executemany(sql, *args)

    def executescript(self, sql: str) -> sqlite3.Cursor:  # type: ignore[override]
        _write("sqlite", sql)
        return super().executescript(sql)


def _install() -> None:
    connect = sqlite3.connect

    @functools.wraps(connect)
    def traced_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        kwargs.setdefault("factory", _TracedSQLite)
        return connect(*args, **kwargs)

    sqlite3.connect = traced_connect  # looked up at call time by aiosqlite and guichet's pool
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
