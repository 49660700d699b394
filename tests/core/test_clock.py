"""DatabaseClock: the database's time, read as this host's clock plus a measured offset."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable

import pytest

from guichet.core.clock import Clock, DatabaseClock, FrozenClock, start_synced
from guichet.core.config import CaisseConfig
from guichet.core.database import Database
from guichet.core.services import build_services
from tests.conftest import portal_config_text, redis_url

UTC = dt.UTC
RESOLUTION = dt.timedelta(milliseconds=1)  # two readings of the host's clock (datetime and perf_counter) agree to this


def ahead_by(delta: dt.timedelta) -> Callable[[], asyncio.Future[dt.datetime]]:
    """A database whose clock is ``delta`` away from this host's."""

    async def source() -> dt.datetime:
        await asyncio.sleep(0)
        return dt.datetime.now(UTC) + delta

    return source  # type: ignore[return-value]


@pytest.mark.parametrize("minutes", [11, -31])
async def test_now_is_the_databases_time_within_the_measured_error(
    minutes: int, caplog: pytest.LogCaptureFixture
) -> None:
    delta = dt.timedelta(minutes=minutes)
    clock = DatabaseClock(ahead_by(delta))
    assert clock.now() - dt.datetime.now(UTC) < dt.timedelta(seconds=1)  # before a sync: the host's clock
    with caplog.at_level(logging.WARNING, logger="guichet.clock"):
        assert await clock.sync() is True
    before = dt.datetime.now(UTC)
    read = clock.now()
    after = dt.datetime.now(UTC)
    assert before + delta - clock.error - RESOLUTION <= read <= after + delta + clock.error + RESOLUTION
    assert clock.error < dt.timedelta(seconds=1)
    direction = "behind" if minutes > 0 else "ahead of"
    assert f"this host's clock is {abs(minutes) * 60}.0 s {direction} the database's" in caplog.text


async def test_a_failed_reading_keeps_the_last_offset(caplog: pytest.LogCaptureFixture) -> None:
    readings: list[object] = [dt.timedelta(minutes=5), OSError("database away")]

    async def source() -> dt.datetime:
        reading = readings[0]
        if isinstance(reading, Exception):
            raise reading
        assert isinstance(reading, dt.timedelta)
        return dt.datetime.now(UTC) + reading

    clock = DatabaseClock(source, samples=1)
    await clock.sync()
    readings.pop(0)
    with pytest.raises(OSError):
        await clock.sync()
    assert abs(clock.offset - dt.timedelta(minutes=5)) <= clock.error + RESOLUTION
    stop = asyncio.Event()
    with caplog.at_level(logging.ERROR, logger="guichet.clock"):
        task = asyncio.create_task(clock.keep_synced(stop, every=0.01))
        while "cannot read the database's time (OSError)" not in caplog.text:
            await asyncio.sleep(0.01)
        stop.set()
        await task
    assert abs(clock.offset - dt.timedelta(minutes=5)) <= clock.error + RESOLUTION


async def test_the_databases_clock_on_this_host(database: Database) -> None:
    """PostgreSQL runs on this host here: the offset measured is nothing beyond the reading's error.
    SQLite has no clock but its host's: no offset at all."""
    clock = DatabaseClock(database.server_time)
    assert await clock.sync() is True
    if database.is_sqlite:
        assert await database.server_time() is None and clock.offset == dt.timedelta(0)
    else:
        assert abs(clock.offset) <= clock.error + RESOLUTION
    assert abs(await database.current_time() - clock.now()) < dt.timedelta(seconds=1)


def test_each_engine_gets_its_clock(make_config: Callable[..., CaisseConfig], db_url: str) -> None:
    services = build_services(make_config(database_url=db_url, base=portal_config_text()))
    if db_url.startswith("sqlite"):
        assert type(services.clock) is Clock
    else:
        assert isinstance(services.clock, DatabaseClock)
    frozen = FrozenClock()
    assert (
        build_services(make_config(database_url=db_url, base=portal_config_text()), clock=frozen).clock is frozen
    )  # tests still move time


async def test_start_synced_never_fails_a_start(caplog: pytest.LogCaptureFixture) -> None:
    async def away() -> dt.datetime:
        raise ConnectionRefusedError()

    clock = DatabaseClock(away)
    with caplog.at_level(logging.ERROR, logger="guichet.clock"):
        await start_synced(clock)
    assert not clock.synced and "cannot read the database's time at start" in caplog.text
    await start_synced(FrozenClock())  # any other clock: nothing to do


async def test_redis_sessions_live_for_their_idle_time_on_the_deployments_clock(
    make_config: Callable[..., CaisseConfig],
) -> None:
    """Redis counts a session's time to live down itself: that time is measured on the same clock as
    the expiry. The deployment's clock here is 40 minutes behind this host's (a 30-minute idle time):
    measured on the host's clock, every session would be given 1 second."""
    import redis.asyncio as redis

    from guichet.core.sessions import RedisSessions, Session, SessionManager

    url = redis_url()
    clock = FrozenClock(dt.datetime.now(UTC) - dt.timedelta(minutes=40))
    backend = RedisSessions(url, f"test-clock-{dt.datetime.now().timestamp()}", clock=clock)
    manager = SessionManager(backend, idle_minutes=30, absolute_hours=12)
    now_ms = int(clock.now().timestamp() * 1000)
    session = Session(None, None)
    session.ensure(now_ms)
    await manager.commit(session, clock.now())
    client = redis.Redis.from_url(url)
    try:
        from guichet.core.keys import token_digest

        assert session.sid is not None
        ttl_ms = await client.pttl(f"{backend.namespace}:session:{token_digest(session.sid)}")
        assert 30 * 60_000 <= ttl_ms <= 35 * 60_000
        assert (await manager.load(session.sid, clock.now())).data == session.data
    finally:
        await client.aclose()
        await backend.close()
