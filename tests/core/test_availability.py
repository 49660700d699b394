"""Which failures are outages (answered 503) and which stay bugs (500), on real exceptions."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import pytest

from guichet.core.availability import is_store_failure
from tests.conftest import free_port


def raised(action: object) -> BaseException:
    try:
        action()  # type: ignore[operator]
    except BaseException as exc:  # noqa: BLE001 - the point is to look at it
        return exc
    raise AssertionError("nothing was raised")


def test_a_locked_sqlite_database_is_an_outage_a_missing_table_is_a_bug(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        locked = raised(lambda: other.execute("INSERT INTO t VALUES (1)"))
        assert isinstance(locked, sqlite3.OperationalError) and is_store_failure(locked)
        missing = raised(lambda: other.execute("SELECT * FROM nowhere"))
        assert isinstance(missing, sqlite3.OperationalError) and not is_store_failure(missing)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        other.close()
    duplicate = raised(
        lambda: sqlite3.connect(":memory:").executescript(
            "CREATE TABLE u (x UNIQUE); INSERT INTO u VALUES (1); INSERT INTO u VALUES (1);"
        )
    )
    assert isinstance(duplicate, sqlite3.IntegrityError) and not is_store_failure(duplicate)


async def test_a_redis_that_does_not_answer_is_an_outage() -> None:
    import redis.asyncio as redis

    client = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    try:
        with pytest.raises(Exception) as refused:
            await client.get("x")
        assert is_store_failure(refused.value)
    finally:
        await client.aclose()


def test_a_refused_connection_is_an_outage_even_wrapped_and_a_bug_is_not() -> None:
    refused = raised(lambda: socket.create_connection(("127.0.0.1", free_port()), timeout=1))
    assert isinstance(refused, ConnectionRefusedError) and is_store_failure(refused)
    try:
        try:
            raise refused
        except OSError as cause:
            raise RuntimeError("the pool gave up") from cause
    except RuntimeError as wrapped:
        assert is_store_failure(wrapped)
    assert not is_store_failure(ValueError("a bug")) and not is_store_failure(KeyError("x"))
