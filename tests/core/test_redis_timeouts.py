"""When is Redis down? Its timeout runs on the event loop's clock, and in a burst the loop is busy
with other requests: a reply that arrived in time but was read late must not be taken for an
outage (a 503 to a citizen whose request was fine). A Redis that does not answer still is one.

How a burst delays a reply, made deterministic: Redis is kept busy for half a second by a script
on another connection, so the command under test waits for its reply; meanwhile the event loop
is blocked by a synchronous call (as by other requests' work). The reply reaches the socket while
the loop is blocked, and is read when the loop is free again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from guichet.core.clock import FrozenClock
from guichet.core.config import DEFAULT_REDIS_TIMEOUT_SECONDS, decode_config
from guichet.core.errors import ConfigError, CounterStoreError
from guichet.core.keys import Keys
from guichet.core.ratelimit import Limit, Limiter, RedisCounters
from guichet.core.services import build_services
from guichet.core.sessions import RedisSessions
from tests.conftest import TEST_SECRET, portal_config_text, redis_url

T = TypeVar("T")
HARD = Limit(name="t-busy", window_seconds=600, max_count=3)
# longer than the 2 s the clients had, shorter than the default
BUSY_SECONDS = 3.0


# a script that keeps Redis busy for ARGV[1] microseconds (Redis runs one command at a time)
KEEP_REDIS_BUSY = """
local start = redis.call('TIME')
repeat local now = redis.call('TIME')
until (now[1] - start[1]) * 1000000 + (now[2] - start[2]) > tonumber(ARGV[1])
return 1
"""


async def while_the_loop_is_busy(call: Callable[[], Awaitable[T]], seconds: float) -> T:
    """Run ``call`` while its reply is delayed (Redis busy for 0.5 s), the loop blocked for ``seconds``."""
    import redis.asyncio as redis

    other = redis.Redis.from_url(redis_url())
    try:
        await other.ping()
        busy = asyncio.ensure_future(other.eval(KEEP_REDIS_BUSY, 0, 500_000))
        await asyncio.sleep(0.02)  # the script is running: what is sent next waits for it
        task = asyncio.ensure_future(call())
        asyncio.get_running_loop().call_later(0.2, time.sleep, seconds)  # the reply is read after this
        try:
            return await task
        finally:
            await busy
    finally:
        await other.aclose()


def namespace() -> str:
    return f"test-busy-{dt.datetime.now().timestamp()}"


async def test_a_busy_event_loop_is_not_a_counter_store_outage(clock: FrozenClock) -> None:
    assert DEFAULT_REDIS_TIMEOUT_SECONDS > BUSY_SECONDS
    store = RedisCounters(redis_url(), namespace())
    limiter = Limiter(store, Keys(TEST_SECRET))
    try:
        await limiter.hit(HARD, "warm", clock.now())  # the connection is open: no connect in the timing
        verdict = await while_the_loop_is_busy(lambda: limiter.hit(HARD, "s", clock.now()), BUSY_SECONDS)
        assert verdict.allowed and verdict.count == 1
        verdicts = await while_the_loop_is_busy(lambda: limiter.check_all([(HARD, "s")], clock.now()), BUSY_SECONDS)
        assert [v.count for v in verdicts] == [1]
    finally:
        await store.close()


async def test_a_busy_event_loop_is_not_a_session_store_outage() -> None:
    backend = RedisSessions(redis_url(), namespace())
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    try:
        await backend.create("warm", b"{}", expires)
        await while_the_loop_is_busy(lambda: backend.create("sid", b'{"a":1}', expires), BUSY_SECONDS)
        loaded = await while_the_loop_is_busy(lambda: backend.load("sid", dt.datetime.now(dt.UTC)), BUSY_SECONDS)
        assert loaded == b'{"a":1}'
    finally:
        await backend.delete("warm")
        await backend.delete("sid")
        await backend.close()


async def test_a_reply_later_than_the_configured_timeout_is_an_outage(clock: FrozenClock) -> None:
    """The timeout still bites: a caisse that wants a silent Redis found out sooner sets it lower."""
    store = RedisCounters(redis_url(), namespace(), timeout_seconds=0.5)
    limiter = Limiter(store, Keys(TEST_SECRET))
    try:
        await limiter.hit(HARD, "warm", clock.now())
        with pytest.raises(CounterStoreError):
            await while_the_loop_is_busy(lambda: limiter.hit(HARD, "s", clock.now()), 1.0)
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("setting", "expected"),
    [("", DEFAULT_REDIS_TIMEOUT_SECONDS), ("timeout_seconds = 1.5\n", 1.5)],
)
def test_the_redis_timeout_is_read_from_the_config(setting: str, expected: float, tmp_path: Any) -> None:
    text = portal_config_text(f'\n[redis]\nurl = "redis://127.0.0.1:6379/0"\n{setting}')
    config = decode_config(text, base_dir=str(tmp_path))
    assert config.redis is not None and config.redis.timeout_seconds == expected


@pytest.mark.parametrize("value", ["0", "-1", "61", '"vite"'])
def test_a_redis_timeout_out_of_bounds_is_refused(value: str, tmp_path: Any) -> None:
    text = portal_config_text(f'\n[redis]\nurl = "redis://127.0.0.1:6379/0"\ntimeout_seconds = {value}\n')
    with pytest.raises(ConfigError) as refused:
        decode_config(text, base_dir=str(tmp_path))
    assert "redis.timeout_seconds" in str(refused.value)


async def test_the_configured_timeout_reaches_the_session_and_counter_clients(make_config: Any) -> None:
    extra = f"""
        [rate_limits]
        store = "redis"
        [redis]
        url = "{redis_url()}"
        timeout_seconds = 1.5
    """
    base = portal_config_text().replace("[sessions]\n", '[sessions]\nstore = "redis"\n', 1)
    services = build_services(make_config(extra, base=base))
    try:
        for store in (services.session_backend, services.counter_store):
            assert isinstance(store, (RedisSessions, RedisCounters))
            kwargs = store.client.connection_pool.connection_kwargs
            assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (1.5, 1.5)
    finally:
        await services.close()
