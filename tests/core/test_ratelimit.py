"""Counters and progressive delays, in the database and in Redis; a failing store refuses."""
from __future__ import annotations

import datetime as dt
import secrets
from typing import Any
from urllib.parse import urlsplit

import pytest

from guichet.core.clock import FrozenClock
from guichet.core.database import Database
from guichet.core.errors import CounterStoreError
from guichet.core.keys import Keys
from guichet.core.ratelimit import DatabaseCounters, Limit, Limiter, RedisCounters, Verdict
from guichet.core.services import build_services
from tests.conftest import TEST_SECRET, redis_url

SLOW = Limit(name="t-slow", window_seconds=3600, max_count=100, delay_after=3, max_delay_seconds=60)
HARD = Limit(name="t-hard", window_seconds=600, max_count=3)


@pytest.fixture
def limiter(database: Database) -> Limiter:
    return Limiter(DatabaseCounters(database), Keys(TEST_SECRET))


async def test_hard_limit_resets_with_the_window(limiter: Limiter, clock: FrozenClock) -> None:
    verdicts = [await limiter.hit(HARD, "1850578006084", clock.now()) for _ in range(3)]
    assert [v.allowed for v in verdicts] == [True, True, False]
    assert not (await limiter.check(HARD, "1850578006084", clock.now())).allowed
    assert (await limiter.check(HARD, "2920633123045", clock.now())).allowed, "another subject is not affected"
    clock.advance(seconds=601)
    assert (await limiter.check(HARD, "1850578006084", clock.now())).allowed
    assert (await limiter.hit(HARD, "1850578006084", clock.now())).allowed


async def test_progressive_delay_doubles_and_never_locks_out(limiter: Limiter, clock: FrozenClock) -> None:
    for _ in range(3):
        await limiter.hit(SLOW, "x", clock.now())
    first = await limiter.check(SLOW, "x", clock.now())
    assert not first.allowed and first.retry_after_seconds == 1
    clock.advance(seconds=1.1)
    assert (await limiter.check(SLOW, "x", clock.now())).allowed
    await limiter.hit(SLOW, "x", clock.now())
    second = await limiter.check(SLOW, "x", clock.now())
    assert second.retry_after_seconds == 2
    for _ in range(20):
        await limiter.hit(SLOW, "x", clock.now())
    capped = await limiter.check(SLOW, "x", clock.now())
    assert capped.retry_after_seconds <= 60
    clock.advance(seconds=61)
    assert (await limiter.check(SLOW, "x", clock.now())).allowed, "the owner can always try again later"


async def test_counter_keys_hold_no_identifier(limiter: Limiter, database: Database, clock: FrozenClock) -> None:
    await limiter.hit(HARD, "1850578006084", clock.now())
    rows = await database.t.RateCounter.select().run()
    assert "1850578006084" not in repr(rows)


async def test_redis_counters(clock: FrozenClock) -> None:
    url = redis_url()
    store = RedisCounters(url, f"test-{dt.datetime.now().timestamp()}")
    limiter = Limiter(store, Keys(TEST_SECRET))
    try:
        assert [(await limiter.hit(HARD, "s", clock.now())).allowed for _ in range(3)] == [True, True, False]
        await limiter.clear(HARD, "s")
        assert (await limiter.check(HARD, "s", clock.now())).allowed
    finally:
        await store.close()


async def test_unreachable_store_raises_so_callers_refuse(clock: FrozenClock) -> None:
    store = RedisCounters("redis://127.0.0.1:1/0", "down")
    limiter = Limiter(store, Keys(TEST_SECRET))
    with pytest.raises(CounterStoreError):
        await limiter.hit(HARD, "s", clock.now())
    with pytest.raises(CounterStoreError):
        await limiter.check(HARD, "s", clock.now())
    await store.close()


async def _two_three_none(limiter: Limiter, clock: FrozenClock) -> list[Verdict]:
    """Subject "a" hit twice under HARD, "b" three times under SLOW, "c" never: read all at once."""
    for _ in range(2):
        await limiter.hit(HARD, "a", clock.now())
    for _ in range(3):
        await limiter.hit(SLOW, "b", clock.now())
    hard_a, slow_b, hard_c = verdicts = await limiter.check_all([(HARD, "a"), (SLOW, "b"), (HARD, "c")],
                                                                clock.now())
    assert (hard_a.allowed, hard_a.count) == (True, 2)
    assert (slow_b.allowed, slow_b.count) == (False, 3), "the delay applies"
    assert (hard_c.allowed, hard_c.count) == (True, 0), "a subject never seen has nothing to clear"
    return verdicts


async def test_check_all_reads_several_subjects_at_once(limiter: Limiter, clock: FrozenClock) -> None:
    verdicts = await _two_three_none(limiter, clock)
    assert verdicts[1].retry_after_seconds == 1
    assert [v.count for v in await limiter.check_all([(HARD, "a")], clock.now())] == [2]
    clock.advance(seconds=601)  # HARD's window is over, SLOW's is not (windows end per limit)
    hard_a, slow_b = await limiter.check_all([(HARD, "a"), (SLOW, "b")], clock.now())
    assert hard_a.count == 0 and slow_b.count == 3


async def test_check_all_on_redis(clock: FrozenClock) -> None:
    store = RedisCounters(redis_url(), f"test-{dt.datetime.now().timestamp()}")
    try:
        await _two_three_none(Limiter(store, Keys(TEST_SECRET)), clock)
    finally:
        await store.close()


async def test_redis_password_comes_from_the_config_secret(make_config: Any, clock: FrozenClock,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A Redis user with a password (ACL): counters and sessions authenticate with [redis] password."""
    import redis.asyncio as redis

    url = urlsplit(redis_url())
    admin = redis.Redis(host=url.hostname or "127.0.0.1", port=url.port or 6379)
    user = f"guichet-test-{secrets.token_hex(4)}"
    await admin.execute_command("ACL", "SETUSER", user, "on", ">right-password", "~*", "+@all")
    extra = f"""
        [rate_limits]
        store = "redis"
        [redis]
        url = "redis://{user}@{url.hostname}:{url.port}{url.path}"
        password = {{ env = "GUICHET_TEST_REDIS_PASSWORD" }}
    """
    try:
        for password, works in (("right-password", True), ("wrong-password", False)):
            monkeypatch.setenv("GUICHET_TEST_REDIS_PASSWORD", password)
            services = build_services(make_config(extra))
            try:
                if works:
                    assert (await services.limiter.hit(HARD, "s", clock.now())).allowed
                else:
                    with pytest.raises(CounterStoreError):  # refused, so the caller refuses the attempt
                        await services.limiter.hit(HARD, "s", clock.now())
            finally:
                await services.close()
    finally:
        await admin.execute_command("ACL", "DELUSER", user)
        await admin.aclose()
